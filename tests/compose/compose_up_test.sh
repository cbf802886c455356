#!/usr/bin/env bash
# deploy/compose brought up for real, against a dockerd this test starts,
# with nothing pulled from a registry:
#  - images: debian:bookworm(-slim) from debootstrap (scripts/docker-base-images,
#    remade when its version label is outdated); supaplane/supaplane and
#    supaplane/console from their multi-stage Dockerfiles, unchanged, with
#    BuildKit (the supaplane compile with ccache in a cache mount; the
#    console's build stage trusting this host's local CAs through the
#    EXTRA_CA_CERTS build argument); both lean (no apt caches), the
#    supaplane image without compiler or headers and every binary loading,
#    the console image without the build stage's CAs. nats-server, redis,
#    PostgreSQL and Prometheus from Debian's packages
#    (deploy/images/debian/*.Dockerfile) through the compose file's *_IMAGE
#    variables (nats-setup runs `supaplanectl admin init-stream` from
#    supaplane/supaplane). Traefik and Grafana stay out (profiles edge /
#    grafana: no Debian package). SUPAPLANE_COMPOSE_IMAGES=from-host builds
#    ours from this host's build instead (deploy/images/build-from-host,
#    console-from-host: the Dockerfiles' runtime stages, nothing compiled
#    and no npm in docker).
#  - `docker-compose up -d` with make-env's secrets; every supaplane
#    container turns healthy; PLATFORM exists with the settings of
#    docs/events.md;
#  - through the published gRPC port, supaplanectl (BUILD_DIR/cli) signs up,
#    creates a tenant that turns ACTIVE, and its credentials connect with
#    psql through PostgreSQL's published port;
#  - Prometheus (its HTTP API) reports the four services' targets up;
#  - the console alone out of profile edge (no Traefik) turns healthy as
#    10001 on a read-only root; from the host, on its address in compose's
#    network: /healthz, /readyz (the api reachable), index.html with the
#    security headers, and gRPC-Web calls through its bridge to the api
#    (Login with a wrong password answers UNAUTHENTICATED, SignUp makes an
#    account supaplanectl then logs in to, a method not forwarded is refused);
#  - `docker-compose down` then `up -d` keeps the account (login), the tenant
#    (ACTIVE, psql still connects) and the stream (same messages), and a new
#    tenant still converges.
# Stops everything it started, also on failure: `down -v`, the containers,
# dockerd, its mounts. The daemon's data root (base images, image layers,
# BuildKit's cache with the compile's ccache) is kept in
# ~/.cache/supaplane/compose (like ccache's cache, it outlives build
# directories and clean clones), so a second run rebuilds only what changed;
# build cache unused for 10 days is pruned. SUPAPLANE_COMPOSE_CACHE moves it.
# Fails, never skips, when a tool is missing.   compose_up_test.sh BUILD_DIR
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
BUILD="${1:?usage: compose_up_test.sh BUILD_DIR}"
BUILD=$(cd "$BUILD" && pwd)
C="$ROOT/deploy/compose"
fail() { echo "FAIL: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root (dockerd, debootstrap)"
for tool in dockerd docker-compose debootstrap psql jq curl strip ldd dpkg node npm; do
  command -v "$tool" >/dev/null || fail "'$tool' not found (./scripts/test installs docker.io docker-compose debootstrap postgresql-client jq curl binutils nodejs npm)"
done
DOCKER=/usr/bin/docker  # Debian's client (docker.io), the daemon's version
[ -x "$DOCKER" ] || fail "$DOCKER not found (Debian: docker.io)"
for b in services/api/supaplane-api services/provisioner/supaplane-provisioner \
  services/router-sync/supaplane-router-sync services/billing/supaplane-billing cli/supaplanectl; do
  [ -x "$BUILD/$b" ] || fail "$BUILD/$b is not built"
done

CACHE="${SUPAPLANE_COMPOSE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/supaplane/compose}"
mkdir -p "$CACHE"
# One run at a time per cache (the daemon's data root is not shareable).
exec {lock}>"$CACHE/lock"
flock -w 2400 "$lock" || fail "another compose_up_test holds $CACHE/lock"
W=$(mktemp -d /tmp/supaplane-compose-up-XXXXXX)
PROJECT="spcompose$$"
DPID=""
t0=$SECONDS
phase() { echo "[$((SECONDS - t0)) s] $*"; }

dc() {
  docker-compose --project-directory "$C" --project-name "$PROJECT" -f "$C/docker-compose.yml" \
    --env-file "$W/.env" "$@"
}
cleanup() {
  local rc=$?
  set +e
  if [ -n "$DPID" ]; then
    if ((rc != 0)); then
      echo "---- docker-compose ps / logs (the test failed) ----" >&2
      dc --profile edge ps >&2 2>&1
      dc --profile edge logs --no-color --tail 15 >&2 2>&1
    fi
    dc --profile edge down -v --remove-orphans -t 5 >"$W/down.log" 2>&1 || cat "$W/down.log" >&2
    local left
    left=$($DOCKER ps -aq)
    [ -z "$left" ] || $DOCKER rm -f -v $left >/dev/null
    $DOCKER volume prune -f >/dev/null
    $DOCKER image prune -f >/dev/null  # the previous supaplane image, now untagged
    DOCKER_BUILDKIT=1 $DOCKER builder prune -f --filter until=240h >/dev/null
    kill "$DPID" 2>/dev/null
    wait "$DPID" 2>/dev/null
  fi
  # dockerd leaves its network namespaces mounted under the exec root.
  local m
  for m in "$W"/exec/netns/*; do [ -e "$m" ] && umount "$m" 2>/dev/null; done
  rm -rf "$W"
  exit "$rc"
}
trap cleanup EXIT

# ---- the daemon: no default bridge; compose's network from 172.31.0.0/16
# (other suites' daemons use 172.29 and 172.30).
dockerd --data-root "$CACHE/docker" --exec-root "$W/exec" -H "unix://$W/docker.sock" \
  --pidfile "$W/docker.pid" --bridge=none --default-address-pool base=172.31.0.0/16,size=24 \
  --log-level warn >"$W/dockerd.log" 2>&1 &
DPID=$!
export DOCKER_HOST="unix://$W/docker.sock"
deadline=$((SECONDS + 60))
until $DOCKER info >/dev/null 2>&1; do
  ((SECONDS < deadline)) || fail "dockerd did not start: $(tail -5 "$W/dockerd.log")"
  kill -0 "$DPID" 2>/dev/null || fail "dockerd exited: $(tail -5 "$W/dockerd.log")"
  sleep 0.2
done
# Left over by a run that was killed before its cleanup.
stale=$($DOCKER ps -aq)
[ -z "$stale" ] || $DOCKER rm -f -v $stale >/dev/null
$DOCKER volume prune -f >/dev/null
$DOCKER network prune -f >/dev/null
phase "dockerd up (data root $CACHE/docker)"

# ---- images, nothing pulled. Builds run on the host's network (the daemon
# has no default bridge); apt-get reaches Debian's mirror from there.
DOCKER=$DOCKER "$ROOT/scripts/docker-base-images" >"$W/base-images.log" 2>&1 ||
  { cat "$W/base-images.log" >&2; fail "scripts/docker-base-images"; }
want=$(sed -n 's/^BASE_IMAGES_VERSION=//p' "$ROOT/scripts/docker-base-images")
for img in debian:bookworm debian:bookworm-slim; do
  have=$($DOCKER image inspect -f '{{index .Config.Labels "org.supaplane.base-images"}}' "$img")
  [ -n "$want" ] && [ "$have" = "$want" ] || fail "$img has base-images version '$have', the script makes '$want'"
  $DOCKER run --rm --network none "$img" test -f /etc/apt/apt.conf.d/docker-clean ||
    fail "$img has no docker-clean apt settings"
done
phase "base images debian:bookworm, debian:bookworm-slim (version $want)"
# The six builds run at once: they wait mostly on Debian's mirror, dpkg and
# the npm registry; only the supaplane compile is CPU-bound.
build_image() {  # tag dockerfile context
  DOCKER_BUILDKIT=0 $DOCKER build -q --network host -f "$2" -t "$1" "$3" >"$W/build-${1//[:\/]/-}.log" 2>&1
}
# Ours: the multi-stage Dockerfiles, unchanged, with BuildKit (the supaplane
# compile's ccache lives in a cache mount of this data root, so a warm run
# compiles only what changed). The console's build stage gets this host's
# local CAs (update-ca-certificates' /usr/local/share/ca-certificates): an
# egress that re-signs TLS makes npm ci fail without them.
# SUPAPLANE_COMPOSE_IMAGES=from-host builds both from this host's build
# instead (deploy/images/build-from-host, console-from-host): no compile and
# no npm in docker.
ca_pem=""
for f in /usr/local/share/ca-certificates/*.crt; do [ -f "$f" ] && ca_pem+=$(cat "$f")$'\n'; done
build_ours() {  # tag dockerfile log-name [docker build args]
  local start=$SECONDS rc=0
  DOCKER_BUILDKIT=1 $DOCKER build --progress=plain --network host -f "$2" -t "$1" "${@:4}" "$ROOT" \
    >"$W/build-$3.log" 2>&1 || rc=$?
  echo "$(($SECONDS - start))" >"$W/build-$3.seconds"
  return "$rc"
}
builds=()
for svc in nats redis postgres prometheus; do
  build_image "local/$svc:test" "$ROOT/deploy/images/debian/$svc.Dockerfile" "$ROOT/deploy/images/debian" &
  builds+=("$!:deploy/images/debian/$svc.Dockerfile:local-$svc-test")
done
images=${SUPAPLANE_COMPOSE_IMAGES:-dockerfile}
case $images in
  dockerfile)
    build_ours supaplane/supaplane:test "$ROOT/deploy/images/Dockerfile" supaplane &
    builds+=("$!:deploy/images/Dockerfile:supaplane")
    ca_args=()
    [ -z "$ca_pem" ] || ca_args=(--build-arg "EXTRA_CA_CERTS=$ca_pem")
    build_ours supaplane/console:test "$ROOT/deploy/images/console.Dockerfile" console "${ca_args[@]}" &
    builds+=("$!:deploy/images/console.Dockerfile:console")
    ;;
  from-host)
    DOCKER=$DOCKER "$ROOT/deploy/images/build-from-host" --build-dir "$BUILD" --tag supaplane/supaplane:test \
      -- --network host >"$W/build-supaplane.log" 2>&1 &
    builds+=("$!:deploy/images/build-from-host:supaplane")
    DOCKER=$DOCKER "$ROOT/deploy/images/console-from-host" --tag supaplane/console:test \
      -- --network host >"$W/build-console.log" 2>&1 &
    builds+=("$!:deploy/images/console-from-host:console")
    ;;
  *) fail "SUPAPLANE_COMPOSE_IMAGES is '$images': dockerfile (default) or from-host" ;;
esac
failed=""
for b in "${builds[@]}"; do
  IFS=: read -r pid what log <<<"$b"
  wait "$pid" || { tail -30 "$W/build-$log.log" >&2; failed+=" $what"; }
done
[ -z "$failed" ] || fail "image builds failed:$failed"
if [ "$images" = dockerfile ]; then
  # The compile's ccache counters (ccache --show-stats in the build stage):
  # a warm run hits for every unchanged translation unit.
  stats=$(grep -E '^#[0-9]+ [0-9.]+ +(Hits|Misses):' "$W/build-supaplane.log" | head -2 | sed -E 's/^#[0-9]+ [0-9.]+ +//' |
    tr -s ' ' | paste -sd ';' || true)
  phase "images built (supaplane/supaplane $(cat "$W/build-supaplane.seconds") s${stats:+, ccache $stats}; supaplane/console $(cat "$W/build-console.seconds") s)"
else
  phase "images built from this host's build"
fi
$DOCKER image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -v '<none>' | sort | sed 's/^/  /'
# No image keeps apt's downloads and caches (the base images' docker-clean
# settings; our Dockerfiles' apt-get clean for bases without them).
for img in supaplane/supaplane:test supaplane/console:test local/nats:test local/redis:test local/postgres:test \
  local/prometheus:test; do
  left=$($DOCKER run --rm --network none --entrypoint sh "$img" -c 'ls /var/cache/apt/archives/*.deb /var/cache/apt/*.bin 2>/dev/null' || true)
  [ -z "$left" ] || fail "$img keeps apt's downloads and caches: $(wc -l <<<"$left") files"
done
# The supaplane image: no compiler, no headers; every binary loads its libraries.
if $DOCKER run --rm --network none --entrypoint sh supaplane/supaplane:test \
  -c 'command -v g++ || command -v cc || command -v c++ || command -v ccache || ls -d /usr/include/grpc* 2>/dev/null'; then
  fail "supaplane/supaplane:test has a compiler or headers"
fi
for b in supaplane-api supaplane-provisioner supaplane-router-sync supaplane-billing supaplanectl; do
  $DOCKER run --rm --network none supaplane/supaplane:test "$b" --help >/dev/null ||
    fail "$b --help fails in supaplane/supaplane:test (a missing runtime library?)"
done
[[ "$($DOCKER image inspect -f '{{json .Config.Healthcheck.Test}}' supaplane/supaplane:test)" == *supaplane-healthcheck* ]] ||
  fail "supaplane/supaplane:test has no HEALTHCHECK"
# The build stage's extra CAs stay there: not in the console image's CA
# bundle, files, history or configuration.
if [ -n "$ca_pem" ] && [ "$images" = dockerfile ]; then
  for f in /usr/local/share/ca-certificates/*.crt; do
    line=$(sed -n 2p "$f")  # the first line of the certificate's base64 body
    [ -n "$line" ] || continue
    $DOCKER run --rm --network none --user 0 --entrypoint grep supaplane/console:test -rqF -- "$line" /etc/ssl /usr/local/share/ca-certificates &&
      fail "the console image trusts the build stage's CA $(basename "$f")"
  done
  meta=$($DOCKER history --no-trunc supaplane/console:test; $DOCKER image inspect supaplane/console:test)
  [[ "$meta" != *"BEGIN CERTIFICATE"* && "$meta" != *EXTRA_CA_CERTS* && "$meta" != *NODE_EXTRA_CA_CERTS* ]] ||
    fail "the console image's history or configuration holds the build stage's CAs"
fi

# ---- the platform
"$C/make-env" --output "$W/.env" >/dev/null
set -a
source <(grep -E '^(SUPAPLANE_ADMIN_PASSWORD|NATS_ADMIN_PASSWORD)=' "$W/.env")
set +a
free_port grpc; free_port pg; free_port prom
# The shell's variables win over .env in compose's substitution.
export SUPAPLANE_IMAGE=supaplane/supaplane:test SUPAPLANE_CONSOLE_IMAGE=supaplane/console:test NATS_IMAGE=local/nats:test \
  REDIS_IMAGE=local/redis:test POSTGRES_IMAGE=local/postgres:test PROMETHEUS_IMAGE=local/prometheus:test
export SUPAPLANE_GRPC_PUBLISH="127.0.0.1:$grpc" SUPAPLANE_TENANT_DB_PUBLISH="$pg" \
  PROMETHEUS_PUBLISH="127.0.0.1:$prom" SUPAPLANE_TENANT_DB_PUBLIC_HOST=127.0.0.1

services=(api provisioner router-sync billing)
up() {
  dc up -d >"$W/up.log" 2>&1 || { cat "$W/up.log" >&2; fail "docker-compose up -d"; }
  local deadline=$((SECONDS + 180)) s id health
  for s in "${services[@]}" nats redis postgres prometheus; do
    id=$(dc ps -q "$s")
    [ -n "$id" ] || fail "no container for $s"
    health=""
    until [ "$health" = healthy ]; do
      ((SECONDS < deadline)) || fail "$s is '$health' after 180 s: $(dc logs --no-color --tail 10 "$s")"
      sleep 0.5
      health=$($DOCKER inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id")
    done
  done
  [ "$($DOCKER inspect -f '{{.State.ExitCode}}' "$(dc ps -q nats-setup)")" = 0 ] || fail "nats-setup did not succeed"
}
# The PLATFORM stream as nats-server reports it (monitoring port, inside the nats container).
stream() {
  dc exec -T nats wget -qO- 'http://127.0.0.1:8222/jsz?streams=true&config=true' |
    jq -e '.account_details[].stream_detail[] | select(.name == "PLATFORM")'
}

up
phase "docker-compose up: ${services[*]}, nats, redis, postgres, prometheus healthy"
s=$(stream) || fail "no PLATFORM stream after nats-setup"
[[ "$(dc logs --no-color nats-setup)" == *"created stream PLATFORM"* ]] || fail "nats-setup did not create PLATFORM: $(dc logs --no-color nats-setup)"
# Redis: its ACL users (deploy/compose/redis/start-redis), no anonymous access.
[[ "$(dc exec -T redis redis-cli ping 2>&1)" == *NOAUTH* ]] || fail "compose's Redis answers an anonymous PING"
[[ "$(dc exec -T redis sh -c 'REDISCLI_AUTH="$REDIS_API_PASSWORD" redis-cli --user api get sp:router:x' 2>&1)" == *NOPERM* ]] ||
  fail "the api's Redis user reads router-sync's keys"
jq -e '.config | .subjects == ["platform.>"] and .storage == "file" and .deny_delete and .deny_purge
  and .allow_direct and .duplicate_window == 120000000000 and .max_msgs == -1 and .max_age == 0' <<<"$s" >/dev/null ||
  fail "PLATFORM has other settings than docs/events.md: $(jq -c .config <<<"$s")"
for s in "${services[@]}"; do
  $DOCKER inspect -f '{{.Config.User}} {{.HostConfig.ReadonlyRootfs}}' "$(dc ps -q "$s")" | grep -qx '10001:10001 true' ||
    fail "$s does not run as 10001 on a read-only root"
done

export SUPAPLANE_API_ADDR="127.0.0.1:$grpc" SUPAPLANE_TOKEN_FILE="$W/token"
ctl() { "$BUILD/cli/supaplanectl" "$@"; }
wait_phase() {  # ref phase
  local deadline=$((SECONDS + 90)) p=""
  until [ "$p" = "$2" ]; do
    ((SECONDS < deadline)) || fail "tenant $1 stayed $p, never $2: $(dc logs --no-color --tail 10 provisioner)"
    sleep 0.2
    p=$(ctl --json tenant get "$1" | jq -r '.phase')
  done
}
ctl signup --email compose@example.com --password compose-password-1 >/dev/null
ref=$(ctl --json tenant create --name compose | jq -r '.tenant.ref')
[[ "$ref" =~ ^[a-z]{20}$ ]] || fail "tenant create returned ref '$ref'"
wait_phase "$ref" ACTIVE
cs=$(ctl --json tenant credentials "$ref" | jq -r '.connection_string')
[[ "$cs" == *"@127.0.0.1:$pg/"* ]] || fail "the connection string does not name the published port $pg"
[ "$(psql "$cs" -tAc 'SELECT 1')" = 1 ] || fail "psql cannot connect with the tenant's credentials"
psql "$cs" -qc 'CREATE TABLE kept (v text); INSERT INTO kept VALUES ($$before down$$)'
phase "signed up, tenant $ref ACTIVE, psql connects through port $pg"

# Prometheus scrapes every 15 s: wait until each job's target has been scraped up.
want='["supaplane-api","supaplane-billing","supaplane-provisioner","supaplane-router-sync"]'
deadline=$((SECONDS + 120)); up_jobs=""
until [ "$up_jobs" = "$want" ]; do
  ((SECONDS < deadline)) || fail "Prometheus targets up: $up_jobs, want $want: $(curl -s "http://127.0.0.1:$prom/api/v1/targets" | jq -c '[.data.activeTargets[] | {job: .labels.job, health, lastError}]')"
  sleep 1
  up_jobs=$(curl -fsS "http://127.0.0.1:$prom/api/v1/targets" |
    jq -c '[.data.activeTargets[] | select(.health == "up") | .labels.job] | unique')
done
phase "Prometheus: the 4 targets up"

# ---- the console: profile edge's console service alone (--no-deps: the api
# it depends on is up; Traefik, the rest of the profile, has no Debian
# package). The host reaches it on its address in compose's network.
dc --profile edge up -d --no-deps console >"$W/console-up.log" 2>&1 ||
  { cat "$W/console-up.log" >&2; fail "docker-compose --profile edge up -d console"; }
console_id=$(dc --profile edge ps -q console)
[ -n "$console_id" ] || fail "no container for console"
[ -z "$(dc --profile edge ps -q traefik)" ] || fail "Traefik started with the console"
deadline=$((SECONDS + 120)); health=""
until [ "$health" = healthy ]; do
  ((SECONDS < deadline)) || fail "console is '$health' after 120 s: $($DOCKER logs --tail 10 "$console_id" 2>&1)"
  sleep 0.5
  health=$($DOCKER inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$console_id")
done
$DOCKER inspect -f '{{.Config.User}} {{.HostConfig.ReadonlyRootfs}}' "$console_id" | grep -qx '10001:10001 true' ||
  fail "the console does not run as 10001 on a read-only root"
# Compose's health check replaces the image's: check the image's own too.
[[ "$($DOCKER image inspect -f '{{json .Config.Healthcheck.Test}}' supaplane/console:test)" == *"http://127.0.0.1:3000/healthz"* ]] ||
  fail "the console image has no HEALTHCHECK on /healthz"
$DOCKER exec "$console_id" node --version | grep -q '^v18\.' ||
  fail "the console image does not run bookworm's Node.js 18: $($DOCKER exec "$console_id" node --version)"
cip=$($DOCKER inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$console_id")
[[ "$cip" =~ ^172\.31\. ]] || fail "the console's address in compose's network is '$cip'"
console="http://$cip:3000"
[ "$(curl -sS -o /dev/null -w '%{http_code}' "$console/healthz")" = 200 ] || fail "console /healthz"
code=$(curl -sS -o "$W/readyz" -w '%{http_code}' "$console/readyz")
[ "$code" = 200 ] || fail "console /readyz answered $code: $(cat "$W/readyz")"
curl -fsS -D "$W/index.headers" -o "$W/index.html" "$console/tenants" || fail "console: no index.html"
hdr() { grep -i "^$1:" "$W/index.headers" | cut -d: -f2- | tr -d '\r' | sed 's/^ *//'; }
[[ "$(hdr content-type)" == text/html* ]] || fail "console index.html: content-type '$(hdr content-type)'"
csp=$(hdr content-security-policy)
[[ "$csp" == *"script-src 'self';"* && "$csp" == *"frame-ancestors 'none'"* && "$csp" != *unsafe-inline* ]] ||
  fail "console: Content-Security-Policy '$csp'"
[ "$(hdr x-frame-options)" = DENY ] && [ "$(hdr x-content-type-options)" = nosniff ] ||
  fail "console: X-Frame-Options / X-Content-Type-Options missing"
grep -q '<script type="module" src="/app.js"></script>' "$W/index.html" || fail "console: index.html does not load /app.js"
inline=$(grep -o '<script[^>]*>' "$W/index.html" | grep -v ' src="/' || true)
[ -z "$inline" ] || fail "console: index.html has an inline script: $inline"
curl -fsS -o /dev/null "$console/app.js" || fail "console: no /app.js"
# One gRPC-Web request: a data frame holding {email = 1, password = 2}
# (LoginRequest and SignUpRequest), strings shorter than 128 bytes.
grpcweb() {  # method email password -> writes $W/rpc.headers, $W/rpc.body
  local e=$2 p=$3
  printf "\\x00\\x00\\x00\\x00\\x$(printf %02x $((4 + ${#e} + ${#p})))\\x0a\\x$(printf %02x ${#e})%s\\x12\\x$(printf %02x ${#p})%s" \
    "$e" "$p" >"$W/rpc.req"
  curl -sS -D "$W/rpc.headers" -o "$W/rpc.body" -H 'content-type: application/grpc-web+proto' -H 'x-grpc-web: 1' \
    --data-binary "@$W/rpc.req" "$console/supaplane.v1.AccountService/$1"
}
rpc_hdr() { grep -i "^$1:" "$W/rpc.headers" | cut -d: -f2- | tr -d '\r' | sed 's/^ *//'; }
grpcweb Login compose@example.com wrong-password-1
[ "$(rpc_hdr grpc-status)" = 16 ] && [ "$(rpc_hdr grpc-message)" = "invalid email or password" ] ||
  fail "console: Login with a wrong password answered '$(rpc_hdr grpc-status)' '$(rpc_hdr grpc-message)'"
grpcweb SignUp console@example.com console-password-1
head -c1 "$W/rpc.body" | od -An -tx1 | grep -q '^ 00$' && grep -aq 'grpc-status: 0' "$W/rpc.body" ||
  fail "console: SignUp did not succeed: $(rpc_hdr grpc-status) $(rpc_hdr grpc-message)"
ctl --token-file "$W/token3" login --email console@example.com --password console-password-1 >/dev/null ||
  fail "the account signed up through the console does not log in"
code=$(curl -sS -o /dev/null -w '%{http_code}' -H 'content-type: application/grpc-web+proto' \
  --data-binary "@$W/rpc.req" "$console/grpc.health.v1.Health/Check")
[ "$code" = 404 ] || fail "console: a method it does not forward answered $code"
clog=$($DOCKER logs "$console_id" 2>&1)
[[ "$clog" == *"rpc /supaplane.v1.AccountService/SignUp OK"* ]] || fail "console: no log line of the SignUp call"
[[ "$clog" != *console-password-1* && "$clog" != *wrong-password-1* ]] || fail "a password is in the console's log"
dc --profile edge rm -f -s console >"$W/console-rm.log" 2>&1 || { cat "$W/console-rm.log" >&2; fail "removing the console"; }
phase "console: healthy, ready, index.html with its headers, Login / SignUp through its bridge"

# ---- down, then up: the named volumes keep everything.
msgs=$(stream | jq '.state.messages')
((msgs >= 3)) || fail "PLATFORM holds $msgs messages after a signup and a tenant"
dc down -t 10 >"$W/down.log" 2>&1 || { cat "$W/down.log" >&2; fail "docker-compose down"; }
[ -z "$(dc ps -q)" ] || fail "containers left after docker-compose down"
phase "docker-compose down ($msgs messages in PLATFORM)"
up
phase "docker-compose up again"
[[ "$(dc logs --no-color nats-setup)" == *"stream PLATFORM exists and protects the log"* ]] || fail "nats-setup did not find the kept stream"
[ "$(stream | jq '.state.messages')" = "$msgs" ] || fail "PLATFORM lost messages: $msgs before, $(stream | jq '.state.messages') after"
ctl --token-file "$W/token2" login --email compose@example.com --password compose-password-1 >/dev/null ||
  fail "the account is gone after down / up"
[ "$(ctl --token-file "$W/token2" --json tenant get "$ref" | jq -r .phase)" = ACTIVE ] || fail "tenant $ref is not ACTIVE after down / up"
[ "$(psql "$cs" -tAc 'SELECT v FROM kept')" = "before down" ] || fail "the tenant's database lost its data"
ref2=$(ctl --json tenant create --name compose2 | jq -r '.tenant.ref')
wait_phase "$ref2" ACTIVE
((${#ref2} == 20)) && [ "$ref2" != "$ref" ] || fail "second tenant: $ref2"
# No secret in any container's log.
logs=$(dc logs --no-color)
tenant_pw=${cs#postgresql://*:}; tenant_pw=${tenant_pw%%@*}
((${#tenant_pw} >= 16)) || fail "could not take the password out of the connection string"
for secret in "$SUPAPLANE_ADMIN_PASSWORD" "$NATS_ADMIN_PASSWORD" "$tenant_pw"; do
  [[ "$logs" != *"$secret"* ]] || fail "a secret from .env is in the containers' logs"
done
phase "after down / up: account, tenant $ref (and its data), stream kept; tenant $ref2 ACTIVE"
echo "compose up: all checks passed in $((SECONDS - t0)) s"
