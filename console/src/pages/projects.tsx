// The caller's projects, live (WatchTenants), and the create form.
import { useState } from "preact/hooks";
import { Plan } from "../gen/supaplane/v1/types_pb.js";
import * as api from "../api.js";
import { handleError, navigate, putTenant, useAppState } from "../state.js";
import { filterTenants, phaseName, planName } from "../tenants.js";
import { Link, PhaseBadge, Time } from "../ui.js";
import { WindowedTable } from "../list.js";
import type { Tenant } from "../gen/supaplane/v1/api_pb.js";
import { projectPath } from "../route.js";

function CreateForm() {
  const [name, setName] = useState("");
  const [plan, setPlan] = useState<Plan>(Plan.FREE);
  const [err, setErr] = useState<{ field: string | null; message: string } | null>(null);
  const [busy, setBusy] = useState(false);
  async function submit(e: Event) {
    e.preventDefault();
    setBusy(true);
    setErr(null);
    try {
      const m = await api.tenants.createTenant({ name, plan, requestId: `console-${crypto.randomUUID()}` });
      putTenant(m.tenant);
      setName("");
      if (m.tenant) navigate(projectPath(m.tenant.ref));
    } catch (x) {
      const d = handleError(x);
      setErr({ field: d.field, message: d.message });
    } finally {
      setBusy(false);
    }
  }
  return (
    <form onSubmit={submit} noValidate aria-labelledby="create-title" class="card">
      <h2 id="create-title">New project</h2>
      <div class="row">
        <p>
          <label for="project-name">Name</label>
          <input
            id="project-name"
            value={name}
            aria-invalid={err?.field === "name"}
            aria-describedby={err?.field === "name" ? "name-error" : undefined}
            onInput={(e) => setName((e.target as HTMLInputElement).value)}
          />
        </p>
        <p>
          <label for="project-plan">Plan</label>
          <select id="project-plan" value={String(plan)} onChange={(e) => setPlan(Number((e.target as HTMLSelectElement).value))}>
            <option value={String(Plan.FREE)}>Free</option>
            <option value={String(Plan.STARTER)}>Starter</option>
            <option value={String(Plan.PRO)}>Pro</option>
          </select>
        </p>
        <p class="end">
          <button type="submit" class="primary" disabled={busy}>
            Create project
          </button>
        </p>
      </div>
      {err && (
        <p role="alert" class={err.field ? "field-error" : "form-error"} id={err.field ? `${err.field}-error` : "create-error"}>
          {err.message}
        </p>
      )}
    </form>
  );
}

const columns = ["Name", "Ref", "Plan", "Phase", "Status", "Created"];

function projectCells(t: Tenant, tabIndex: number) {
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
      <td role="gridcell">{planName(t.plan)}</td>
      <td role="gridcell">
        <PhaseBadge phase={phaseName(t.phase)} />
      </td>
      <td role="gridcell">{t.status}</td>
      <td role="gridcell">
        <Time ts={t.createdAt} />
      </td>
    </>
  );
}

export function ProjectsPage() {
  const st = useAppState();
  const own = st.session?.role === "admin" ? st.session.accountId : undefined;
  const list = filterTenants(st.tenants, { ownerAccountId: own });
  return (
    <main id="main">
      <h1 tabIndex={-1}>Projects</h1>
      <CreateForm />
      <h2 id="list-title">Your projects</h2>
      {!st.listed ? (
        <p aria-busy="true">Loading…</p>
      ) : list.length === 0 ? (
        <p id="no-projects">No projects yet.</p>
      ) : (
        <WindowedTable id="projects" labelledBy="list-title" columns={columns} rows={list} cells={projectCells} />
      )}
    </main>
  );
}
