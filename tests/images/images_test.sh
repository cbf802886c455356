#!/usr/bin/env bash
# deploy/images, built for real (opt-in: cmake -DSUPAPLANE_TEST_IMAGES=ON,
# because one build compiles every service, far beyond the CI budget on two
# cores). It starts its own dockerd on a private bridge, makes the base
# images with scripts/docker-base-images (debootstrap + docker import,
# nothing pulled), builds deploy/images/Dockerfile unchanged, then checks the
# runtime image: runs as uid 10001, no compiler, every binary starts
# (--help), the HEALTHCHECK is set, and a container of supaplane-api becomes
# healthy against nats-server / redis-server / PostgreSQL started here.
# Prints the image sizes. Stops what it started.   images_test.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
fail() { echo "FAIL: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root (dockerd, debootstrap)"
for tool in dockerd debootstrap nats-server redis-server; do
  command -v "$tool" >/dev/null || fail "'$tool' not found (Debian: docker.io debootstrap nats-server redis-server)"
done
DOCKER=/usr/bin/docker

# The daemon's data root persists between runs (base images, build cache):
# SUPAPLANE_IMAGES_DOCKER_ROOT, default /var/tmp/supaplane-images-docker.
D="${SUPAPLANE_IMAGES_DOCKER_ROOT:-/var/tmp/supaplane-images-docker}"
W=$(mktemp -d /tmp/supaplane-images-XXXXXX)
chmod 755 "$W"  # PostgreSQL runs as postgres and must reach its directory
mkdir -p "$D"
BR="sp-img$$"; BR=${BR:0:15}
DPID=""; PIDS=(); CONTAINER=""
cleanup() {
  [ -z "$CONTAINER" ] || $DOCKER rm -f "$CONTAINER" >/dev/null 2>&1 || true
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  if [ -n "$DPID" ]; then kill "$DPID" 2>/dev/null || true; wait "$DPID" 2>/dev/null || true; fi
  ip link del "$BR" 2>/dev/null || true
  # dockerd leaves its network namespace mounted under the exec root.
  local m
  for m in "$W"/exec/netns/*; do [ -e "$m" ] && umount "$m" 2>/dev/null; done
  [ ! -f "$W/pg/data/postmaster.pid" ] || as_pg "$(pg_bin)/pg_ctl" -D "$W/pg/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT
# A private bridge so that this daemon never touches another's docker0.
octet=$((RANDOM % 200 + 20))
ip link add "$BR" type bridge && ip addr add "172.29.$octet.1/24" dev "$BR" && ip link set "$BR" up
dockerd --data-root "$D/data" --exec-root "$W/exec" -H "unix://$W/docker.sock" --pidfile "$W/docker.pid" \
  --bridge "$BR" >"$W/dockerd.log" 2>&1 &
DPID=$!
export DOCKER_HOST="unix://$W/docker.sock"
deadline=$((SECONDS + 60))
until $DOCKER info >/dev/null 2>&1; do
  ((SECONDS < deadline)) || fail "dockerd did not start: $(tail -5 "$W/dockerd.log")"
  sleep 0.5
done

DOCKER=$DOCKER "$ROOT/scripts/docker-base-images"
start=$SECONDS
DOCKER_BUILDKIT=0 $DOCKER build -q -f "$ROOT/deploy/images/Dockerfile" -t supaplane/supaplane:test "$ROOT" >/dev/null ||
  fail "docker build of deploy/images/Dockerfile"
echo "built supaplane/supaplane:test in $((SECONDS - start)) s"

run() { $DOCKER run --rm --network none supaplane/supaplane:test "$@"; }
[ "$(run id -u)" = 10001 ] || fail "the image does not run as uid 10001"
if run sh -c 'command -v g++ || command -v cc || command -v c++ || ls /usr/include/grpc* 2>/dev/null'; then
  fail "the runtime image has a compiler or headers"
fi
for b in supaplane-api supaplane-provisioner supaplane-router-sync supaplane-billing supaplanectl; do
  run "$b" --help >/dev/null || fail "$b --help fails in the image (a missing runtime library?)"
done
hc=$($DOCKER image inspect -f '{{json .Config.Healthcheck.Test}}' supaplane/supaplane:test)
[[ "$hc" == *supaplane-healthcheck* ]] || fail "no HEALTHCHECK: $hc"

# supaplane-api in a container (host network) against servers started here.
free_port nats; free_port redis; free_port pg; free_port grpc; free_port metrics
nats-server -js -a 127.0.0.1 -p "$nats" -sd "$W/js" >"$W/nats.log" 2>&1 &
PIDS+=($!)
redis-server --port "$redis" --bind 127.0.0.1 --save '' --appendonly no >"$W/redis.log" 2>&1 &
PIDS+=($!)
install -d "$W/pg"; chown postgres:postgres "$W/pg"
as_pg "$(pg_bin)/initdb" -D "$W/pg/data" -U postgres --auth=trust >/dev/null
as_pg "$(pg_bin)/pg_ctl" -D "$W/pg/data" -w -l "$W/pg/log" -o "-p $pg -k $W/pg -c listen_addresses=127.0.0.1" start >/dev/null
psql -h "$W/pg" -p "$pg" -U postgres -qc "CREATE DATABASE supaplane"
wait_tcp "$nats" 20 && wait_tcp "$redis" 20 || fail "nats-server / redis-server did not start"
# The admin step, with the image's supaplanectl (services never create the stream).
$DOCKER run --rm --network host supaplane/supaplane:test supaplanectl admin init-stream \
  --nats-url "nats://127.0.0.1:$nats" || fail "supaplanectl admin init-stream in the image"
CONTAINER=supaplane-images-test-$$
$DOCKER run -d --name "$CONTAINER" --network host \
  -e SUPAPLANE_NATS_URL="nats://127.0.0.1:$nats" -e SUPAPLANE_REDIS_URL="redis://127.0.0.1:$redis" \
  -e SUPAPLANE_DATABASE_URL="postgresql://postgres@127.0.0.1:$pg/supaplane" \
  -e SUPAPLANE_JWT_SECRET="$(head -c 48 /dev/urandom | base64 | tr -d '\n')" \
  -e SUPAPLANE_GRPC_ADDR="127.0.0.1:$grpc" -e SUPAPLANE_METRICS_ADDR="127.0.0.1:$metrics" \
  --health-interval 1s --read-only --tmpfs /tmp --cap-drop ALL \
  supaplane/supaplane:test >/dev/null
deadline=$((SECONDS + 90)); health=""
until [ "$health" = healthy ]; do
  ((SECONDS < deadline)) || fail "the api container is $health: $($DOCKER logs --tail 10 "$CONTAINER" 2>&1)"
  sleep 1
  health=$($DOCKER inspect -f '{{.State.Health.Status}}' "$CONTAINER")
done
curl -fsS "http://127.0.0.1:$metrics/readyz" >/dev/null || fail "the api container is healthy but not ready"
echo "ok: supaplane-api container healthy and ready"
$DOCKER image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | sort
