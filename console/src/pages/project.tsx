// One project: status, health, keys, actions, billing, history; for an
// operator also suspend / unsuspend and the state as of a past time.
import type { ComponentChildren } from "preact";
import { useEffect, useMemo, useState } from "preact/hooks";
import { toJson } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Phase, Plan } from "../gen/supaplane/v1/types_pb.js";
import type { TenantAsOf, TenantCredentials, TenantEventRecord } from "../gen/supaplane/v1/api_pb.js";
import * as api from "../api.js";
import { handleError, putTenant, useAppState } from "../state.js";
import { describeError } from "../errors.js";
import { HistoryReader } from "../paging.js";
import { actionsFor, phaseName, planName } from "../tenants.js";
import { ConfirmDialog, KeyField, PhaseBadge, Time } from "../ui.js";
import { NotFound } from "./notfound.js";

type Action = "pause" | "resume" | "delete" | "rotate";

// Rendered only when the client generated from proto/ has it (the api gains
// it separately): looked up by name, called generically, shown generically.
const healthMethod = api.TenantService.methods.find((m) => m.name === "GetTenantHealth");

function Health(props: { ref_: string; version: bigint }) {
  const [rows, setRows] = useState<Record<string, unknown>[] | null>(null);
  const [err, setErr] = useState("");
  useEffect(() => {
    if (!healthMethod) return;
    const call = (api.tenants as unknown as Record<string, (r: object) => Promise<unknown>>)[healthMethod.localName];
    call({ ref: props.ref_ })
      .then((r) => {
        const j = toJson(healthMethod.output, r as never) as Record<string, unknown>;
        const list = Object.values(j).find((v) => Array.isArray(v)) as Record<string, unknown>[] | undefined;
        setRows(list ?? [j]);
        setErr("");
      })
      .catch((e) => {
        // Only a dead session is acted on: a health answer that is not there
        // yet must not raise the "API unreachable" banner.
        const d = describeError(e);
        if (d.unauthenticated) handleError(e);
        setErr(d.message);
      });
  }, [props.ref_, props.version]);
  if (!healthMethod) return null;
  const cols = rows && rows.length ? Object.keys(rows[0]) : [];
  return (
    <section aria-labelledby="health-title" class="card">
      <h2 id="health-title">Services</h2>
      {err && <p class="form-error">{err}</p>}
      {rows && (
        <table id="health">
          <thead>
            <tr>
              {cols.map((c) => (
                <th scope="col" key={c}>
                  {c}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {rows.map((r, i) => (
              <tr key={i}>
                {cols.map((c) => (
                  <td key={c}>{String(r[c] ?? "")}</td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function Credentials(props: { ref_: string; phase: Phase; version: bigint }) {
  const [c, setC] = useState<TenantCredentials | null>(null);
  const [msg, setMsg] = useState("");
  const usable = props.phase === Phase.ACTIVE;
  useEffect(() => {
    if (!usable) return;
    api.tenants
      .getTenantCredentials({ ref: props.ref_ })
      .then((r) => {
        setC(r);
        setMsg("");
      })
      .catch((e) => setMsg(handleError(e).message));
  }, [props.ref_, usable, props.version]);
  return (
    <section aria-labelledby="keys-title" class="card">
      <h2 id="keys-title">Connect</h2>
      {!c && !msg && <p class="muted">The keys are shown once the project is ACTIVE.</p>}
      {msg && <p class="form-error">{msg}</p>}
      {c && (
        <dl class="keys" id="credentials">
          <KeyField id="api-url" label="API URL" value={c.apiUrl} />
          <KeyField id="publishable-key" label="publishable key" value={c.publishableKey} />
          <KeyField id="anon-key" label="anon key" value={c.anonKey} />
          <KeyField id="secret-key" label="secret key" value={c.secretKey} secret />
          <KeyField id="service-role-key" label="service_role key" value={c.serviceRoleKey} secret />
          <KeyField id="connection-string" label="connection string" value={c.connectionString} secret />
        </dl>
      )}
    </section>
  );
}

/** ListTenantEvents page size: a long history is read a page at a time ("Load more"). */
const HISTORY_PAGE = 100;

function History(props: { ref_: string; version: bigint }) {
  const [view, setView] = useState<{ events: TenantEventRecord[]; more: boolean }>({ events: [], more: false });
  const [busy, setBusy] = useState(false);
  const reader = useMemo(
    () =>
      new HistoryReader<TenantEventRecord>(
        (pageToken) =>
          api.tenants
            .listTenantEvents({ ref: props.ref_, pageSize: HISTORY_PAGE, pageToken })
            .then((r) => ({ items: r.events, next: r.nextPageToken })),
        (events, more) => setView({ events, more }),
        (e) => handleError(e),
      ),
    [props.ref_],
  );
  useEffect(() => () => reader.close(), [reader]);
  // Re-read whenever the project changes: only what is new, once every page is read.
  useEffect(() => {
    void reader.refresh();
  }, [reader, props.version]);
  async function more() {
    setBusy(true);
    await reader.more();
    setBusy(false);
  }
  return (
    <EventTable id="history" title="History" events={view.events}>
      {view.more && (
        <div class="row">
          <span class="muted" id="history-shown">
            The first {view.events.length} events.
          </span>
          <button type="button" id="history-more" disabled={busy} onClick={more}>
            Load more events
          </button>
        </div>
      )}
    </EventTable>
  );
}

function EventTable(props: { id: string; title: string; events: TenantEventRecord[]; children?: ComponentChildren }) {
  return (
    <section aria-labelledby={`${props.id}-title`} class="card">
      <h2 id={`${props.id}-title`}>{props.title}</h2>
      <table id={props.id}>
        <thead>
          <tr>
            <th scope="col">Time</th>
            <th scope="col">Actor</th>
            <th scope="col">Event</th>
            <th scope="col">Details</th>
          </tr>
        </thead>
        <tbody>
          {props.events.map((e) => (
            <tr key={String(e.sequence)}>
              <td>
                <Time ts={e.time} />
              </td>
              <td>{e.actor}</td>
              <td>{e.type}</td>
              <td>
                <code class="details">{e.details}</code>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {props.children}
    </section>
  );
}

function Checkout(props: { ref_: string }) {
  const [plan, setPlan] = useState<Plan>(Plan.PRO);
  const [msg, setMsg] = useState("");
  if (!api.billingEnabled()) return null;
  return (
    <section aria-labelledby="billing-title" class="card">
      <h2 id="billing-title">Plan</h2>
      <form
        class="row"
        onSubmit={async (e) => {
          e.preventDefault();
          setMsg("");
          try {
            const s = await api.billing.createCheckoutSession({ ref: props.ref_, plan });
            location.assign(s.url);
          } catch (x) {
            setMsg(handleError(x).message);
          }
        }}
      >
        <p>
          <label for="upgrade-plan">Upgrade to</label>
          <select id="upgrade-plan" value={String(plan)} onChange={(e) => setPlan(Number((e.target as HTMLSelectElement).value))}>
            <option value={String(Plan.STARTER)}>Starter</option>
            <option value={String(Plan.PRO)}>Pro</option>
          </select>
        </p>
        <p class="end">
          <button type="submit" id="checkout">
            Upgrade with Checkout
          </button>
        </p>
      </form>
      {msg && (
        <p role="alert" class="form-error" id="checkout-error">
          {msg}
        </p>
      )}
    </section>
  );
}

function AdminTools(props: { ref_: string; suspended: boolean }) {
  const [reason, setReason] = useState("");
  const [msg, setMsg] = useState<{ field: string | null; message: string } | null>(null);
  const [asOf, setAsOf] = useState("");
  const [folded, setFolded] = useState<TenantAsOf | null>(null);
  const [asOfErr, setAsOfErr] = useState("");
  async function suspend(e: Event) {
    e.preventDefault();
    setMsg(null);
    try {
      const m = props.suspended
        ? await api.admin.unsuspendTenant({ ref: props.ref_ })
        : await api.admin.suspendTenant({ ref: props.ref_, reason });
      putTenant(m.tenant);
      setReason("");
    } catch (x) {
      const d = handleError(x);
      setMsg({ field: d.field, message: d.message });
    }
  }
  async function fold(e: Event) {
    e.preventDefault();
    setAsOfErr("");
    setFolded(null);
    const ms = Date.parse(asOf + "Z"); // the input is read as UTC
    if (!asOf || Number.isNaN(ms)) {
      setAsOfErr("Enter a date and time (UTC).");
      return;
    }
    try {
      setFolded(await api.admin.getTenantAsOf({ ref: props.ref_, asOf: timestampFromMs(ms) }));
    } catch (x) {
      setAsOfErr(handleError(x).message);
    }
  }
  return (
    <section aria-labelledby="admin-title" class="card admin">
      <h2 id="admin-title">Operator</h2>
      <form onSubmit={suspend} class="row">
        {!props.suspended && (
          <p>
            <label for="suspend-reason">Reason</label>
            <input id="suspend-reason" value={reason} onInput={(e) => setReason((e.target as HTMLInputElement).value)} />
          </p>
        )}
        <p class="end">
          <button type="submit" class={props.suspended ? "" : "danger"} id={props.suspended ? "unsuspend" : "suspend"}>
            {props.suspended ? "Unsuspend" : "Suspend"}
          </button>
        </p>
      </form>
      {msg && (
        <p role="alert" class="form-error" id="suspend-error">
          {msg.message}
        </p>
      )}
      <h3>State as of</h3>
      <form onSubmit={fold} class="row">
        <p>
          <label for="as-of">Time (UTC)</label>
          <input id="as-of" type="datetime-local" step="0.001" value={asOf} onInput={(e) => setAsOf((e.target as HTMLInputElement).value)} />
        </p>
        <p class="end">
          <button type="submit" id="fold">
            Show state
          </button>
        </p>
      </form>
      {asOfErr && (
        <p role="alert" class="form-error" id="as-of-error">
          {asOfErr}
        </p>
      )}
      {folded?.tenant && (
        <div id="as-of-state">
          <dl class="facts">
            <dt>Phase</dt>
            <dd id="as-of-phase">{phaseName(folded.tenant.phase)}</dd>
            <dt>Status</dt>
            <dd>{folded.tenant.status}</dd>
            <dt>Plan</dt>
            <dd>{planName(folded.tenant.plan)}</dd>
            <dt>Suspended</dt>
            <dd>{folded.tenant.suspended ? `yes: ${folded.tenant.suspendReason}` : "no"}</dd>
          </dl>
          <EventTable id="as-of-events" title={`Events up to ${folded.asOf ? new Date(Number(folded.asOf.seconds) * 1000).toISOString() : ""}`} events={folded.events} />
        </div>
      )}
    </section>
  );
}

export function ProjectPage(props: { ref_: string }) {
  const st = useAppState();
  const [missing, setMissing] = useState(false);
  const [dialog, setDialog] = useState<Action | null>(null);
  const [actionMsg, setActionMsg] = useState("");
  const ref = props.ref_;
  useEffect(() => {
    setMissing(false);
    api.tenants
      .getTenant({ ref })
      .then((t) => putTenant(t))
      .catch((e) => {
        if (handleError(e).notFound) setMissing(true);
      });
  }, [ref]);
  const t = st.tenants.get(ref);
  if (missing) return <NotFound what={`Project ${ref}`} />;
  if (!t)
    return (
      <main id="main">
        <h1 tabIndex={-1}>Project</h1>
        <p aria-busy="true">Loading…</p>
      </main>
    );
  const can = actionsFor(t);
  const phase = phaseName(t.phase);
  async function run(a: Action) {
    setActionMsg("");
    try {
      const req = { ref, requestId: `console-${crypto.randomUUID()}` };
      const m =
        a === "pause"
          ? await api.tenants.pauseTenant(req)
          : a === "resume"
            ? await api.tenants.resumeTenant(req)
            : a === "rotate"
              ? await api.tenants.rotateTenantKeys(req)
              : await api.tenants.deleteTenant(req);
      putTenant(m.tenant);
    } catch (x) {
      setActionMsg(handleError(x).message);
    }
  }
  const dialogs: Record<Action, { title: string; body: string; label: string; danger?: boolean; type?: string }> = {
    pause: { title: `Pause ${t.name}?`, body: "Its API and database stop answering until you resume it.", label: "Pause" },
    resume: { title: `Resume ${t.name}?`, body: "Its stack starts again.", label: "Resume" },
    rotate: {
      title: `Rotate the keys of ${t.name}?`,
      body: "New API keys and database password are made; the old ones stop working.",
      label: "Rotate keys",
      danger: true,
    },
    delete: {
      title: `Delete ${t.name}?`,
      body: "Its stack and its data are removed. This cannot be undone.",
      label: "Delete project",
      danger: true,
      type: t.name,
    },
  };
  const d = dialog ? dialogs[dialog] : null;
  return (
    <main id="main">
      <h1 tabIndex={-1}>{t.name}</h1>
      <section aria-labelledby="status-title" class="card">
        <h2 id="status-title">Status</h2>
        <dl class="facts">
          <dt>Phase</dt>
          <dd id="phase" aria-live="polite">
            <PhaseBadge phase={phase} />
          </dd>
          <dt>Status</dt>
          <dd id="status">{t.status}</dd>
          <dt>Ref</dt>
          <dd>
            <code>{t.ref}</code>
          </dd>
          <dt>Plan</dt>
          <dd id="plan">{planName(t.plan)}</dd>
          {t.suspended && (
            <>
              <dt>Suspended</dt>
              <dd id="suspend-reason-shown">{t.suspendReason || "yes"}</dd>
            </>
          )}
          {t.lastError && (
            <>
              <dt>Last error</dt>
              <dd>{t.lastError}</dd>
            </>
          )}
          <dt>Updated</dt>
          <dd>
            <Time ts={t.updatedAt} />
          </dd>
        </dl>
        <div class="row actions">
          {can.rotate && (
            <button type="button" onClick={() => setDialog("rotate")}>
              Rotate keys
            </button>
          )}
          {can.pause && (
            <button type="button" onClick={() => setDialog("pause")}>
              Pause
            </button>
          )}
          {can.resume && (
            <button type="button" onClick={() => setDialog("resume")}>
              Resume
            </button>
          )}
          {can.remove && (
            <button type="button" class="danger" onClick={() => setDialog("delete")}>
              Delete
            </button>
          )}
        </div>
        {actionMsg && (
          <p role="alert" class="form-error" id="action-error">
            {actionMsg}
          </p>
        )}
      </section>
      <Health ref_={ref} version={t.version} />
      {t.phase !== Phase.DELETED && <Credentials ref_={ref} phase={t.phase} version={t.version} />}
      {t.phase !== Phase.DELETED && <Checkout ref_={ref} />}
      {st.session?.role === "admin" && <AdminTools ref_={ref} suspended={t.suspended} />}
      <History ref_={ref} version={t.version} />
      <ConfirmDialog
        open={d !== null}
        title={d?.title ?? ""}
        body={<p>{d?.body}</p>}
        confirmLabel={d?.label ?? ""}
        danger={d?.danger}
        typeToConfirm={d?.type}
        onConfirm={() => dialog && void run(dialog)}
        onClose={() => setDialog(null)}
      />
    </main>
  );
}
