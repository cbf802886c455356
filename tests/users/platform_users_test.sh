#!/usr/bin/env bash
# The platform's own users, with the real services. NATS: nats-server runs
# deploy/compose/nats/nats.conf (the same users block as deploy/k8s's
# users.conf); the api with its own user does not create the PLATFORM stream
# (stays not ready: "stream not ready"); once `supaplanectl admin init-stream`
# has created it as `admin` (as the stream Job does) the api, provisioner,
# router-sync and billing, each with its own user, become ready, a tenant is
# created and converged to ACTIVE (provisioner appends), router-sync routes
# it, and `supaplanectl audit` reads its history; each user may subscribe to
# its own reply inbox (_INBOX_<user>) and no other. Redis: redis-server runs
# with the ACL users of deploy/compose/redis/start-redis; each service works
# with its own user and key prefix, and is refused another's keys and the
# dangerous commands; anonymous connections are refused; a wrong password
# keeps a service unready with a message that never shows it. Stops what it
# started.   platform_users_test.sh BUILD_DIR
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
BUILD="${1:?usage: platform_users_test.sh BUILD_DIR}"
fail() { echo "FAIL: $*" >&2; exit 1; }
for tool in nats-server redis-server redis-cli jq curl sha256sum; do
  command -v "$tool" >/dev/null || fail "'$tool' not found (./scripts/test installs it)"
done

W=$(mktemp -d /tmp/supaplane-users-XXXXXX)
chmod 755 "$W"
PIDS=()
cleanup() {
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[i]}" 2>/dev/null || true; wait "${PIDS[i]}" 2>/dev/null || true; done
  [ ! -f "$W/pg/data/postmaster.pid" ] || as_pg "$(pg_bin)/pg_ctl" -D "$W/pg/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT
free_port nats; free_port mon; free_port redis; free_port pg
free_port grpc; free_port api_m
free_port prov_m; free_port rs_http; free_port rs_m; free_port b_http; free_port b_m; free_port b_grpc
free_port bad_http; free_port bad_m; free_port bad_grpc

pw() { head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9'; }
# The passwords deploy/compose/make-env writes (the same generator).
"$ROOT/deploy/compose/make-env" --output "$W/compose.env" >/dev/null
set -a; source <(grep -E '^(NATS|REDIS)_' "$W/compose.env"); set +a
[ -n "${NATS_API_PASSWORD:-}" ] || fail "make-env wrote no NATS passwords"
[ -n "${REDIS_API_PASSWORD:-}" ] || fail "make-env wrote no Redis passwords"
mkdir -p "$W/logs"
# The shipped file with only the store directory moved here.
sed "s|store_dir: /data/jetstream|store_dir: $W/js|" "$ROOT/deploy/compose/nats/nats.conf" >"$W/nats.conf"
grep -q "store_dir: $W/js" "$W/nats.conf" || fail "no store_dir line to move in deploy/compose/nats/nats.conf"
nats-server -c "$W/nats.conf" -a 127.0.0.1 -p "$nats" -m "$mon" >"$W/logs/nats.log" 2>&1 &
PIDS+=($!)
wait_tcp "$nats" 20 || fail "nats-server did not start: $(tail -5 "$W/logs/nats.log")"
# The shipped start script (the compose and k8s Redis use it), ACL file here.
REDIS_ACL_FILE="$W/redis-users.acl" "$ROOT/deploy/compose/redis/start-redis" \
  redis-server --port "$redis" --bind 127.0.0.1 --save '' --appendonly no >"$W/logs/redis.log" 2>&1 &
PIDS+=($!)
wait_tcp "$redis" 20 || fail "redis-server did not start: $(tail -5 "$W/logs/redis.log")"
! grep -q -e "$REDIS_API_PASSWORD" -e "$REDIS_ADMIN_PASSWORD" "$W/redis-users.acl" ||
  fail "the ACL file holds a password in clear"
install -d "$W/pg"
[ "$(id -u)" -ne 0 ] || chown postgres:postgres "$W/pg"
as_pg "$(pg_bin)/initdb" -D "$W/pg/data" -U postgres --auth=trust >"$W/pg/initdb.log" 2>&1
as_pg "$(pg_bin)/pg_ctl" -D "$W/pg/data" -w -l "$W/pg/log" -o "-p $pg -k $W/pg -c listen_addresses=127.0.0.1" start >/dev/null
psql -h "$W/pg" -p "$pg" -U postgres -qc "CREATE DATABASE supaplane"

url() { echo "nats://$1:$2@127.0.0.1:$nats"; }
rurl() { echo "redis://$1:$2@127.0.0.1:$redis"; }
export SUPAPLANE_STREAM_REPLICAS=1
export SUPAPLANE_DATABASE_URL="host=$W/pg port=$pg user=postgres dbname=supaplane"
export SUPAPLANE_JWT_SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '\n')
export SUPAPLANE_MASTER_KEY=$(head -c 32 /dev/urandom | base64 | tr -d '\n')

