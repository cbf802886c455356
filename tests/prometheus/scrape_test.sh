#!/usr/bin/env bash
# A real Prometheus (Debian's package) scrapes the four running services and
# the console: ./scripts/run starts the platform (the console built into the
# temp dir) on free ports in a temp dir, Prometheus
# gets deploy/prometheus/prometheus.yml with only the targets rewritten (same
# job names, same alerts.yml), a little traffic makes the labelled series
# appear, then:
#   - every target of the five jobs is up;
#   - every alert rule and every Grafana dashboard expression evaluates
#     through the HTTP query API without an error;
#   - every metric those expressions name is among the scraped series (a
#     renamed metric would otherwise evaluate quietly to nothing);
#   - every rule group loaded and evaluated with health "ok".
# Stops what it started.   scrape_test.sh BUILD_DIR
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
BUILD="${1:?usage: scrape_test.sh BUILD_DIR}"
fail() { echo "FAIL: $*" >&2; exit 1; }
for tool in prometheus python3 jq curl; do
  command -v "$tool" >/dev/null || fail "'$tool' not found (./scripts/test installs Debian's prometheus, python3-yaml, jq, curl)"
done

export SUPAPLANE_RUN_DIR; SUPAPLANE_RUN_DIR="$(mktemp -d /tmp/supaplane-scrape-XXXXXX)"
chmod 755 "$SUPAPLANE_RUN_DIR"
export SUPAPLANE_BUILD_DIR="$BUILD" SUPAPLANE_RUN_SKIP_BUILD=1 SUPAPLANE_DRIVER=postgres
export SUPAPLANE_CONSOLE_DIST="$SUPAPLANE_RUN_DIR/console-dist"
# One npm ci / console build at a time in this checkout (as tests/console).
exec {lock}>"${TMPDIR:-/tmp}/supaplane-console-build.lock"
flock "$lock"
console_build "$SUPAPLANE_CONSOLE_DIST" >/dev/null || fail "the console does not build"
flock -u "$lock"
free_port nats; free_port redis; free_port pg; free_port grpc; free_port metrics
free_port billing_http; free_port billing_metrics; free_port billing_grpc
free_port prov_metrics; free_port router_http; free_port router_metrics; free_port prom
free_port console; free_port console_metrics
export SUPAPLANE_RUN_NATS_PORT=$nats SUPAPLANE_RUN_REDIS_PORT=$redis SUPAPLANE_RUN_PG_PORT=$pg
export SUPAPLANE_GRPC_ADDR="127.0.0.1:$grpc" SUPAPLANE_METRICS_ADDR="127.0.0.1:$metrics"
export SUPAPLANE_BILLING_HTTP_ADDR="127.0.0.1:$billing_http" SUPAPLANE_BILLING_METRICS_ADDR="127.0.0.1:$billing_metrics"
export SUPAPLANE_BILLING_GRPC_ADDR="127.0.0.1:$billing_grpc"
export SUPAPLANE_PROVISIONER_METRICS_ADDR="127.0.0.1:$prov_metrics"
export SUPAPLANE_ROUTER_HTTP_ADDR="127.0.0.1:$router_http" SUPAPLANE_ROUTER_METRICS_ADDR="127.0.0.1:$router_metrics"
export SUPAPLANE_CONSOLE_ADDR="127.0.0.1:$console" SUPAPLANE_CONSOLE_METRICS_ADDR="127.0.0.1:$console_metrics"
PROM_PID=""
cleanup() {
  if [ -n "$PROM_PID" ]; then kill "$PROM_PID" 2>/dev/null || true; wait "$PROM_PID" 2>/dev/null || true; fi
  "$ROOT/scripts/run" stop >/dev/null 2>&1 || true
  rm -rf "$SUPAPLANE_RUN_DIR"
}
trap cleanup EXIT

