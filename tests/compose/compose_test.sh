#!/usr/bin/env bash
# deploy/compose, validated without starting it: Debian's docker-compose
# (v1) accepts the file with the secrets of make-env, with both profiles and
# with the docker-driver override, and refuses it without them; the rendered
# configuration has health checks, depends_on conditions, named volumes for
# the stateful services, pinned images overridable by variables, no inlined
# secret; compose's Prometheus config passes promtool with the same jobs as
# deploy/prometheus; nats-server accepts compose's NATS config, whose users
# are those of deploy/k8s. Fails, never skips, when a tool is missing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
C="$ROOT/deploy/compose"
fail() { echo "FAIL: $*" >&2; exit 1; }
for tool in docker-compose promtool nats-server python3; do
  command -v "$tool" >/dev/null || fail "'$tool' not found (Debian: docker-compose, prometheus, nats-server, python3-yaml)"
done
WORK=$(mktemp -d /tmp/supaplane-compose-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
dc() { docker-compose --project-directory "$C" -f "$C/docker-compose.yml" "$@"; }

# Secrets: make-env writes them 0600 and never overwrites.
"$C/make-env" --output "$WORK/.env" --base-domain example.test >/dev/null
[ "$(stat -c %a "$WORK/.env")" = 600 ] || fail ".env is not mode 0600"
before=$(sha256sum <"$WORK/.env")
"$C/make-env" --output "$WORK/.env" 2>/dev/null
[ "$(sha256sum <"$WORK/.env")" = "$before" ] || fail "make-env overwrote an existing .env"
(cd "$ROOT" && git check-ignore -q deploy/compose/.env) || fail "deploy/compose/.env is not ignored by git"

# Without secrets compose refuses (the :? variables), with them it validates.
: >"$WORK/empty.env"
if env -i PATH="$PATH" HOME="$WORK" docker-compose --project-directory "$WORK" -f "$C/docker-compose.yml" \
  --env-file "$WORK/empty.env" config -q >"$WORK/nosecrets.out" 2>&1; then
  fail "docker-compose accepted the file without the secrets of make-env"
fi
grep -q "make-env" "$WORK/nosecrets.out" || fail "the missing-secret error does not say to run make-env: $(cat "$WORK/nosecrets.out")"
dc --env-file "$WORK/.env" config -q
dc --env-file "$WORK/.env" --profile edge --profile grafana config -q
dc -f "$C/docker-compose.docker-driver.yml" --env-file "$WORK/.env" config -q
dc --env-file "$WORK/.env" --profile edge --profile grafana config >"$WORK/full.yml"
NATS_IMAGE=local/nats:test REDIS_IMAGE=local/redis:test POSTGRES_IMAGE=local/postgres:test \
  PROMETHEUS_IMAGE=local/prometheus:test dc --env-file "$WORK/.env" config >"$WORK/override.yml"
for i in nats redis postgres prometheus; do
  grep -q "image: local/$i:test" "$WORK/override.yml" || fail "${i^^}_IMAGE does not override the $i image"
done

python3 - "$C/docker-compose.yml" "$WORK/full.yml" "$WORK/.env" <<'PY'
import re, sys, yaml
raw_text = open(sys.argv[1]).read()
raw = yaml.safe_load(raw_text)
full = yaml.safe_load(open(sys.argv[2]))
env = dict(l.split("=", 1) for l in open(sys.argv[3]).read().splitlines() if "=" in l and not l.startswith("#"))
problems = []
one_shot = {"nats-setup"}
stateful = {"nats": "/data", "redis": "/data", "postgres": "/var/lib/postgresql/data",
            "prometheus": "/prometheus", "grafana": "/var/lib/grafana", "router-sync": "/var/lib/supaplane/traefik"}
ours = {"api", "provisioner", "router-sync", "billing", "console"}
# Traefik with the console, and Grafana, only in their profiles (no Debian
# package: the bring-up of compose_up_test.sh leaves them out); everything
# else always.
want_profiles = {"traefik": ["edge"], "console": ["edge"], "grafana": ["grafana"]}
for name, s in full["services"].items():
    if s.get("profiles") != want_profiles.get(name):
        problems.append(f"{name}: profiles {s.get('profiles')} (want {want_profiles.get(name)})")
for name, s in full["services"].items():
    img = s.get("image", "")
    if ":" not in img.split("/")[-1] or img.endswith(":latest"):
        problems.append(f"{name}: image {img!r} is not pinned to a tag")
    if name not in one_shot and "healthcheck" not in s:
        problems.append(f"{name}: no healthcheck")
    deps = s.get("depends_on", {})
    if isinstance(deps, list) or any("condition" not in d for d in deps.values()):
        problems.append(f"{name}: depends_on without conditions")
    if name in stateful:
        def named(v):  # compose v1 prints "source:target:mode", v2 a mapping
            if isinstance(v, str):
                src, _, rest = v.partition(":")
                return not src.startswith(("/", ".")) and rest.split(":")[0] == stateful[name]
            return v.get("type") == "volume" and v.get("target") == stateful[name]
        vols = [v for v in s.get("volumes", []) if named(v)]
        if not vols:
            problems.append(f"{name}: {stateful[name]} is not a named volume")
    if name in ours and name != "console":
        if not s.get("read_only") or "ALL" not in s.get("cap_drop", []):
            problems.append(f"{name}: not read-only with all capabilities dropped")
# Third-party images: official name, pinned, overridable by a variable.
for name, s in raw["services"].items():
    img = s.get("image")
    if img is None:  # from the x-supaplane anchor
        continue
    if name not in ours and not re.fullmatch(r"\$\{[A-Z_]+_IMAGE:-[a-z0-9./-]+:[A-Za-z0-9._-]+\}", img):
        problems.append(f"{name}: image {img!r} is not ${{VAR_IMAGE:-name:tag}}")
# No secret value from .env written into the file itself.
for k, v in env.items():
    if len(v) >= 16 and v in raw_text:
        problems.append(f"the value of {k} is inlined in docker-compose.yml")
for k, v in re.findall(r"^\s*([A-Z_]*(?:PASSWORD|SECRET|MASTER_KEY)[A-Z_]*):\s*(\S.*)$", raw_text, re.M):
    if "${" not in v:
        problems.append(f"{k} is set to a literal in docker-compose.yml")
if set(full.get("volumes", {})) < set(["nats-data", "redis-data", "postgres-data"]):
    problems.append("named volumes missing")
if problems:
    print("\n".join("FAIL: " + p for p in problems), file=sys.stderr)
    sys.exit(1)
print(f"compose: {len(full['services'])} services checked")
PY

# Prometheus: promtool, and the same jobs as deploy/prometheus (the alerts' job labels).
mkdir -p "$WORK/prom"
cp "$C/prometheus/prometheus.yml" "$ROOT/deploy/prometheus/alerts.yml" "$WORK/prom/"
promtool check config "$WORK/prom/prometheus.yml" >/dev/null
jobs() { python3 -c 'import sys, yaml; print(sorted(j["job_name"] for j in yaml.safe_load(open(sys.argv[1]))["scrape_configs"]))' "$1"; }
[ "$(jobs "$C/prometheus/prometheus.yml")" = "$(jobs "$ROOT/deploy/prometheus/prometheus.yml")" ] ||
  fail "compose's Prometheus jobs differ from deploy/prometheus/prometheus.yml"

# NATS: the config is valid and its users are deploy/k8s's.
# With the passwords make-env writes: nats-server parses an environment
# variable's value as a config value (a leading digit once broke it), so try
# twenty fresh sets.
for i in $(seq 20); do
  "$C/make-env" --output "$WORK/nats$i.env" >/dev/null
  (set -a; source "$WORK/nats$i.env"; set +a; cd "$C/nats" && nats-server -c nats.conf -t) >"$WORK/nats.out" 2>&1 ||
    { cat "$WORK/nats.out" >&2; fail "nats-server rejects deploy/compose/nats/nats.conf with make-env's passwords"; }
done
python3 - "$C/nats/nats.conf" "$ROOT/deploy/k8s/base/nats.yaml" <<'PY' || fail "the NATS users of compose and k8s differ"
import sys, yaml
compose = open(sys.argv[1]).read()
k8s = next(o for o in yaml.safe_load_all(open(sys.argv[2])) if o and o["kind"] == "ConfigMap")["data"]["users.conf"]
sys.exit(0 if k8s.strip() in compose else 1)
PY
echo "compose: valid with and without profiles and the docker-driver override; checks passed"
