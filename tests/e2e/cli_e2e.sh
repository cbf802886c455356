#!/usr/bin/env bash
# End to end: ./scripts/run (on free ports, in a temp dir) then supaplanectl
# signs up, creates, pauses, resumes and deletes a tenant, reads its audit
# trail from the stream, and checks error exit codes. Stops what it started.
set -euo pipefail
# Note: never pipe into `grep -q` under pipefail (it exits early and the
# writer dies of SIGPIPE); grep a captured string instead.
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
BUILD="${1:?usage: cli_e2e.sh BUILD_DIR}"

export SUPAPLANE_RUN_DIR; SUPAPLANE_RUN_DIR="$(mktemp -d /tmp/supaplane-e2e-XXXXXX)"
chmod 755 "$SUPAPLANE_RUN_DIR"
# The console has its own suite (tests/console); this one is about the CLI.
export SUPAPLANE_BUILD_DIR="$BUILD" SUPAPLANE_RUN_SKIP_BUILD=1 SUPAPLANE_RUN_NO_CONSOLE=1
free_port nats; free_port redis; free_port pg; free_port grpc; free_port metrics
free_port billing_http; free_port billing_metrics; free_port billing_grpc
free_port prov_metrics; free_port router_http; free_port router_metrics
export SUPAPLANE_RUN_NATS_PORT=$nats SUPAPLANE_RUN_REDIS_PORT=$redis SUPAPLANE_RUN_PG_PORT=$pg
export SUPAPLANE_GRPC_ADDR="127.0.0.1:$grpc" SUPAPLANE_METRICS_ADDR="127.0.0.1:$metrics"
export SUPAPLANE_BILLING_HTTP_ADDR="127.0.0.1:$billing_http" SUPAPLANE_BILLING_METRICS_ADDR="127.0.0.1:$billing_metrics"
export SUPAPLANE_BILLING_GRPC_ADDR="127.0.0.1:$billing_grpc"
export SUPAPLANE_PROVISIONER_METRICS_ADDR="127.0.0.1:$prov_metrics"
export SUPAPLANE_ROUTER_HTTP_ADDR="127.0.0.1:$router_http" SUPAPLANE_ROUTER_METRICS_ADDR="127.0.0.1:$router_metrics"
cleanup() {
  "$ROOT/scripts/run" stop >/dev/null 2>&1 || true
  rm -rf "$SUPAPLANE_RUN_DIR"
}
trap cleanup EXIT

"$ROOT/scripts/run" start >"$SUPAPLANE_RUN_DIR/run.out" 2>&1 || { cat "$SUPAPLANE_RUN_DIR/run.out"; exit 1; }
grep -q "supaplane is running" "$SUPAPLANE_RUN_DIR/run.out"