start() {  # name binary VAR=value...
  local name=$1 bin=$2; shift 2
  env "$@" "$BUILD/$bin" >"$W/logs/$name.log" 2>&1 &
  PIDS+=($!)
}
ready() {  # name metrics-port: waits for 200 on /readyz
  wait_http "http://127.0.0.1:$2/readyz" 60 || fail "$1 is not ready: $(curl -s "http://127.0.0.1:$2/readyz"); $(tail -5 "$W/logs/$1.log")"
}

# 1. The api waits for the stream; it never creates it.
# Replica ids naming durables their users may use (api-projector-api-0,
# router-sync-router-sync-1).
start api services/api/supaplane-api SUPAPLANE_NATS_URL="$(url api "$NATS_API_PASSWORD")" SUPAPLANE_REPLICA_ID=api-0 \
  SUPAPLANE_REDIS_URL="$(rurl api "$REDIS_API_PASSWORD")" \
  SUPAPLANE_GRPC_ADDR="127.0.0.1:$grpc" SUPAPLANE_METRICS_ADDR="127.0.0.1:$api_m"
deadline=$((SECONDS + 30)); body=""
until [[ "$body" == *"stream not ready"* ]]; do
  ((SECONDS < deadline)) || fail "the api user's /readyz never said 'stream not ready' (last: $body)"
  sleep 0.2
  body=$(curl -s "http://127.0.0.1:$api_m/readyz" || true)
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$api_m/readyz")" = 503 ] || fail "api ready without a stream"
echo "ok: the api waits for PLATFORM ($body)"

# 2. The admin step creates it (what the stream Job / nats-setup do); run
# again, it only checks it. The api never created it (it never tries).
SUPAPLANE_NATS_URL="$(url admin "$NATS_ADMIN_PASSWORD")" "$BUILD/cli/supaplanectl" admin init-stream \
  >"$W/logs/init-stream.log" 2>&1 || fail "admin init-stream: $(cat "$W/logs/init-stream.log")"
grep -q "created stream PLATFORM" "$W/logs/init-stream.log" || fail "init-stream did not create PLATFORM: $(cat "$W/logs/init-stream.log")"
again=$(SUPAPLANE_NATS_URL="$(url admin "$NATS_ADMIN_PASSWORD")" "$BUILD/cli/supaplanectl" admin init-stream)
[[ "$again" == *"exists and protects the log"* ]] || fail "init-stream again: $again"
# With a service's user it cannot: exit 6 or 1, and no password in what it prints.
if out=$(SUPAPLANE_NATS_URL="$(url api "$NATS_API_PASSWORD")" SUPAPLANE_TIMEOUT=2 \
    "$BUILD/cli/supaplanectl" admin init-stream --duplicate-window-ms 600000 2>&1); then
  fail "the api's user passed init-stream asking for a longer duplicate window: $out"
fi
[[ "$out" != *"$NATS_API_PASSWORD"* ]] || fail "supaplanectl printed the NATS password: $out"
echo "ok: admin init-stream created PLATFORM; the api's user cannot change it"

