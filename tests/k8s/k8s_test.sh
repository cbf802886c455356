#!/usr/bin/env bash
# deploy/k8s: `kubectl kustomize` renders the overlays dev and production
# (alone and with both optional components); tests/k8s/check.mjs validates
# every object against the pinned Kubernetes schemas and checks the policy
# (probes, limits, securityContext, ServiceAccounts, PDBs, NetworkPolicies,
# Secrets referenced and satisfied by deploy/k8s/create-secrets, the
# trusted proxies of the api and the console, each replica's durable among
# its NATS user's); the NATS
# configuration of each overlay passes `nats-server -t`. Then mutants of the
# dev render (a probe, a limit, the security context, an inlined secret, an
# unknown field, ...) must each make check.mjs fail. Fails, never skips, when
# a tool is missing.   k8s_test.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
HERE="$ROOT/tests/k8s"
K8S="$ROOT/deploy/k8s"
fail() { echo "FAIL: $*" >&2; exit 1; }
for tool in kubectl node npm nats-server python3; do
  command -v "$tool" >/dev/null || fail "'$tool' not found (kubectl: a release binary from dl.k8s.io; node, npm, nats-server, python3-yaml: Debian packages)"
done

# npm ci into a cache directory keyed by the lock file (the worktree stays clean).
CACHE="${SUPAPLANE_NPM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/supaplane}/k8s"
KEY=$(cat "$HERE/package.json" "$HERE/package-lock.json" | sha256sum | cut -c1-16)
DEPS="$CACHE/$KEY"
if [ ! -f "$DEPS/.installed" ]; then
  mkdir -p "$DEPS"
  cp "$HERE/package.json" "$HERE/package-lock.json" "$DEPS/"
  (cd "$DEPS" && npm ci --no-audit --no-fund --loglevel=error) || fail "npm ci of tests/k8s failed (is the npm registry reachable?)"
  touch "$DEPS/.installed"
fi
cp "$HERE/check.mjs" "$DEPS/"

WORK=$(mktemp -d /tmp/supaplane-k8s-XXXXXX)
trap 'rm -rf "$WORK"' EXIT

"$K8S/create-secrets" --dev --output "$WORK/secrets-dev" >/dev/null
SUPAPLANE_DATABASE_URL="postgresql://supaplane:placeholder@db.example.com:5432/supaplane?sslmode=require" \
SUPAPLANE_TENANT_DB_URL="host=tenants.example.com user=provisioner password=placeholder dbname=postgres" \
  "$K8S/create-secrets" --output "$WORK/secrets-production" >/dev/null

nats_check() {  # rendered.yaml secrets-dir
  local d="$WORK/nats.$RANDOM"
  mkdir -p "$d"
  python3 - "$1" "$d" <<'PY'
import sys, yaml
for o in yaml.safe_load_all(open(sys.argv[1])):
    if o and o["kind"] == "ConfigMap" and o["metadata"]["name"] == "nats-config":
        for k, v in o["data"].items():
            open(sys.argv[2] + "/" + k, "w").write(v)
PY
  [ -f "$d/nats.conf" ] || fail "no nats-config ConfigMap with nats.conf in $1"
  # With the passwords create-secrets made (nats-server parses environment
  # values as config values: a leading digit once broke it).
  local envs
  envs=$(python3 - "$2/supaplane-nats.yaml" <<'PY'
import base64, sys, yaml
d = yaml.safe_load(open(sys.argv[1]))["data"]
for k, v in d.items():
    print("NATS_%s=%s" % (k.upper().replace("-", "_"), base64.b64decode(v).decode()))
PY
)
  (cd "$d" && env POD_NAME=nats-0 $envs nats-server -c nats.conf -t) >"$d/out" 2>&1 ||
    { cat "$d/out" >&2; fail "nats-server rejects the NATS configuration of $1"; }
}

# The Redis start script is one file in two places (kustomize loads only
# files under its root).
cmp -s "$ROOT/deploy/compose/redis/start-redis" "$K8S/base/redis/start-redis" ||
  fail "deploy/k8s/base/redis/start-redis differs from deploy/compose/redis/start-redis"

for overlay in dev production; do
  for variant in plain components; do
    out="$WORK/$overlay-$variant.yaml"
    if [ "$variant" = plain ]; then
      kubectl kustomize "$K8S/overlays/$overlay" >"$out" || fail "kubectl kustomize overlays/$overlay"
    else
      k="$WORK/k-$overlay"
      mkdir -p "$k"
      cat >"$k/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [$(realpath --relative-to="$k" "$K8S/overlays/$overlay")]
components:
  - $(realpath --relative-to="$k" "$K8S/components/traefik-crds")
  - $(realpath --relative-to="$k" "$K8S/components/service-monitors")
YAML
      kubectl kustomize "$k" >"$out" || fail "kubectl kustomize overlays/$overlay with the components"
    fi
    echo "== $overlay ($variant): $(grep -c '^kind:' "$out") objects"
    node "$DEPS/check.mjs" "$out" "$WORK/secrets-$overlay"
    [ "$variant" = components ] || nats_check "$out" "$WORK/secrets-$overlay"
  done
done