export SUPAPLANE_API_ADDR="$SUPAPLANE_GRPC_ADDR"
# audit reads the log as the NATS admin (scripts/run's users; password in secrets.env).
export SUPAPLANE_NATS_URL="nats://admin:$(sed -n 's/^NATS_ADMIN_PASSWORD=//p' "$SUPAPLANE_RUN_DIR/secrets.env")@127.0.0.1:$SUPAPLANE_RUN_NATS_PORT"
export SUPAPLANE_TOKEN_FILE="$SUPAPLANE_RUN_DIR/token"
ctl() { "$BUILD/cli/supaplanectl" "$@"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
wait_phase() {  # ref phase: the provisioner converges in the background
  local deadline=$((SECONDS + 30)) phase=""
  while ((SECONDS < deadline)); do
    phase=$(ctl --json tenant get "$1" | jq -r '.phase')
    [ "$phase" = "$2" ] && return 0
    sleep 0.1
  done
  fail "$1 stayed $phase, never reached $2"
}
expect_exit() {  # code command...
  local want=$1; shift
  set +e; "$@" >/dev/null 2>&1; local got=$?; set -e
  [ "$got" -eq "$want" ] || fail "expected exit $want, got $got: $*"
}

ctl signup --email e2e@example.com --password e2e-password-1 >/dev/null
[ "$(stat -c %a "$SUPAPLANE_TOKEN_FILE")" = 600 ] || fail "token file is not 0600"
ctl --json me | jq -e '.email == "e2e@example.com"' >/dev/null

out=$(ctl --json tenant create --name shop --plan pro --request-id e2e-create-1)
ref=$(jq -r '.tenant.ref' <<<"$out")
[[ "$ref" =~ ^[a-z]{20}$ ]] || fail "bad ref: $ref"
[ "$(jq -r '.tenant.phase' <<<"$out")" = PROVISIONING ] || fail "not provisioning: $out"
# The same request id again: the same tenant, no second event.
again=$(ctl --json tenant create --name shop --plan pro --request-id e2e-create-1)
[ "$(jq -r '.tenant.ref' <<<"$again")" = "$ref" ] || fail "retry created another tenant"

seq=$(jq -r '.sequence' <<<"$out")
ctl --json tenant get "$ref" --min-sequence "$seq" | jq -e '.status == "COMING_UP" or .status == "ACTIVE_HEALTHY"' >/dev/null
wait_phase "$ref" ACTIVE
# Per-service health, in the shape of the Management API's project health:
# this platform's stack (the postgres driver) is the tenant's database.
health=$(ctl --json tenant health "$ref")
jq -e 'length == 1 and .[0].name == "db" and .[0].status == "ACTIVE_HEALTHY" and .[0].healthy == true' \
  <<<"$health" >/dev/null || fail "tenant health: $health"
table=$(ctl tenant health "$ref")
grep -Eq '^SERVICE[[:space:]]+STATUS' <<<"$table" || fail "tenant health table has no header: $table"
grep -Eq '^db[[:space:]]+ACTIVE_HEALTHY' <<<"$table" || fail "tenant health table: $table"
expect_exit 2 ctl tenant health NOT-A-REF
# The tenant's own database, with the credentials the owner is given.
cs=$(ctl --json tenant credentials "$ref" | jq -r '.connection_string')
[ "$(psql "$cs" -tAc 'SELECT 1')" = 1 ] || fail "cannot connect with the tenant's credentials"
mid=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
sleep 0.05
ctl --json tenant pause "$ref" | jq -e '.tenant.phase == "PAUSING"' >/dev/null
wait_phase "$ref" PAUSED
if psql "$cs" -tAc 'SELECT 1' >/dev/null 2>&1; then fail "a paused tenant accepts connections"; fi
ctl --json tenant health "$ref" | jq -e 'length == 0' >/dev/null || fail "a paused tenant reports services"
ctl --json tenant resume "$ref" | jq -e '.tenant.phase == "RESUMING"' >/dev/null
wait_phase "$ref" ACTIVE
[ "$(psql "$cs" -tAc 'SELECT 1')" = 1 ] || fail "a resumed tenant refuses connections"
# Key rotation: new credentials work, the old ones stop working.
rot=$(ctl --json tenant rotate-keys "$ref")
jq -e '.tenant.phase == "RECONCILING"' <<<"$rot" >/dev/null || fail "rotate-keys did not start a rotation: $rot"
ctl --json tenant get "$ref" --min-sequence "$(jq -r '.sequence' <<<"$rot")" >/dev/null
wait_phase "$ref" ACTIVE
cs_new=$(ctl --json tenant credentials "$ref" | jq -r '.connection_string')
[ "$cs_new" != "$cs" ] || fail "rotation left the connection string unchanged"
if psql "$cs" -tAc 'SELECT 1' >/dev/null 2>&1; then fail "the old password still works after rotation"; fi
[ "$(psql "$cs_new" -tAc 'SELECT 1')" = 1 ] || fail "the rotated credentials do not work"
cs="$cs_new"
ctl --json tenant delete "$ref" | jq -e '.tenant.phase == "DELETING"' >/dev/null
wait_phase "$ref" DELETED
if psql "$cs" -tAc 'SELECT 1' >/dev/null 2>&1; then fail "a deleted tenant accepts connections"; fi
expect_exit 5 ctl tenant pause "$ref"
ctl tenant list >/dev/null

# The audit trail, straight from the stream.
grep -q "tenant.deletion_requested" <<<"$(ctl audit "$ref")" || fail "audit table lacks the deletion"
n=$(ctl --json audit "$ref" | jq 'length')
[ "$n" -eq 12 ] || fail "expected 12 events (5 commands, 2 provisioning starts, 5 outcomes) in the audit trail, got $n"
ctl --json audit "$ref" --as-of "$mid" | jq -e '.state.phase == "ACTIVE" and (.events | length) == 3' >/dev/null \
  || fail "audit --as-of did not fold to ACTIVE"
ctl events tail --from-seq 1 --count 3 >/dev/null
# Regression: a NATS callback thread once outlived main() and crashed ~1 run
# in 100 (exit 139) while the log registry was being destroyed.
for _ in $(seq 60); do expect_exit 4 ctl audit zzzzzzzzzzzzzzzzzzzz; done

# Errors: bad input, no token, someone else's tenant.
expect_exit 2 ctl tenant get NOT-A-REF
expect_exit 2 ctl audit "$ref" --as-of yesterday
expect_exit 3 ctl --token-file "$SUPAPLANE_RUN_DIR/none" tenant list
ctl --token-file "$SUPAPLANE_RUN_DIR/other" signup --email other@example.com --password other-password-1 >/dev/null
expect_exit 4 ctl --token-file "$SUPAPLANE_RUN_DIR/other" tenant get "$ref"
expect_exit 3 ctl --token-file "$SUPAPLANE_RUN_DIR/other" admin list

# The operator.
source "$SUPAPLANE_RUN_DIR/secrets.env"
ctl --token-file "$SUPAPLANE_RUN_DIR/admin" login --email "$SUPAPLANE_ADMIN_EMAIL" --password "$SUPAPLANE_ADMIN_PASSWORD" >/dev/null

ref2=$(ctl --json tenant create --name shop2 | jq -r '.tenant.ref')
wait_phase "$ref2" ACTIVE
ctl --token-file "$SUPAPLANE_RUN_DIR/admin" --json admin list | jq -e '.tenants | length == 1' >/dev/null \
  || fail "admin list: deleted tenants are not listed, shop2 is"
ctl --token-file "$SUPAPLANE_RUN_DIR/admin" --json admin suspend "$ref2" --reason "payment overdue" \
  | jq -e '.tenant.phase == "SUSPENDED"' >/dev/null || fail "admin suspend"
expect_exit 5 ctl tenant resume "$ref2"
ctl --token-file "$SUPAPLANE_RUN_DIR/admin" admin unsuspend "$ref2" >/dev/null
wait_phase "$ref2" ACTIVE  # unsuspended: the stack the suspension paused runs again
ctl tenant resume "$ref2" >/dev/null  # already running: accepted, nothing to do
ctl --token-file "$SUPAPLANE_RUN_DIR/admin" projections rebuild api >/dev/null
ctl --json tenant get "$ref" | jq -e '.phase == "DELETED"' >/dev/null

# Billing from the CLI: this platform has no Stripe key, so checkout is off
# (the happy path runs against a stand-in of Stripe in billing_itest).
export SUPAPLANE_BILLING_ADDR="$SUPAPLANE_BILLING_GRPC_ADDR"
expect_exit 2 ctl billing checkout "$ref2" --plan free
set +e; err=$(ctl billing change-plan "$ref2" --plan pro 2>&1 >/dev/null); rc=$?; set -e
[ "$rc" -eq 5 ] || fail "billing change-plan without Stripe: exit $rc: $err"
grep -q "checkout is disabled" <<<"$err" || fail "billing change-plan: $err"
expect_exit 6 ctl --billing "127.0.0.1:$SUPAPLANE_RUN_NATS_PORT" --timeout 3 billing checkout "$ref2" --plan pro

curl -fsS "http://$SUPAPLANE_METRICS_ADDR/readyz" >/dev/null
grep -q '^supaplane_api_calls_total' <<<"$(curl -fsS "http://$SUPAPLANE_METRICS_ADDR/metrics")"
curl -fsS "http://$SUPAPLANE_PROVISIONER_METRICS_ADDR/readyz" >/dev/null
grep -q '^supaplane_provisioner_actions_total' <<<"$(curl -fsS "http://$SUPAPLANE_PROVISIONER_METRICS_ADDR/metrics")"
# No secret in the logs.
if grep -q -- "$SUPAPLANE_ADMIN_PASSWORD" "$SUPAPLANE_RUN_DIR"/logs/*.log; then fail "admin password in a log"; fi
if grep -q -- "$SUPAPLANE_MASTER_KEY" "$SUPAPLANE_RUN_DIR"/logs/*.log; then fail "master key in a log"; fi
while IFS='=' read -r name value; do
  [ -n "$value" ] || continue
  if grep -q -- "$value" "$SUPAPLANE_RUN_DIR"/logs/*.log; then fail "$name in a log"; fi
done < <(grep -E '^(NATS|REDIS)_[A-Z_]+_PASSWORD=' "$SUPAPLANE_RUN_DIR/secrets.env")
# The local run has no anonymous NATS or Redis.
anon=$(ctl --nats-url "nats://127.0.0.1:$SUPAPLANE_RUN_NATS_PORT" --timeout 3 audit "$ref" 2>&1) &&
  fail "audit without a NATS user worked: $anon"
[[ "$(redis-cli -p "$SUPAPLANE_RUN_REDIS_PORT" ping 2>&1)" == *NOAUTH* ]] || fail "Redis answers an anonymous PING"
tenant_pw=${cs#postgresql://*:}; tenant_pw=${tenant_pw%%@*}
[ ${#tenant_pw} -eq 32 ] || fail "could not take the password out of the connection string"
if grep -q -- "$tenant_pw" "$SUPAPLANE_RUN_DIR"/logs/*.log; then fail "a tenant password in a log"; fi
echo "cli e2e: all checks passed"