# 3. Every service with its own user.
ready api "$api_m"
start provisioner services/provisioner/supaplane-provisioner \
  SUPAPLANE_NATS_URL="$(url provisioner "$NATS_PROVISIONER_PASSWORD")" SUPAPLANE_METRICS_ADDR="127.0.0.1:$prov_m" \
  SUPAPLANE_TENANT_DB_URL="host=$W/pg port=$pg user=postgres dbname=postgres"
start router-sync services/router-sync/supaplane-router-sync \
  SUPAPLANE_NATS_URL="$(url router-sync "$NATS_ROUTER_SYNC_PASSWORD")" SUPAPLANE_METRICS_ADDR="127.0.0.1:$rs_m" SUPAPLANE_REPLICA_ID=router-sync-1 \
  SUPAPLANE_REDIS_URL="$(rurl router-sync "$REDIS_ROUTER_SYNC_PASSWORD")" \
  SUPAPLANE_HTTP_ADDR="127.0.0.1:$rs_http" SUPAPLANE_TRAEFIK_DIR="$W/traefik"
start billing services/billing/supaplane-billing \
  SUPAPLANE_NATS_URL="$(url billing "$NATS_BILLING_PASSWORD")" SUPAPLANE_METRICS_ADDR="127.0.0.1:$b_m" \
  SUPAPLANE_REDIS_URL="$(rurl billing "$REDIS_BILLING_PASSWORD")" \
  SUPAPLANE_HTTP_ADDR="127.0.0.1:$b_http" SUPAPLANE_BILLING_GRPC_ADDR="127.0.0.1:$b_grpc" \
  SUPAPLANE_STRIPE_WEBHOOK_SECRET="whsec_$(pw)"
ready provisioner "$prov_m"; ready router-sync "$rs_m"; ready billing "$b_m"

export SUPAPLANE_API_ADDR="127.0.0.1:$grpc" SUPAPLANE_TOKEN_FILE="$W/token"
ctl() { "$BUILD/cli/supaplanectl" "$@"; }
ctl signup --email users@example.com --password users-password-1 >/dev/null
ref=$(ctl --json tenant create --name users 2>"$W/create.err" | jq -r ".tenant.ref") || { cat "$W/create.err" >&2; fail "tenant create"; }
deadline=$((SECONDS + 60)); phase=""
until [ "$phase" = ACTIVE ]; do
  ((SECONDS < deadline)) || fail "tenant $ref stayed $phase: the provisioner's user cannot consume or append? $(tail -5 "$W/logs/provisioner.log")"
  sleep 0.2
  phase=$(ctl --json tenant get "$ref" | jq -r '.phase')
