#!/usr/bin/env bash
# The web console: unit tests (node:test), then the browser suite in Debian's
# Chromium (playwright-core) against real servers started by ./scripts/run on
# free ports in a temp dir: nats-server, redis-server, PostgreSQL, api,
# provisioner (postgres driver), billing, router-sync and supaplane-console.
# Never skips: a missing chromium is installed, a missing npm fails.
#   console_test.sh BUILD_DIR [unit|browser]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
BUILD="${1:?usage: console_test.sh BUILD_DIR [unit|browser]}"
WHAT="${2:-browser}"
DIR="$ROOT/console"

for tool in node npm; do
  command -v "$tool" >/dev/null || {
    echo "FAIL: '$tool' not found: the console is built and tested with Node.js 18+ and npm" \
      "(Debian: apt-get install nodejs npm)" >&2
    exit 1
  }
done

# One npm ci / generation at a time: the unit and browser suites run in parallel.
exec {lock}>"${TMPDIR:-/tmp}/supaplane-console-build.lock"
TMP="$(mktemp -d /tmp/supaplane-console-XXXXXX)"
chmod 755 "$TMP"

if [ "$WHAT" = unit ]; then
  trap 'rm -rf "$TMP"' EXIT
  flock "$lock"  # held while the tests read src/gen, which a build rewrites
  console_build "$TMP/dist" >/dev/null
  (cd "$DIR" && node scripts/unit.mjs)
  exit 0
fi

if [ ! -x /usr/bin/chromium ]; then
  log "installing chromium (Debian's package; no browser download)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium || {
    echo "FAIL: chromium is needed by the console's browser suite and could not be installed" >&2
    exit 1
  }
fi

flock "$lock"
console_build "$TMP/dist"
(cd "$DIR" && npx esbuild test/browser/e2e.ts --bundle --platform=node --format=esm --packages=external \
  --log-level=warning --outfile=test-output/e2e-$$.mjs)
flock -u "$lock"

export SUPAPLANE_RUN_DIR="$TMP/run"
mkdir -p "$SUPAPLANE_RUN_DIR"
export SUPAPLANE_BUILD_DIR="$BUILD" SUPAPLANE_RUN_SKIP_BUILD=1 SUPAPLANE_CONSOLE_DIST="$TMP/dist"
free_port nats; free_port redis; free_port pg; free_port grpc; free_port metrics
free_port billing_http; free_port billing_metrics; free_port billing_grpc
free_port prov_metrics; free_port router_http; free_port router_metrics; free_port console
free_port stripe; free_port tls_grpc; free_port tls_metrics; free_port console_tls; free_port console_badca
free_port console_metrics
export SUPAPLANE_RUN_NATS_PORT=$nats SUPAPLANE_RUN_REDIS_PORT=$redis SUPAPLANE_RUN_PG_PORT=$pg
export SUPAPLANE_GRPC_ADDR="127.0.0.1:$grpc" SUPAPLANE_METRICS_ADDR="127.0.0.1:$metrics"
export SUPAPLANE_BILLING_HTTP_ADDR="127.0.0.1:$billing_http" SUPAPLANE_BILLING_METRICS_ADDR="127.0.0.1:$billing_metrics"
export SUPAPLANE_BILLING_GRPC_ADDR="127.0.0.1:$billing_grpc"
export SUPAPLANE_PROVISIONER_METRICS_ADDR="127.0.0.1:$prov_metrics"
export SUPAPLANE_ROUTER_HTTP_ADDR="127.0.0.1:$router_http" SUPAPLANE_ROUTER_METRICS_ADDR="127.0.0.1:$router_metrics"
export SUPAPLANE_CONSOLE_ADDR="127.0.0.1:$console" SUPAPLANE_CONSOLE_METRICS_ADDR="127.0.0.1:$console_metrics"
# The login → 1,000 projects measurement makes 1,000 FREE projects in one
# account: above the customer quota, which this run turns off.
export SUPAPLANE_QUOTA_FREE_TENANTS=0 SUPAPLANE_QUOTA_TENANTS=0
# It also logs that account in three times per sample (the console, the raw
# gRPC calls, once through the bridge), more than the api's login rate per
# e-mail and per address allows in a minute: this run turns those off.
export SUPAPLANE_API_AUTH_RATE_PER_EMAIL=0 SUPAPLANE_API_AUTH_RATE_PER_ADDRESS=0
# Checkout: billing calls a stand-in of Stripe's API that the browser suite
# serves on this port (e2e.ts); Stripe's answer sends the browser there.
export SUPAPLANE_STRIPE_SECRET_KEY=sk_test_console SUPAPLANE_STRIPE_API_BASE="http://127.0.0.1:$stripe"
export SUPAPLANE_STRIPE_PRICE_STARTER=price_console_starter SUPAPLANE_STRIPE_PRICE_PRO=price_console_pro
export SUPAPLANE_CHECKOUT_SUCCESS_URL="http://$SUPAPLANE_CONSOLE_ADDR/projects" SUPAPLANE_CHECKOUT_CANCEL_URL="http://$SUPAPLANE_CONSOLE_ADDR/projects"
cleanup() {
  "$ROOT/scripts/run" stop >/dev/null 2>&1 || true
  rm -f "$DIR/test-output/e2e-$$.mjs"
  rm -rf "$TMP"
}
trap cleanup EXIT