"$ROOT/scripts/run" start >"$SUPAPLANE_RUN_DIR/run.out" 2>&1 || { cat "$SUPAPLANE_RUN_DIR/run.out"; exit 1; }

# The shipped scrape config, pointed at this run: targets by job name, a 1 s
# interval so the test does not wait 15 s per scrape, the shipped rules.
P="$SUPAPLANE_RUN_DIR/prometheus"
mkdir -p "$P/data"
python3 - "$ROOT/deploy/prometheus/prometheus.yml" "$P/prometheus.yml" "$ROOT/deploy/prometheus" <<PY
import sys, yaml
src, dst, rules_dir = sys.argv[1:]
cfg = yaml.safe_load(open(src))
targets = {
    "supaplane-api": "$SUPAPLANE_METRICS_ADDR",
    "supaplane-provisioner": "$SUPAPLANE_PROVISIONER_METRICS_ADDR",
    "supaplane-router-sync": "$SUPAPLANE_ROUTER_METRICS_ADDR",
    "supaplane-billing": "$SUPAPLANE_BILLING_METRICS_ADDR",
    "supaplane-console": "$SUPAPLANE_CONSOLE_METRICS_ADDR",
}
jobs = [j["job_name"] for j in cfg["scrape_configs"]]
if sorted(jobs) != sorted(targets):
    sys.exit("deploy/prometheus/prometheus.yml jobs %s are not the four services and the console %s" % (jobs, sorted(targets)))
for j in cfg["scrape_configs"]:
    j["static_configs"] = [{"targets": [targets[j["job_name"]]]}]
cfg["global"]["scrape_interval"] = "1s"
cfg["global"]["evaluation_interval"] = "1s"
cfg["rule_files"] = [f if f.startswith("/") else rules_dir + "/" + f for f in cfg["rule_files"]]
yaml.safe_dump(cfg, open(dst, "w"))
PY
prometheus --config.file="$P/prometheus.yml" --storage.tsdb.path="$P/data" \
  --web.listen-address="127.0.0.1:$prom" >"$P/log" 2>&1 &
PROM_PID=$!
PROM="http://127.0.0.1:$prom"
wait_http "$PROM/-/ready" 60 "$PROM_PID" || { tail -20 "$P/log" >&2; fail "prometheus did not become ready"; }

# Traffic, so that the series with labels exist: api calls (sign-up, create,
# a NOT_FOUND), a ForwardAuth answer, a webhook with a bad signature.
export SUPAPLANE_API_ADDR="$SUPAPLANE_GRPC_ADDR" SUPAPLANE_TOKEN_FILE="$SUPAPLANE_RUN_DIR/token"
ctl() { "$BUILD/cli/supaplanectl" "$@"; }
ctl signup --email scrape@example.com --password scrape-password-1 >/dev/null
ctl --json tenant create --name scrape >/dev/null 2>"$SUPAPLANE_RUN_DIR/create.err" || { cat "$SUPAPLANE_RUN_DIR/create.err" >&2; fail "tenant create"; }
ctl tenant get zzzzzzzzzzzzzzzzzzzz >/dev/null 2>&1 || true
curl -s -o /dev/null -H 'Host: nobody.supaplane.localhost' -H 'apikey: sb_publishable_nope' \
  "http://$SUPAPLANE_ROUTER_HTTP_ADDR/auth/forward" || true
curl -s -o /dev/null -X POST -H 'Stripe-Signature: t=1,v1=00' -H 'Content-Type: application/json' \
  --data '{"id":"evt_1","type":"invoice.paid"}' "http://$SUPAPLANE_BILLING_HTTP_ADDR/stripe/webhook" || true
curl -s -o /dev/null -X POST -H 'Content-Type: application/grpc-web+proto' --data-binary 'x' \
  "http://$SUPAPLANE_CONSOLE_ADDR/supaplane.v1.AdminService/Nope" || true

