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
export SUPAPLANE_RUN_NATS_PORT=$nats SUPAPLANE_RUN_REDIS_PORT=$redis SUPAPLANE_RUN_PG_PORT=$pg
export SUPAPLANE_GRPC_ADDR="127.0.0.1:$grpc" SUPAPLANE_METRICS_ADDR="127.0.0.1:$metrics"
export SUPAPLANE_BILLING_HTTP_ADDR="127.0.0.1:$billing_http" SUPAPLANE_BILLING_METRICS_ADDR="127.0.0.1:$billing_metrics"
export SUPAPLANE_BILLING_GRPC_ADDR="127.0.0.1:$billing_grpc"
export SUPAPLANE_PROVISIONER_METRICS_ADDR="127.0.0.1:$prov_metrics"
export SUPAPLANE_ROUTER_HTTP_ADDR="127.0.0.1:$router_http" SUPAPLANE_ROUTER_METRICS_ADDR="127.0.0.1:$router_metrics"
export SUPAPLANE_CONSOLE_ADDR="127.0.0.1:$console"
# The login → 1,000 projects measurement makes 1,000 FREE projects in one
# account: above the customer quota, which this run turns off.
export SUPAPLANE_QUOTA_FREE_TENANTS=0 SUPAPLANE_QUOTA_TENANTS=0
cleanup() {
  "$ROOT/scripts/run" stop >/dev/null 2>&1 || true
  rm -f "$DIR/test-output/e2e-$$.mjs"
  rm -rf "$TMP"
}
trap cleanup EXIT

"$ROOT/scripts/run" start >"$TMP/run.out" 2>&1 || { cat "$TMP/run.out"; exit 1; }
grep -q "^  console  http://$SUPAPLANE_CONSOLE_ADDR\$" "$TMP/run.out" || { echo "FAIL: no console line" >&2; cat "$TMP/run.out"; exit 1; }
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

# A second console on the same address refuses to start and names it.
set +e
out=$(SUPAPLANE_CONSOLE_ADDR="$SUPAPLANE_CONSOLE_ADDR" SUPAPLANE_API_ADDR="$SUPAPLANE_GRPC_ADDR" \
  timeout 20 node "$TMP/dist/server/server.mjs" 2>&1)
rc=$?
set -e
[ "$rc" -eq 1 ] && [[ "$out" == *"$SUPAPLANE_CONSOLE_ADDR is already in use"* ]] ||
  { echo "FAIL: a second console on a used address: exit $rc: $out" >&2; exit 1; }

# A second console without SUPAPLANE_BILLING_ADDR: no BillingService, no Checkout button.
free_port console2
SUPAPLANE_CONSOLE_ADDR="127.0.0.1:$console2" SUPAPLANE_API_ADDR="$SUPAPLANE_GRPC_ADDR" \
  node "$TMP/dist/server/server.mjs" >"$SUPAPLANE_RUN_DIR/logs/console-nobilling.log" 2>&1 &
console2_pid=$!
trap 'kill "$console2_pid" 2>/dev/null || true; wait "$console2_pid" 2>/dev/null || true; cleanup' EXIT
wait_http "http://127.0.0.1:$console2/readyz" 30 "$console2_pid" || { echo "FAIL: second console not ready" >&2; exit 1; }

set -a; source "$SUPAPLANE_RUN_DIR/secrets.env"; set +a
OUT="${SUPAPLANE_CONSOLE_TEST_OUT:-$BUILD/console-test}"
rm -rf "$OUT"; mkdir -p "$OUT"
CONSOLE_URL="http://$SUPAPLANE_CONSOLE_ADDR" CONSOLE_NO_BILLING_URL="http://127.0.0.1:$console2" CONSOLE_TEST_OUT="$OUT" SUPAPLANE_ROOT="$ROOT" \
  CONSOLE_SIZES_JSON="$TMP/dist/sizes.json" node "$DIR/test-output/e2e-$$.mjs" || {
  echo "--- console log" >&2; tail -40 "$SUPAPLANE_RUN_DIR/logs/console.log" >&2
  echo "--- api log" >&2; tail -20 "$SUPAPLANE_RUN_DIR/logs/api.log" >&2
  exit 1
}

# Nothing secret in any log: passwords, tokens never logged by the console.
for secret in "$SUPAPLANE_ADMIN_PASSWORD" alice-password-1 bench-password-1 "Bearer "; do
  if grep -rqF -- "$secret" "$SUPAPLANE_RUN_DIR/logs/"; then echo "FAIL: '$secret' found in a log" >&2; exit 1; fi
done
echo "screenshots and measurements in $OUT"
echo "console browser suite passed"