"$ROOT/scripts/run" start >"$TMP/run.out" 2>&1 || { cat "$TMP/run.out"; exit 1; }
grep -qF "  console  http://$SUPAPLANE_CONSOLE_ADDR   (metrics http://$SUPAPLANE_CONSOLE_METRICS_ADDR/metrics)" "$TMP/run.out" || { echo "FAIL: no console line" >&2; cat "$TMP/run.out"; exit 1; }
[[ "$("$ROOT/scripts/run" status)" == *"console: running"* ]] || { echo "FAIL: status lacks the console" >&2; exit 1; }

# Bad configuration stops the start and says what is wrong.
bad() {  # expected-text VAR=value...
  local want=$1 out rc
  shift
  set +e
  out=$(env "$@" timeout 20 node "$TMP/dist/server/server.mjs" 2>&1)
  rc=$?
  set -e
  [ "$rc" -eq 1 ] && [[ "$out" == *"$want"* ]] || { echo "FAIL: $*: exit $rc: $out" >&2; exit 1; }
}
echo "not a certificate" >"$TMP/bad-ca.pem"
bad "holds no PEM certificate" SUPAPLANE_CONSOLE_ADDR=127.0.0.1:0 SUPAPLANE_CA_FILE="$TMP/bad-ca.pem"
bad "cannot read SUPAPLANE_CA_FILE" SUPAPLANE_CONSOLE_ADDR=127.0.0.1:0 SUPAPLANE_CA_FILE="$TMP/missing.pem"
bad "SUPAPLANE_API_ADDR='nowhere' is not host:port" SUPAPLANE_CONSOLE_ADDR=127.0.0.1:0 SUPAPLANE_API_ADDR=nowhere
bad "SUPAPLANE_CONSOLE_MAX_REQUEST_BYTES" SUPAPLANE_CONSOLE_ADDR=127.0.0.1:0 SUPAPLANE_CONSOLE_MAX_REQUEST_BYTES=12
bad "SUPAPLANE_CONSOLE_METRICS_ADDR='nowhere' is not host:port" SUPAPLANE_CONSOLE_ADDR=127.0.0.1:0 SUPAPLANE_CONSOLE_METRICS_ADDR=nowhere
bad "$SUPAPLANE_CONSOLE_METRICS_ADDR is already in use (SUPAPLANE_CONSOLE_METRICS_ADDR)" SUPAPLANE_CONSOLE_ADDR=127.0.0.1:0 \
  SUPAPLANE_API_ADDR="$SUPAPLANE_GRPC_ADDR"

# A second console on the same address refuses to start and names it.
set +e
out=$(SUPAPLANE_CONSOLE_ADDR="$SUPAPLANE_CONSOLE_ADDR" SUPAPLANE_API_ADDR="$SUPAPLANE_GRPC_ADDR" \
  SUPAPLANE_CONSOLE_METRICS_ADDR=127.0.0.1:0 timeout 20 node "$TMP/dist/server/server.mjs" 2>&1)
