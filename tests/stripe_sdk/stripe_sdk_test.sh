#!/usr/bin/env bash
# Webhook signatures made by Stripe's own SDK (npm package `stripe`) against a
# real supaplane-billing on throwaway nats-server / redis-server. Fails (never
# skips) when node or npm is missing.   stripe_sdk_test.sh BUILD_DIR
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
BUILD="${1:?usage: stripe_sdk_test.sh BUILD_DIR}"
HERE="$ROOT/tests/stripe_sdk"

for tool in node npm; do
  command -v "$tool" >/dev/null || {
    echo "FAIL: '$tool' not found: this test signs webhooks with Stripe's Node SDK;" \
      "install Node.js 18+ with npm (Debian: apt-get install nodejs npm)" >&2
    exit 1
  }
done

# npm ci into a cache directory keyed by the lock file (the worktree stays clean).
CACHE="${SUPAPLANE_NPM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/supaplane/stripe_sdk}"
KEY=$(sha256sum "$HERE/package-lock.json" | cut -c1-16)
DEPS="$CACHE/$KEY"
if [ ! -f "$DEPS/.installed" ]; then
  mkdir -p "$DEPS"
  cp "$HERE/package.json" "$HERE/package-lock.json" "$DEPS/"
  (cd "$DEPS" && npm ci --no-audit --no-fund --loglevel=error) || {
    echo "FAIL: npm ci of tests/stripe_sdk failed (is the npm registry reachable?)" >&2
    exit 1
  }
  touch "$DEPS/.installed"
fi

TMP="$(mktemp -d /tmp/supaplane-stripe-sdk-XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port NATS_PORT; free_port REDIS_PORT; free_port HTTP_PORT; free_port METRICS_PORT; free_port GRPC_PORT
nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$TMP/nats" >"$TMP/nats.log" 2>&1 &
pids+=($!)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >"$TMP/redis.log" 2>&1 &
pids+=($!)
wait_tcp "$NATS_PORT" 20 || { echo "FAIL: nats-server did not start" >&2; exit 1; }
wait_tcp "$REDIS_PORT" 20 || { echo "FAIL: redis-server did not start" >&2; exit 1; }
# The admin step (services never create the stream).
"$BUILD/cli/supaplanectl" admin init-stream --nats-url "nats://127.0.0.1:$NATS_PORT" >"$TMP/init-stream.log" 2>&1 ||
  { echo "FAIL: supaplanectl admin init-stream: $(cat "$TMP/init-stream.log")" >&2; exit 1; }

SECRET="whsec_$(head -c 24 /dev/urandom | base64 | tr -d '\n/+=')"
HTTP_ADDR="127.0.0.1:$HTTP_PORT"
METRICS_ADDR="127.0.0.1:$METRICS_PORT"
SUPAPLANE_NATS_URL="nats://127.0.0.1:$NATS_PORT" SUPAPLANE_REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
  SUPAPLANE_HTTP_ADDR="$HTTP_ADDR" SUPAPLANE_METRICS_ADDR="$METRICS_ADDR" \
  SUPAPLANE_BILLING_GRPC_ADDR="127.0.0.1:$GRPC_PORT" SUPAPLANE_STRIPE_WEBHOOK_SECRET="$SECRET" \
  "$BUILD/services/billing/supaplane-billing" >"$TMP/billing.log" 2>&1 &
pids+=($!)
wait_http "http://$METRICS_ADDR/readyz" 30 "${pids[-1]}" || {
  echo "FAIL: supaplane-billing not ready" >&2
  cat "$TMP/billing.log" >&2
  exit 1
}

NODE_PATH="$DEPS/node_modules" node "$HERE/check.js" "http://$HTTP_ADDR/stripe/webhook" "$SECRET" || {
  echo "--- billing log" >&2
  tail -30 "$TMP/billing.log" >&2
  exit 1
}
# The duplicate was answered 200 and recorded once.
metrics=$(curl -fsS "http://$METRICS_ADDR/metrics")
[[ "$metrics" == *"supaplane_billing_recorded_events_total 1"* ]] || { echo "FAIL: recorded != 1" >&2; exit 1; }
[[ "$metrics" == *"supaplane_billing_duplicate_events_total 1"* ]] || { echo "FAIL: duplicates != 1" >&2; exit 1; }
echo "stripe SDK test passed"
