// The operator's view: every tenant (phase filter, search by ref or name),
// each ListAllTenants page shown as it arrives, live through WatchTenants,
// and the projection rebuild.
import { useEffect, useState } from "preact/hooks";
import { Phase } from "../gen/supaplane/v1/types_pb.js";
import type { RebuildProjectionResponse, Tenant } from "../gen/supaplane/v1/api_pb.js";
import * as api from "../api.js";
import { handleError, useAppState } from "../state.js";
import { applyAll, filterTenants, mergeNewer, phaseName, planName, type TenantMap } from "../tenants.js";
import { eachPage } from "../paging.js";
import { Link, PhaseBadge } from "../ui.js";
import { WindowedTable } from "../list.js";
import { projectPath } from "../route.js";
import { NotFound } from "./notfound.js";

const phases = Object.values(Phase).filter((v): v is Phase => typeof v === "number" && v !== Phase.UNSPECIFIED);

const columns = ["Name", "Ref", "Owner", "Plan", "Phase", "Suspended"];

function tenantCells(t: Tenant, tabIndex: number) {
  return (
    <>
      <td role="gridcell">
        <Link href={projectPath(t.ref)} tabIndex={tabIndex}>
          {t.name}
        </Link>
      </td>
      <td role="gridcell">
        <code>{t.ref}</code>
      </td>
      <td role="gridcell">
        <code>{t.ownerAccountId}</code>
      </td>
      <td role="gridcell">{planName(t.plan)}</td>
      <td role="gridcell">
        <PhaseBadge phase={phaseName(t.phase)} />
      </td>
      <td role="gridcell">{t.suspended ? t.suspendReason || "yes" : ""}</td>
    </>
  );
}

export function AdminPage() {
  const st = useAppState();
  const [phase, setPhase] = useState<Phase>(Phase.UNSPECIFIED);
  const [query, setQuery] = useState("");
  const [all, setAll] = useState<TenantMap>(new Map());
  const [loading, setLoading] = useState(true);
  const [listErr, setListErr] = useState("");
  const [rebuild, setRebuild] = useState<RebuildProjectionResponse | null>(null);
  const [rebuildErr, setRebuildErr] = useState("");
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    // Each page is shown as it arrives. The listing so far replaces the
    // previous one (another phase, or before the api went away) with its
    // first page, so nothing of an older listing outlives it.
    const ctl = new AbortController();
    let got: TenantMap | null = null;
    setLoading(true);
    eachPage(
      (pageToken) =>
        api.admin
          .listAllTenants({ pageSize: 500, pageToken, phase }, { signal: ctl.signal })
          .then((r) => ({ items: r.tenants, next: r.nextPageToken })),
      (items) => {
        got = applyAll(got ?? new Map(), items);
        setAll(got);
        setListErr("");
      },
      ctl.signal,
    ).then(
      () => {
        if (!ctl.signal.aborted) setLoading(false);
      },
      (x) => {
        if (ctl.signal.aborted) return;
        setLoading(false);
        setListErr(handleError(x).message);
      },
    );
    return () => ctl.abort();
  }, [phase, st.apiDown]);
  if (st.session?.role !== "admin") return <NotFound />;
  // Live: what the watch stream brought since the listing wins when newer.
  const list = filterTenants(mergeNewer(all, st.tenants), { phase, query, includeDeleted: false });
  return (
    <main id="main">
      <h1 tabIndex={-1}>All tenants</h1>
      <form class="row card" role="search" onSubmit={(e) => e.preventDefault()}>
        <p>
          <label for="phase-filter">Phase</label>
          <select id="phase-filter" value={String(phase)} onChange={(e) => setPhase(Number((e.target as HTMLSelectElement).value))}>
            <option value={String(Phase.UNSPECIFIED)}>any</option>
            {phases.map((p) => (
              <option key={p} value={String(p)}>
                {phaseName(p)}
              </option>
            ))}
          </select>
        </p>
        <p>
          <label for="search">Search ref or name</label>
          <input id="search" type="search" value={query} onInput={(e) => setQuery((e.target as HTMLInputElement).value)} />
        </p>
      </form>
      {listErr && <p class="form-error">{listErr}</p>}
      <p role="status" id="tenant-count">
        {list.length} tenant{list.length === 1 ? "" : "s"}
        {loading ? " so far, loading more…" : ""}
      </p>
      <WindowedTable id="all-tenants" label="All tenants" columns={columns} rows={list} cells={tenantCells} busy={loading} />
      <section aria-labelledby="rebuild-title" class="card">
        <h2 id="rebuild-title">Projections</h2>
        <p>Rebuild the api's tenant projection from the event log (reads keep being served meanwhile).</p>
        <button
          type="button"
          id="rebuild"
          disabled={busy}
          onClick={async () => {
            setBusy(true);
            setRebuild(null);
            setRebuildErr("");
            try {
              setRebuild(await api.admin.rebuildProjection({ name: "api" }));
            } catch (x) {
              setRebuildErr(handleError(x).message);
            } finally {
              setBusy(false);
            }
          }}
        >
          Rebuild projection
        </button>
        <p role="status" id="rebuild-result">
          {rebuild ? `Rebuilt: ${rebuild.events} events in ${rebuild.seconds.toFixed(3)} s (generation ${rebuild.generation})` : ""}
          {rebuildErr}
        </p>
      </section>
    </main>
  );
}