rc=$?
set -e
[ "$rc" -eq 1 ] && [[ "$out" == *"$SUPAPLANE_CONSOLE_ADDR is already in use"* ]] ||
  { echo "FAIL: a second console on a used address: exit $rc: $out" >&2; exit 1; }

# A second console without SUPAPLANE_BILLING_ADDR: no BillingService, no Checkout button.
free_port console2
# Other consoles: their metrics on any free port (SUPAPLANE_CONSOLE_METRICS_ADDR stays the first's).
SUPAPLANE_CONSOLE_ADDR="127.0.0.1:$console2" SUPAPLANE_API_ADDR="$SUPAPLANE_GRPC_ADDR" SUPAPLANE_CONSOLE_METRICS_ADDR=127.0.0.1:0 \
  node "$TMP/dist/server/server.mjs" >"$SUPAPLANE_RUN_DIR/logs/console-nobilling.log" 2>&1 &
console2_pid=$!
trap 'kill "$console2_pid" 2>/dev/null || true; wait "$console2_pid" 2>/dev/null || true; cleanup' EXIT
wait_http "http://127.0.0.1:$console2/readyz" 30 "$console2_pid" || { echo "FAIL: second console not ready" >&2; exit 1; }

set -a; source "$SUPAPLANE_RUN_DIR/secrets.env"; set +a

# TLS: a second api replica (same log, projection and database) whose gRPC
# port speaks TLS only, with a certificate made here; a console that trusts
# it, and one that trusts another certificate (it must not reach the api).
# Replica id api-1: a durable its NATS user may use (api-projector-api-1).
mkdir -p "$TMP/tls"
for name in api other; do
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj "/CN=$name" \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -keyout "$TMP/tls/$name.key" -out "$TMP/tls/$name.crt" \
    >"$TMP/tls/$name.log" 2>&1 || { cat "$TMP/tls/$name.log" >&2; exit 1; }
done
SUPAPLANE_GRPC_ADDR="127.0.0.1:$tls_grpc" SUPAPLANE_METRICS_ADDR="127.0.0.1:$tls_metrics" \
  SUPAPLANE_TLS_CERT="$TMP/tls/api.crt" SUPAPLANE_TLS_KEY="$TMP/tls/api.key" SUPAPLANE_REPLICA_ID=api-1 \
  SUPAPLANE_NATS_URL="nats://api:$NATS_API_PASSWORD@127.0.0.1:$nats" \
  SUPAPLANE_REDIS_URL="redis://api:$REDIS_API_PASSWORD@127.0.0.1:$redis" \
  SUPAPLANE_DATABASE_URL="host=$SUPAPLANE_RUN_DIR/pg port=$pg user=postgres dbname=supaplane" \
  SUPAPLANE_API_TRUSTED_PROXIES=127.0.0.1,::1 \
  "$BUILD/services/api/supaplane-api" >"$SUPAPLANE_RUN_DIR/logs/api-tls.log" 2>&1 &
api_tls_pid=$!
SUPAPLANE_CONSOLE_ADDR="127.0.0.1:$console_tls" SUPAPLANE_API_ADDR="127.0.0.1:$tls_grpc" SUPAPLANE_CA_FILE="$TMP/tls/api.crt" \
  SUPAPLANE_CONSOLE_METRICS_ADDR=127.0.0.1:0 \
  node "$TMP/dist/server/server.mjs" >"$SUPAPLANE_RUN_DIR/logs/console-tls.log" 2>&1 &
console_tls_pid=$!
SUPAPLANE_CONSOLE_ADDR="127.0.0.1:$console_badca" SUPAPLANE_API_ADDR="127.0.0.1:$tls_grpc" SUPAPLANE_CA_FILE="$TMP/tls/other.crt" \
  SUPAPLANE_CONSOLE_METRICS_ADDR=127.0.0.1:0 \
  node "$TMP/dist/server/server.mjs" >"$SUPAPLANE_RUN_DIR/logs/console-badca.log" 2>&1 &