# Mutants: each must be caught, with the reason given.
mutant() {  # name expected-text python-statement(s) on `objs`
  local name=$1 want=$2 code=$3 m="$WORK/mutant.yaml" flags=(--no-types)
  [ "$name" = unknown-field ] && flags=()
  python3 - "$WORK/dev-plain.yaml" "$m" "$code" <<'PY'
import sys, yaml
objs = [o for o in yaml.safe_load_all(open(sys.argv[1])) if o]
def get(kind, name):
    return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name)
def c0(kind, name):
    return get(kind, name)["spec"]["template"]["spec"]["containers"][0]
exec(sys.argv[3])
yaml.safe_dump_all(objs, open(sys.argv[2], "w"))
PY
  local out rc=0
  out=$(node "$DEPS/check.mjs" "$m" "$WORK/secrets-dev" "${flags[@]}" 2>&1) || rc=$?
  ((rc != 0)) || fail "mutant '$name' passed the checks"
  grep -qF -- "$want" <<<"$out" || fail "mutant '$name' failed for another reason than '$want': $out"
  echo "mutant caught: $name"
}
mutant no-readiness "no readinessProbe" 'del c0("StatefulSet", "api")["readinessProbe"]'
mutant wrong-liveness "livenessProbe is not GET /healthz" 'c0("Deployment", "billing")["livenessProbe"]["httpGet"]["path"] = "/metrics"'
mutant no-limit "no memory limit" 'del c0("StatefulSet", "router-sync")["resources"]["limits"]["memory"]'
mutant writable-root "readOnlyRootFilesystem is not true" 'c0("Deployment", "console")["securityContext"]["readOnlyRootFilesystem"] = False'
mutant caps "capabilities do not drop ALL" 'c0("StatefulSet", "nats")["securityContext"]["capabilities"]["drop"] = ["NET_RAW"]'
mutant root-pod "runAsNonRoot is not true" 'del get("Deployment", "provisioner")["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"]'
mutant seccomp "no RuntimeDefault seccomp profile" 'del get("StatefulSet", "redis")["spec"]["template"]["spec"]["securityContext"]["seccompProfile"]'
mutant token "automountServiceAccountToken is not false" 'del get("Deployment", "billing")["spec"]["template"]["spec"]["automountServiceAccountToken"]'
mutant inline-secret "SUPAPLANE_JWT_SECRET is inlined" 'c0("StatefulSet", "api")["env"].append({"name": "SUPAPLANE_JWT_SECRET", "value": "x" * 40})'
mutant inline-url "SUPAPLANE_NATS_URL is inlined" 'e = next(e for e in c0("Deployment", "provisioner")["env"] if e["name"] == "SUPAPLANE_NATS_URL"); e.pop("valueFrom"); e["value"] = "nats://provisioner:hunter2@nats:4222"'
mutant secret-object "Secret with inline data" 'objs.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x", "namespace": "supaplane"}, "stringData": {"k": "v"}})'
mutant missing-key "which create-secrets does not set" 'e = next(e for e in c0("Deployment", "billing")["env"] if e["name"] == "SUPAPLANE_JWT_SECRET"); e["valueFrom"]["secretKeyRef"]["key"] = "jwt"'
mutant admin-creds "holds the NATS admin password" 'c0("Deployment", "billing")["env"].append({"name": "X", "valueFrom": {"secretKeyRef": {"name": "supaplane-nats", "key": "admin-password"}}})'
mutant redis-creds "holds a Redis user's password" 'c0("StatefulSet", "router-sync")["env"].append({"name": "X", "valueFrom": {"secretKeyRef": {"name": "supaplane-redis", "key": "api-password"}}})'
mutant anon-redis "SUPAPLANE_REDIS_URL is not its own user" 'e = next(e for e in c0("Deployment", "billing")["env"] if e["name"] == "SUPAPLANE_REDIS_URL"); e.pop("valueFrom"); e["value"] = "redis://redis:6379"'
mutant no-pdb "no PodDisruptionBudget" 'objs.remove(get("PodDisruptionBudget", "router-sync"))'
mutant no-deny "no deny-by-default NetworkPolicy" 'objs.remove(get("NetworkPolicy", "default-deny"))'
mutant one-api "at least 2 replicas" 'get("StatefulSet", "api")["spec"]["replicas"] = 1'
mutant no-scrape "no prometheus.io/scrape" 'del get("Deployment", "provisioner")["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"]'
mutant bad-type "must be integer" 'get("StatefulSet", "nats")["spec"]["replicas"] = "three"'
mutant unknown-field "replicass" 'get("Deployment", "console")["spec"]["replicass"] = 2'
mutant no-trusted-proxies "SUPAPLANE_API_TRUSTED_PROXIES is not set" 'del get("ConfigMap", "supaplane-config")["data"]["SUPAPLANE_API_TRUSTED_PROXIES"]'
mutant trust-all "trusts every address" 'get("ConfigMap", "supaplane-config")["data"]["SUPAPLANE_CONSOLE_TRUSTED_PROXIES"] = "10.244.0.0/16,0.0.0.0/0"'
mutant five-apis "is not among the durables of NATS user api" 'get("StatefulSet", "api")["spec"]["replicas"] = 5'
mutant unknown-kind "no schema for kind" 'objs.append({"apiVersion": "apps/v1", "kind": "Deploymant", "metadata": {"name": "x"}})'
echo "k8s: dev and production render, validate and pass the policy checks; 25 mutants caught"
