// Checks one rendered kustomize overlay (multi-document YAML):
//  1. schemas: every object validates against the Kubernetes OpenAPI schemas
//     packaged by kubernetes-models (pinned in package-lock.json; Traefik and
//     Prometheus Operator CRDs by their @kubernetes-models packages), and has
//     no field those schemas do not know (TypeScript's excess-property check
//     on the same models' types: the JSON schemas alone allow extra fields,
//     the API server in strict mode does not);
//  2. policy: every workload's containers have probes (long-running ones),
//     requests and limits, the restricted securityContext; own
//     ServiceAccounts without a token; a PodDisruptionBudget per Deployment /
//     StatefulSet; a deny-all NetworkPolicy; no Secret or secret-looking value
//     inlined, and every secretKeyRef satisfied by deploy/k8s/create-secrets.
//     The api's and the console's trusted proxies are set (env or envFrom of
//     a ConfigMap), each an address or CIDR, none the whole address space.
//     Every pod of the api's and router-sync's StatefulSets has its durable
//     among its NATS user's (users.conf lists them by name).
//
//   node check.mjs RENDERED.yaml SECRETS_DIR [--no-types]
// Prints every problem and exits 1 when there is one.
import { readFileSync, readdirSync, writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { join, dirname } from "node:path";
import { tmpdir } from "node:os";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";

const here = dirname(fileURLToPath(import.meta.url));
const [renderedPath, secretsDir, ...flags] = process.argv.slice(2);
if (!renderedPath || !secretsDir) {
  console.error("usage: node check.mjs RENDERED.yaml SECRETS_DIR [--no-types]");
  process.exit(2);
}

const problems = [];
const problem = (obj, msg) =>
  problems.push(`${obj ? `${obj.kind}/${obj.metadata?.name}: ` : ""}${msg}`);

function load(path) {
  const docs = parseAllDocuments(readFileSync(path, "utf8"));
  const out = [];
  for (const d of docs) {
    if (d.errors.length) throw new Error(`${path}: ${d.errors[0].message}`);
    const o = d.toJS();
    if (o) out.push(o);
  }
  return out;
}
const objects = load(renderedPath);
if (objects.length === 0) problem(null, "nothing rendered");

// ---- 1. schemas ---------------------------------------------------------
const modules = {
  v1: "kubernetes-models/v1",
  "traefik.io/v1alpha1": "@kubernetes-models/traefik/traefik.io/v1alpha1",
  "monitoring.coreos.com/v1": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1",
};
const moduleOf = (apiVersion) => modules[apiVersion] ?? `kubernetes-models/${apiVersion}`;

const typed = [];
for (const o of objects) {
  const path = moduleOf(o.apiVersion);
  let mod;
  try {
    mod = await import(path);
  } catch {
    problem(o, `no schema for apiVersion ${o.apiVersion}`);
    continue;
  }
  const Model = mod[o.kind];
  if (typeof Model !== "function") {
    problem(o, `no schema for kind ${o.kind} in ${o.apiVersion}`);
    continue;
  }
  try {
    new Model(o).validate();
  } catch (e) {
    problem(o, `schema: ${e.message}`);
  }
  typed.push({ o, path: `${path}/${o.kind}`, type: `I${o.kind}` });
}

if (!flags.includes("--no-types") && typed.length) {
  const dir = mkdtempSync(join(tmpdir(), "supaplane-k8s-types-"));
  try {
    let ts = "";
    typed.forEach(({ path, type }, i) => (ts += `import type { ${type} as T${i} } from "${path}";\n`));
    typed.forEach(({ o }, i) => (ts += `export const o${i}: T${i} = ${JSON.stringify(o, null, 1)};\n`));
    writeFileSync(join(dir, "objects.ts"), ts);
    writeFileSync(
      join(dir, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          strict: true, noEmit: true, module: "nodenext", moduleResolution: "nodenext",
          target: "es2022", skipLibCheck: true, typeRoots: [], baseUrl: here,
          paths: { "*": [join(here, "node_modules", "*")] },
        },
        files: ["objects.ts"],
      }),
    );
    try {
      execFileSync(join(here, "node_modules", ".bin", "tsc"), ["-p", dir], { encoding: "utf8", stdio: "pipe" });
    } catch (e) {
      const lines = String(e.stdout || e.message).split("\n").filter((l) => l.includes("error TS"));
      for (const l of lines) {
        const m = /objects\.ts\((\d+),/.exec(l);
        // Map the error line back to the object it is in.
        let which = "";
        if (m) {
          const src = ts.split("\n");
          for (let n = Number(m[1]) - 1; n >= 0; n--) {
            const k = /^export const o(\d+):/.exec(src[n]);
            if (k) { which = `${typed[k[1]].o.kind}/${typed[k[1]].o.metadata?.name}: `; break; }
          }
        }
        problems.push(`${which}type check: ${l.replace(/^.*error TS\d+: /, "")}`);
      }
      if (!lines.length) problems.push(`type check failed: ${String(e.stdout || e.message).slice(0, 2000)}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- 2. policy ----------------------------------------------------------
const byKind = (k) => objects.filter((o) => o.kind === k);
const secretLike = /(PASSWORD|SECRET|TOKEN|_KEY$|KEY_PREVIOUS$)/;
// A URL or libpq string with a password in it.
const credential = (v) => /:\/\/[^/\s:@]+:[^@\s$]+@/.test(v) || /password=(?!\$)/i.test(v);
const supaplaneProbes = new Set(["api", "provisioner", "router-sync", "billing", "console"]);

for (const s of byKind("Secret")) {
  if (s.data || s.stringData) problem(s, "Secret with inline data in the manifests (create it with deploy/k8s/create-secrets)");
}
for (const c of byKind("ConfigMap")) {
  for (const [k, v] of Object.entries(c.data ?? {})) {
    if (secretLike.test(k)) problem(c, `key ${k} looks secret: use a Secret`);
    if (credential(v)) problem(c, `key ${k} holds a credential`);
  }
}

const secrets = new Map();
for (const f of readdirSync(secretsDir).filter((f) => f.endsWith(".yaml"))) {
  for (const s of load(join(secretsDir, f))) {
    if (s.kind === "Secret") secrets.set(s.metadata.name, new Set(Object.keys(s.data ?? {})));
  }
}
if (secrets.size === 0) problem(null, `no Secret made by create-secrets in ${secretsDir}`);

const serviceAccounts = new Map(byKind("ServiceAccount").map((s) => [s.metadata.name, s]));
const workloads = objects.filter((o) => ["Deployment", "StatefulSet", "Job", "DaemonSet", "CronJob"].includes(o.kind));
const podSpecOf = (w) => (w.kind === "CronJob" ? w.spec.jobTemplate.spec.template : w.spec.template);
const matches = (selector, labels) =>
  Object.entries(selector?.matchLabels ?? {}).every(([k, v]) => labels?.[k] === v) &&
  (selector?.matchExpressions ?? []).length === 0;

for (const w of workloads) {
  const tpl = podSpecOf(w);
  const pod = tpl.spec;
  const longRunning = w.kind !== "Job" && w.kind !== "CronJob";
  if (pod.automountServiceAccountToken !== false) problem(w, "pod automountServiceAccountToken is not false");
  const sa = pod.serviceAccountName;
  if (!sa || sa === "default") problem(w, "runs as the default ServiceAccount");
  else if (!serviceAccounts.has(sa)) problem(w, `ServiceAccount ${sa} is not in the manifests`);
  else if (serviceAccounts.get(sa).automountServiceAccountToken !== false) problem(w, `ServiceAccount ${sa} mounts a token`);
  if (pod.securityContext?.runAsNonRoot !== true) problem(w, "pod securityContext.runAsNonRoot is not true");
  if (pod.hostNetwork || pod.hostPID || pod.hostIPC) problem(w, "uses the host's namespaces");
  const podSeccomp = pod.securityContext?.seccompProfile?.type;
  for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
    const where = `container ${c.name}`;
    const sc = c.securityContext ?? {};
    if (sc.allowPrivilegeEscalation !== false) problem(w, `${where}: allowPrivilegeEscalation is not false`);
    if (sc.readOnlyRootFilesystem !== true) problem(w, `${where}: readOnlyRootFilesystem is not true`);
    if (!(sc.capabilities?.drop ?? []).includes("ALL")) problem(w, `${where}: capabilities do not drop ALL`);
    if ((sc.capabilities?.add ?? []).length) problem(w, `${where}: adds capabilities`);
    if (sc.privileged) problem(w, `${where}: privileged`);
    // Pod Security "restricted" (the namespace enforces it) wants a seccomp profile.
    if (!["RuntimeDefault", "Localhost"].includes(sc.seccompProfile?.type ?? podSeccomp))
      problem(w, `${where}: no RuntimeDefault seccomp profile`);
    if (sc.runAsNonRoot === false || sc.runAsUser === 0) problem(w, `${where}: runs as root`);
    for (const r of ["cpu", "memory"]) {
      if (!c.resources?.limits?.[r]) problem(w, `${where}: no ${r} limit`);
      if (!c.resources?.requests?.[r]) problem(w, `${where}: no ${r} request`);
    }
    const isInit = (pod.initContainers ?? []).includes(c);
    if (longRunning && !isInit) {
      if (!c.readinessProbe) problem(w, `${where}: no readinessProbe`);
      if (!c.livenessProbe) problem(w, `${where}: no livenessProbe`);
      if (supaplaneProbes.has(w.metadata.name)) {
        if (c.readinessProbe?.httpGet?.path !== "/readyz") problem(w, `${where}: readinessProbe is not GET /readyz`);
        if (c.livenessProbe?.httpGet?.path !== "/healthz") problem(w, `${where}: livenessProbe is not GET /healthz`);
      }
    }
    for (const e of c.env ?? []) {
      if (e.value !== undefined && (secretLike.test(e.name) || credential(e.value)))
        problem(w, `${where}: ${e.name} is inlined; reference a Secret`);
      const ref = e.valueFrom?.secretKeyRef;
      if (ref && !ref.optional) {
        if (!secrets.has(ref.name)) problem(w, `${where}: ${e.name} refers to Secret ${ref.name}, which create-secrets does not make`);
        else if (!secrets.get(ref.name).has(ref.key)) problem(w, `${where}: ${e.name} refers to ${ref.name}/${ref.key}, which create-secrets does not set`);
      }
    }
    for (const ef of c.envFrom ?? []) if (ef.secretRef) problem(w, `${where}: envFrom a whole Secret (name the keys)`);
  }
  if (longRunning && !["DaemonSet"].includes(w.kind)) {
    const labels = tpl.metadata?.labels;
    if (!byKind("PodDisruptionBudget").some((p) => matches(p.spec.selector, labels)))
      problem(w, "no PodDisruptionBudget selects its pods");
  }
  if (!byKind("NetworkPolicy").some((np) => Object.keys(np.spec.podSelector?.matchLabels ?? {}).length && matches(np.spec.podSelector, tpl.metadata?.labels)))
    problem(w, "no NetworkPolicy of its own (only the default deny applies)");
}

const deny = byKind("NetworkPolicy").find(
  (np) => Object.keys(np.spec.podSelector ?? {}).length === 0 &&
    ["Ingress", "Egress"].every((t) => np.spec.policyTypes?.includes(t)) && !np.spec.ingress && !np.spec.egress,
);
if (!deny) problem(null, "no deny-by-default NetworkPolicy (podSelector {}, Ingress and Egress, no rules)");

// The platform's own shape (issue 11 / docs/deploy.md).
const get = (k, n) => objects.find((o) => o.kind === k && o.metadata.name === n);
const api = get("StatefulSet", "api") ?? get("Deployment", "api");
if (!api || (api.spec.replicas ?? 1) < 2) problem(api, "the api needs at least 2 replicas");
for (const n of ["api", "provisioner", "router-sync", "billing", "console"]) {
  const w = get("StatefulSet", n) ?? get("Deployment", n);
  if (!w) { problem(null, `no workload ${n}`); continue; }
  const a = w.spec.template.metadata?.annotations ?? {};
  const ports = w.spec.template.spec.containers[0].ports ?? [];
  if (a["prometheus.io/scrape"] !== "true") problem(w, "no prometheus.io/scrape annotation");
  if (!ports.some((p) => p.name === "metrics" && String(p.containerPort) === a["prometheus.io/port"]))
    problem(w, "prometheus.io/port is not its metrics port");
}
if (!get("Deployment", "console")) problem(null, "no console Deployment");
// Each pod of the api's and router-sync's StatefulSets reads with its own
// durable (<durable>-<pod name>): the NATS user of the service must list it,
// or that replica cannot subscribe (permissions name durables one by one).
const users = get("ConfigMap", "nats-config")?.data?.["users.conf"] ?? "";
for (const [n, durable, user] of [["api", "api-projector", "api"], ["router-sync", "router-sync", "router-sync"]]) {
  const w = get("StatefulSet", n);
  if (!w) continue;
  const block = users.split(/\{user: /).find((b) => b.startsWith(`${user},`)) ?? "";
  for (let i = 0; i < (w.spec.replicas ?? 1); i++) {
    const name = `${durable}-${n}-${i}`;
    if (!block.includes(`"$JS.API.CONSUMER.MSG.NEXT.PLATFORM.${name}"`))
      problem(w, `pod ${n}-${i}'s durable ${name} is not among the durables of NATS user ${user} (nats-config users.conf)`);
  }
}

// The forwarded address the api and the console believe (per-address sign-in
// limits): set, from env or a ConfigMap the container takes with envFrom,
// and a list of addresses / CIDRs of which none is the whole address space.
const envOf = (w, name) => {
  const c = w.spec.template.spec.containers[0];
  const e = (c.env ?? []).find((x) => x.name === name);
  if (e) return e.value;
  for (const ef of c.envFrom ?? []) {
    const cm = ef.configMapRef && get("ConfigMap", ef.configMapRef.name);
    if (cm?.data && name in cm.data) return cm.data[name];
  }
  return undefined;
};
const proxyEntry = /^(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9a-fA-F:]*:[0-9a-fA-F:.]*)(?:\/(\d{1,3}))?$/;
for (const [kind, n, v] of [["StatefulSet", "api", "SUPAPLANE_API_TRUSTED_PROXIES"], ["Deployment", "console", "SUPAPLANE_CONSOLE_TRUSTED_PROXIES"]]) {
  const w = get(kind, n);
  if (!w) continue;
  const value = envOf(w, v);
  if (!value) { problem(w, `${v} is not set (every caller would share the proxy's address)`); continue; }
  for (const entry of value.split(",").map((x) => x.trim())) {
    const m = proxyEntry.exec(entry);
    if (!m) problem(w, `${v}: '${entry}' is not an address or CIDR`);
    else if (m[1] !== undefined && Number(m[1]) === 0) problem(w, `${v}: '${entry}' trusts every address`);
  }
}
const nats = get("StatefulSet", "nats");
if (!nats) problem(null, "no nats StatefulSet");
if (!get("Job", "nats-stream-setup")) problem(null, "no Job creating the PLATFORM stream");
for (const w of workloads) {
  for (const c of podSpecOf(w).spec.containers) {
    for (const e of c.env ?? []) {
      const ref = e.valueFrom?.secretKeyRef;
      if (ref?.name === "supaplane-nats" && ref.key === "admin-password" && !["nats", "nats-stream-setup"].includes(w.metadata.name))
        problem(w, "holds the NATS admin password (only the stream Job may)");
      if (ref?.name === "supaplane-redis" && w.metadata.name !== "redis")
        problem(w, `holds a Redis user's password (${ref.key}; only the redis pod may)`);
      if (e.name === "SUPAPLANE_REDIS_URL" && e.value !== undefined)
        problem(w, "SUPAPLANE_REDIS_URL is not its own user's Secret");
    }
  }
}

if (problems.length) {
  for (const p of problems) console.error(`FAIL: ${p}`);
  process.exit(1);
}
console.log(`ok: ${objects.length} objects valid (${[...new Set(objects.map((o) => o.kind))].length} kinds), policy checks passed`);
