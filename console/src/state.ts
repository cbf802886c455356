// The app's state: one small store with subscribers (no framework state
// library), the session, the live tenant set and the connection banner.
import { useEffect, useState } from "preact/hooks";
import { ConnectError, Code } from "@connectrpc/connect";
import type { Tenant } from "./gen/supaplane/v1/api_pb.js";
import { applyAll, applyTenant, type TenantMap } from "./tenants.js";
import { clearSession, loadSession, saveSession, type Session } from "./session.js";
import { describeError } from "./errors.js";
import { eachPage } from "./paging.js";
import * as api from "./api.js";

export interface State {
  session: Session | null;
  path: string;
  tenants: TenantMap;
  listed: boolean; // the first listing arrived
  apiDown: boolean;
  notice: string; // shown on the login page (e.g. why the session ended)
}

let state: State = {
  session: loadSession(sessionStorage, Date.now()),
  path: location.pathname,
  tenants: new Map(),
  listed: false,
  apiDown: false,
  notice: "",
};
api.setToken(state.session?.token ?? null);

const subs = new Set<() => void>();
export function getState(): State {
  return state;
}
export function update(patch: Partial<State>): void {
  state = { ...state, ...patch };
  for (const s of subs) s();
}
export function useAppState(): State {
  const [, force] = useState(0);
  const rendered = state;
  useEffect(() => {
    const f = () => force((n) => n + 1);
    subs.add(f);
    // An update between this render and the subscription (an early answer
    // from the api, e.g. UNAUTHENTICATED) would otherwise never be shown.
    if (state !== rendered) f();
    return () => {
      subs.delete(f);
    };
  }, []);
  return state;
}

export function navigate(path: string, replace = false): void {
  if (path === location.pathname) return;
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  update({ path });
}
window.addEventListener("popstate", () => update({ path: location.pathname }));

export function putTenant(t: Tenant | undefined): void {
  if (t) update({ tenants: applyTenant(state.tenants, t) });
}

let expiry: ReturnType<typeof setTimeout> | undefined;
function scheduleExpiry(s: Session): void {
  clearTimeout(expiry);
  const left = Math.max(0, Math.min(s.expiresAtMs - Date.now(), 2 ** 31 - 1));
  expiry = setTimeout(() => {
    if (state.session?.token === s.token) endSession("Your session has expired. Log in again.");
  }, left);
}

export function startSession(s: Session): void {
  saveSession(sessionStorage, s);
  api.setToken(s.token);
  update({ session: s, notice: "", tenants: new Map(), listed: false, apiDown: false });
  scheduleExpiry(s);
  startLive();
}

/** At page load: a stored session is checked once (revoked or expired → login with a message). */
export function resumeSession(): void {
  const s = state.session;
  if (!s) return;
  scheduleExpiry(s);
  startLive();
  api.accounts.me({}).catch((e) => handleError(e));
}

export function endSession(notice = ""): void {
  clearTimeout(expiry);
  stopLive();
  clearSession(sessionStorage);
  api.setToken(null);
  update({ session: null, tenants: new Map(), listed: false, notice, apiDown: false });
  navigate("/login", true);
}

/**
 * The common reaction to a failed call: the banner for an unreachable API,
 * back to login for a dead session. Returns the error for the caller to show.
 */
export function handleError(e: unknown) {
  const d = describeError(e);
  if (d.unauthenticated && state.session) endSession("Your session has expired or was revoked. Log in again.");
  else if (d.unavailable) {
    update({ apiDown: true });
    if (!state.session) void probeWhileDown();
  }
  return d;
}

let probing = false;
/**
 * Logged out there is no live stream to notice the api coming back, so while
 * the banner is up a cheap call is retried; any answer from the api (here
 * UNAUTHENTICATED) means it is reachable again.
 */
async function probeWhileDown(): Promise<void> {
  if (probing) return;
  probing = true;
  try {
    for (let backoff = 500; state.apiDown && !state.session; backoff = Math.min(backoff * 2, 4000)) {
      await new Promise((r) => setTimeout(r, backoff));
      try {
        await api.accounts.me({});
        update({ apiDown: false });
      } catch (e) {
        if (!describeError(e).unavailable) update({ apiDown: false });
      }
    }
  } finally {
    probing = false;
  }
}

// ---------------------------------------------------------------- live tenants
let live: AbortController | null = null;

/** The API's largest ListTenants page. */
const LIST_PAGE = 500;

/** Every page of the caller's tenants, each handed to `onPage` as it arrives. */
function listOwn(signal: AbortSignal, onPage: (tenants: Tenant[]) => void): Promise<void> {
  return eachPage(
    (pageToken) =>
      api.tenants
        .listTenants({ pageSize: LIST_PAGE, pageToken }, { signal })
        .then((r) => ({ items: r.tenants, next: r.nextPageToken })),
    onPage,
    signal,
  );
}

const wait = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    });
  });

/**
 * Opens WatchTenants, lists the caller's tenants, then applies every change
 * as it streams in. When the stream breaks (API down, watcher overflow) it
 * starts over: watch again, list again. The banner follows the outcome.
 */
async function liveLoop(signal: AbortSignal): Promise<void> {
  let backoff = 250;
  while (!signal.aborted) {
    const streamAbort = new AbortController();
    const onAbort = () => streamAbort.abort();
    signal.addEventListener("abort", onAbort);
    try {
      const stream = api.tenants.watchTenants({}, { signal: streamAbort.signal });
      const it = stream[Symbol.asyncIterator]();
      const first = it.next(); // sends the request
      first.catch(() => undefined);
      await listOwn(streamAbort.signal, (page) =>
        update({ tenants: applyAll(state.tenants, page), listed: true, apiDown: false }),
      );
      backoff = 250;
      for (let r = await first; !r.done; r = await it.next()) {
        const c = r.value;
        if (c.tenant) update({ tenants: applyTenant(state.tenants, c.tenant, c.sequence), apiDown: false });
      }
    } catch (e) {
      if (signal.aborted) break;
      const ce = ConnectError.from(e);
      if (ce.code === Code.Canceled && signal.aborted) break;
      const d = handleError(e);
      if (d.unauthenticated) break;
      if (!d.unavailable && ce.code !== Code.ResourceExhausted) update({ apiDown: true });
    } finally {
      signal.removeEventListener("abort", onAbort);
      streamAbort.abort();
    }
    await wait(backoff, signal);
    backoff = Math.min(backoff * 2, 2000);
  }
}

export function startLive(): void {
  stopLive();
  if (!state.session) return;
  live = new AbortController();
  void liveLoop(live.signal);
}
export function stopLive(): void {
  live?.abort();
  live = null;
}