# Every target up.
deadline=$((SECONDS + 60))
while :; do
  t=$(curl -fsS "$PROM/api/v1/targets?state=active")
  up=$(jq '[.data.activeTargets[] | select(.health == "up")] | length' <<<"$t")
  [ "$up" -eq 5 ] && break
  ((SECONDS < deadline)) || { jq '.data.activeTargets[] | {job: .labels.job, health, lastError}' <<<"$t" >&2; fail "only $up of 5 targets up"; }
  sleep 0.5
done
jq -r '.data.activeTargets[] | "up: \(.labels.job) \(.scrapeUrl)"' <<<"$t"

# The expressions: alerts.yml and the dashboard.
python3 - "$ROOT/deploy/prometheus/alerts.yml" "$ROOT/deploy/grafana/dashboards" >"$P/exprs" <<'PY'
import glob, json, sys, yaml
for g in yaml.safe_load(open(sys.argv[1]))["groups"]:
    for r in g["rules"]:
        print("alert %s\t%s" % (r.get("alert") or r.get("record"), " ".join(r["expr"].split())))
def panels(ps):
    for p in ps:
        yield p
        yield from panels(p.get("panels", []))
for f in sorted(glob.glob(sys.argv[2] + "/*.json")):
    for p in panels(json.load(open(f)).get("panels", [])):
        for t in p.get("targets", []):
            if t.get("expr"):
                print("panel %s\t%s" % (p.get("title"), " ".join(t["expr"].split())))
PY
n_alert=$(grep -c '^alert' "$P/exprs"); n_panel=$(grep -c '^panel' "$P/exprs")
((n_alert > 0 && n_panel > 0)) || fail "found $n_alert alert and $n_panel dashboard expressions"

# Metric names the expressions use must be scraped series: wait (bounded) for
# a scrape after the traffic above, then compare with Prometheus' own list.
names=$(cut -f2 "$P/exprs" | grep -oE '\b(supaplane_[a-z0-9_]+|up)\b' | sort -u)
deadline=$((SECONDS + 30))
while :; do
  have=$(curl -fsS "$PROM/api/v1/label/__name__/values" | jq -r '.data[]')
  missing=$(comm -23 <(echo "$names") <(sort -u <<<"$have"))
  [ -z "$missing" ] && break
  ((SECONDS < deadline)) || fail "expressions name metrics no service exposes (or none with a sample yet):
$missing"
  sleep 0.5
done

errors=0
while IFS=$'\t' read -r what expr; do
  r=$(curl -sS "$PROM/api/v1/query" --data-urlencode "query=$expr")
  if [ "$(jq -r '.status' <<<"$r")" != success ]; then
    echo "ERROR in $what: $expr: $(jq -r '.error // .' <<<"$r")" >&2
    errors=$((errors + 1))
  fi
done <"$P/exprs"
((errors == 0)) || fail "$errors expressions did not evaluate"

# The rule groups: loaded and evaluated by the server itself, all healthy.
deadline=$((SECONDS + 30))
while :; do
  rules=$(curl -fsS "$PROM/api/v1/rules")
  groups=$(jq '[.data.groups[] | select(.lastEvaluation != "0001-01-01T00:00:00Z")] | length' <<<"$rules")
  [ "$groups" -eq "$(jq '.data.groups | length' <<<"$rules")" ] && [ "$groups" -gt 0 ] && break
  ((SECONDS < deadline)) || fail "rule groups were not evaluated"
  sleep 0.5
done
bad=$(jq -r '.data.groups[].rules[] | select(.health != "ok") | "\(.name): \(.health) \(.lastError)"' <<<"$rules")
[ -z "$bad" ] || fail "rules unhealthy in Prometheus:
$bad"
firing=$(jq -r '.data.groups[].rules[] | select(.state == "firing") | .name' <<<"$rules")
echo "prometheus: 5 targets up; $n_alert alert and $n_panel dashboard expressions evaluated;" \
  "$(wc -w <<<"$names") metric names present; rules healthy (firing now: ${firing:-none})"