console_badca_pid=$!
trap 'for p in "$console2_pid" "$api_tls_pid" "$console_tls_pid" "$console_badca_pid"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; cleanup' EXIT
wait_http "http://127.0.0.1:$tls_metrics/readyz" 60 "$api_tls_pid" || { echo "FAIL: the TLS api replica is not ready" >&2; tail -20 "$SUPAPLANE_RUN_DIR/logs/api-tls.log" >&2; exit 1; }
wait_http "http://127.0.0.1:$console_tls/readyz" 30 "$console_tls_pid" || { echo "FAIL: the console over TLS is not ready" >&2; tail -20 "$SUPAPLANE_RUN_DIR/logs/console-tls.log" >&2; exit 1; }
# Trusting another certificate: the process runs, but the api is not reachable.
wait_http "http://127.0.0.1:$console_badca/healthz" 30 "$console_badca_pid" || { echo "FAIL: the bad-CA console did not start" >&2; exit 1; }
code=$(curl -s -o "$TMP/badca-readyz" -w '%{http_code}' "http://127.0.0.1:$console_badca/readyz")
[ "$code" = 503 ] && grep -qF "127.0.0.1:$tls_grpc" "$TMP/badca-readyz" ||
  { echo "FAIL: a console trusting another certificate is ready ($code): $(cat "$TMP/badca-readyz")" >&2; exit 1; }

OUT="${SUPAPLANE_CONSOLE_TEST_OUT:-$BUILD/console-test}"
rm -rf "$OUT"; mkdir -p "$OUT"
CONSOLE_URL="http://$SUPAPLANE_CONSOLE_ADDR" CONSOLE_NO_BILLING_URL="http://127.0.0.1:$console2" CONSOLE_TEST_OUT="$OUT" SUPAPLANE_ROOT="$ROOT" \
  CONSOLE_TLS_URL="http://127.0.0.1:$console_tls" CONSOLE_BAD_CA_URL="http://127.0.0.1:$console_badca" STRIPE_STANDIN_PORT="$stripe" \
  CONSOLE_SIZES_JSON="$TMP/dist/sizes.json" node "$DIR/test-output/e2e-$$.mjs" || {
  echo "--- console log" >&2; tail -40 "$SUPAPLANE_RUN_DIR/logs/console.log" >&2
  echo "--- api log" >&2; tail -20 "$SUPAPLANE_RUN_DIR/logs/api.log" >&2
  echo "--- billing log" >&2; tail -20 "$SUPAPLANE_RUN_DIR/logs/billing.log" >&2
  exit 1
}

# The console's own metrics (its own port): the suite's logins went through the bridge.
m=$(curl -fsS "http://$SUPAPLANE_CONSOLE_METRICS_ADDR/metrics") || { echo "FAIL: no console /metrics" >&2; exit 1; }
grep -qE '^supaplane_console_bridge_calls_total\{method="/supaplane.v1.AccountService/Login",code="OK"\} [1-9]' <<<"$m" &&
  grep -qE '^supaplane_console_http_requests_total\{route="page",code="200"\} [1-9]' <<<"$m" &&
  grep -q '^process_resident_memory_bytes ' <<<"$m" ||
  { echo "FAIL: the console's /metrics lacks the suite's calls: $(grep supaplane_console_ <<<"$m" | head -20)" >&2; exit 1; }

# Nothing secret in any log: passwords, tokens never logged by the console.
for secret in "$SUPAPLANE_ADMIN_PASSWORD" "$SUPAPLANE_STRIPE_WEBHOOK_SECRET" "$SUPAPLANE_STRIPE_SECRET_KEY" \
  alice-password-1 bob-password-1 carol-password-1 bench-password-1 "Bearer "; do
  if grep -rqF -- "$secret" "$SUPAPLANE_RUN_DIR/logs/"; then echo "FAIL: '$secret' found in a log" >&2; exit 1; fi
done
echo "screenshots and measurements in $OUT"
echo "console browser suite passed"