done
echo "ok: tenant $ref ACTIVE (api and provisioner appended with their users)"
deadline=$((SECONDS + 30))
until [[ "$(curl -s "http://127.0.0.1:$rs_http/traefik/dynamic")" == *"$ref"* ]]; do
  ((SECONDS < deadline)) || fail "router-sync never routed $ref: $(tail -5 "$W/logs/router-sync.log")"
  sleep 0.2
done
echo "ok: router-sync consumed the tenant with its user"
n=$(SUPAPLANE_NATS_URL="$(url router-sync "$NATS_ROUTER_SYNC_PASSWORD")" ctl --json audit "$ref" | jq 'length')
((n >= 3)) || fail "audit with a read-only user returned $n events"
echo "ok: supaplanectl audit reads the stream with router-sync's read-only user ($n events)"

# Replies: each service's user may subscribe to its own inbox prefix
# (_INBOX_<user>, where the services and supaplanectl take their replies) and
# to no other, nor to the default _INBOX.> that covers every client's.
# Raw NATS protocol over bash's /dev/tcp: SUB, then PING; the server answers
# -ERR 'Permissions Violation ...' for a refused subscription before its PONG.
nats_sub() {  # USER PASSWORD SUBJECT -> what the server answered, up to PONG
  local line out=""
  exec 3<>"/dev/tcp/127.0.0.1/$nats"
  printf 'CONNECT {"user":"%s","pass":"%s","verbose":false,"pedantic":false}\r\nSUB %s 1\r\nPING\r\n' \
    "$1" "$2" "$3" >&3
  while IFS= read -r -t 5 line <&3; do
    out+="$line"$'\n'
    [[ "$line" == PONG* || "$line" == -ERR*Authorization* ]] && break
  done
  exec 3<&-
  printf '%s' "$out"
}
declare -A nats_pw=([api]="$NATS_API_PASSWORD" [provisioner]="$NATS_PROVISIONER_PASSWORD"
  [router-sync]="$NATS_ROUTER_SYNC_PASSWORD" [billing]="$NATS_BILLING_PASSWORD")
for user in api provisioner router-sync billing; do
  out=$(nats_sub "$user" "${nats_pw[$user]}" "_INBOX_$user.>")
  [[ "$out" == *PONG* && "$out" != *-ERR* ]] || fail "$user cannot subscribe to its own inbox _INBOX_$user.>: $out"
  for subject in "_INBOX.>" "_INBOX.*" api provisioner router-sync billing; do
    case "$subject" in _INBOX*) ;; "$user") continue ;; *) subject="_INBOX_$subject.>" ;; esac
    out=$(nats_sub "$user" "${nats_pw[$user]}" "$subject")
    [[ "$out" == *"Permissions Violation for Subscription to \"$subject\""* ]] ||
      fail "$user may subscribe to $subject (another's replies): $out"
  done
done
echo "ok: each service's NATS user subscribes to its own reply inbox only"

# Redis: every key the services wrote is under its writer's prefix, each
# prefix has keys, and the tenant is in the api's projection.
rc() { redis-cli -p "$redis" --no-auth-warning "$@" 2>&1; }
admin() { rc --pass "$REDIS_ADMIN_PASSWORD" "$@"; }  # the default user
keys=$(admin --scan --pattern '*')
stray=$(grep -vE '^sp:(api|router|billing):' <<<"$keys" || true)
[ -z "$stray" ] || fail "keys outside the services' prefixes: $stray"
for p in sp:api: sp:router: sp:billing:; do
  grep -q "^$p" <<<"$keys" || fail "no key under $p: that service did not write its projection"
done
grep -q "^sp:api:.*:t:$ref\$" <<<"$keys" || fail "the api's projection has no key for $ref"
echo "ok: Redis keys only under sp:api:, sp:router:, sp:billing: ($(wc -l <<<"$keys") keys)"

# Refused: anonymous, another service's keys (also from a Lua script), the
# dangerous commands, a wrong password. Each answer is checked, not assumed.
refused() {  # what expected-text command...
  local what=$1 want=$2; shift 2
  local out; out=$("$@") || true
  [[ "$out" == *"$want"* ]] || fail "$what: expected '$want', got '$out'"
}
refused "anonymous PING" NOAUTH rc ping
refused "anonymous GET" NOAUTH rc get "sp:api:active"
refused "api reads router-sync's keys" NOPERM rc --user api --pass "$REDIS_API_PASSWORD" get "sp:router:x"
refused "router-sync writes the api's keys" NOPERM rc --user router-sync --pass "$REDIS_ROUTER_SYNC_PASSWORD" set sp:api:active g9
refused "billing deletes the api's keys from a script" "can't access" \
  rc --user billing --pass "$REDIS_BILLING_PASSWORD" eval "return redis.call('DEL', 'sp:api:active')" 0
