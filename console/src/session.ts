// The session token lives in sessionStorage: it survives a reload of the tab
// but not the tab itself, is not shared with other tabs or sent with any
// request on its own (unlike a cookie), and never appears in a URL. See
// docs/console.md.
export interface Session {
  token: string;
  expiresAtMs: number;
  accountId: string;
  email: string;
  role: string; // "customer" | "admin"
}

const KEY = "supaplane.session";

export function loadSession(storage: Storage, nowMs: number): Session | null {
  const raw = storage.getItem(KEY);
  if (!raw) return null;
  try {
    const s = JSON.parse(raw) as Session;
    if (typeof s.token !== "string" || !s.token || typeof s.expiresAtMs !== "number") return null;
    if (s.expiresAtMs <= nowMs) {
      storage.removeItem(KEY);
      return null;
    }
    return s;
  } catch {
    storage.removeItem(KEY);
    return null;
  }
}

export function saveSession(storage: Storage, s: Session): void {
  storage.setItem(KEY, JSON.stringify(s));
}

export function clearSession(storage: Storage): void {
  storage.removeItem(KEY);
}