refused "api FLUSHALL" NOPERM rc --user api --pass "$REDIS_API_PASSWORD" flushall
refused "router-sync FLUSHDB" NOPERM rc --user router-sync --pass "$REDIS_ROUTER_SYNC_PASSWORD" flushdb
refused "billing KEYS" NOPERM rc --user billing --pass "$REDIS_BILLING_PASSWORD" keys '*'
refused "api CONFIG SET" NOPERM rc --user api --pass "$REDIS_API_PASSWORD" config set appendonly no
refused "api ACL SETUSER" NOPERM rc --user api --pass "$REDIS_API_PASSWORD" acl setuser api '~*'
refused "a wrong password" WRONGPASS rc --user api --pass "not-$REDIS_API_PASSWORD" ping
[ "$(rc --user api --pass "$REDIS_API_PASSWORD" exists sp:api:active)" = 1 ] || fail "sp:api:active went missing"
echo "ok: Redis refuses anonymous users, other prefixes, dangerous commands and wrong passwords"

# A service given a wrong Redis password stays unready, says why, never shows it.
bad_pw="wrong-$(pw)"
start billing-bad services/billing/supaplane-billing \
  SUPAPLANE_NATS_URL="$(url billing "$NATS_BILLING_PASSWORD")" SUPAPLANE_METRICS_ADDR="127.0.0.1:$bad_m" \
  SUPAPLANE_REDIS_URL="$(rurl billing "$bad_pw")" SUPAPLANE_HTTP_ADDR="127.0.0.1:$bad_http" \
  SUPAPLANE_BILLING_GRPC_ADDR="127.0.0.1:$bad_grpc" SUPAPLANE_STRIPE_WEBHOOK_SECRET="whsec_$(pw)"
deadline=$((SECONDS + 30))
until grep -q "refused the login" "$W/logs/billing-bad.log"; do
  ((SECONDS < deadline)) || fail "billing with a wrong Redis password never said why: $(tail -5 "$W/logs/billing-bad.log")"
  sleep 0.2
done
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$bad_m/readyz" || true)
[ "$code" != 200 ] || fail "billing is ready with a wrong Redis password"
! grep -q "$bad_pw" "$W/logs/billing-bad.log" || fail "billing logged its Redis password"
echo "ok: a wrong Redis password: billing not ready ($code), \"$(grep -o 'refused the login[^"]*' "$W/logs/billing-bad.log" | head -1)\""

# The append-only file survives a restart with these users: Redis 7.0 replays
# it as `default`, and a script's writes are a MULTI/EXEC in it (with a
# `default` that had no rights, every one failed with NOPERM on load).
free_port aof
mkdir -p "$W/aof"
aof_start() {
  REDIS_ACL_FILE="$W/aof/users.acl" "$ROOT/deploy/compose/redis/start-redis" \
    redis-server --port "$aof" --bind 127.0.0.1 --dir "$W/aof" --appendonly yes --save '' \
    --daemonize yes --pidfile "$W/aof/redis.pid" --logfile "$W/aof/redis.log"
  wait_tcp "$aof" 20 || fail "the AOF redis-server did not start: $(tail -5 "$W/aof/redis.log")"
}
aof_start
ar() { redis-cli -p "$aof" --no-auth-warning --user api --pass "$REDIS_API_PASSWORD" "$@" 2>&1; }
[ "$(ar eval "redis.call('SET', 'sp:api:x', 'one'); redis.call('SET', 'sp:api:y', 'two'); return 1" 0)" = 1 ] ||
  fail "the api's user could not write through a script"
kill "$(cat "$W/aof/redis.pid")"
for _ in $(seq 100); do kill -0 "$(cat "$W/aof/redis.pid" 2>/dev/null)" 2>/dev/null || break; sleep 0.1; done
aof_start
PIDS+=("$(cat "$W/aof/redis.pid")")
got=$(ar mget sp:api:x sp:api:y | tr '\n' ' ')
[ "$got" = "one two " ] || fail "after a restart the script's writes are gone ('$got'): $(grep -m1 NOPERM "$W/aof/redis.log")"
! grep -q NOPERM "$W/aof/redis.log" || fail "loading the append-only file met NOPERM: $(grep -m1 NOPERM "$W/aof/redis.log")"
echo "ok: a restarted Redis loads its append-only file with these users (script writes kept)"
