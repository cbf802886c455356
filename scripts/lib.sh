# Shared by scripts/run, scripts/test and scripts/bench. Sourced, not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${SUPAPLANE_BUILD_DIR:-$ROOT/build}"

# Debian 12 packages the build, the tests and the local run need.
PACKAGES=(
  cmake g++ ninja-build pkg-config ccache
  libnats-dev nats-server
  libprotobuf-dev protobuf-compiler libgrpc++-dev protobuf-compiler-grpc
  libpqxx-dev libpq-dev libhiredis-dev libspdlog-dev prometheus-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  redis-server postgresql
  libcurl4-openssl-dev nlohmann-json3-dev libyaml-cpp-dev libcpp-httplib-dev
  libsodium-dev libjwt-dev libcli11-dev
  curl jq clang-format openssl
  nodejs
  prometheus python3-yaml docker-compose
  # the compose bring-up (tests/compose/compose_up_test.sh): its own dockerd,
  # base images from debootstrap, psql as the tenant's client
  docker.io debootstrap postgresql-client binutils
)

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

ensure_packages() {
  local missing=()
  for p in "${PACKAGES[@]}" "$@"; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  # Debian's nodejs comes without npm (NodeSource's bundles it): the Stripe
  # SDK test needs npm either way.
  if ! command -v npm >/dev/null; then
    log "installing npm"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends npm
  fi
}

build() {
  log "building into $BUILD_DIR"
  local launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="${SUPAPLANE_BUILD_TYPE:-RelWithDebInfo}" \
    "${launcher[@]}" >/dev/null
  ninja -C "$BUILD_DIR" -j"${SUPAPLANE_JOBS:-2}" "$@"
}

# console_build [DIST]: installs the console's npm packages (npm ci from the
# committed lock file, skipped while console/node_modules matches it) and
# builds the app and supaplane-console into DIST (default console/dist).
console_build() {
  local dir="$ROOT/console" stamp sum
  command -v npm >/dev/null || { echo "console_build: npm not found (apt-get install npm)" >&2; return 1; }
  stamp="$dir/node_modules/.supaplane-lock-sha256"
  sum=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
    log "npm ci (console)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || {
      echo "console_build: npm ci failed (is the npm registry reachable?)" >&2
      return 1
    }
    echo "$sum" >"$stamp"
  fi
  log "building the console into ${1:-$dir/dist}"
  (cd "$dir" && SUPAPLANE_CONSOLE_DIST="${1:-$dir/dist}" npm run --silent build)
}

pg_bin() { ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1; }

# Runs a command as the postgres user when we are root (PostgreSQL refuses root).
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# free_port VAR: sets VAR to a TCP port on 127.0.0.1 reserved until this shell
# exits. Same scheme as testenv::PortLease (tests/support/servers.cpp): below
# the kernel's ephemeral range, so no outgoing connection can be given it, and
# locked with flock on $TMPDIR/supaplane-ports/<port>, so tests running in
# parallel never pick the same port. It sets a variable instead of printing
# because $(...) would run it in a subshell whose exit drops the lock.
free_port() {
  local dir="${TMPDIR:-/tmp}/supaplane-ports" lo hi p fd tries=0
  read -r lo hi </proc/sys/net/ipv4/ip_local_port_range
  if [ ! -d "$dir" ]; then mkdir -p "$dir" && chmod 1777 "$dir" 2>/dev/null || true; fi
  while :; do
    if ((++tries > 1000)); then
      echo "free_port: no free port below $lo after 1000 tries (is $dir writable?)" >&2
      return 1
    fi
    p=$(shuf -i "10000-$((lo - 1))" -n 1)
    [ -e "$dir/$p" ] || : >>"$dir/$p" 2>/dev/null || continue
    exec {fd}<"$dir/$p" || continue
    if flock -n "$fd" && ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      printf -v "$1" '%s' "$p"
      return
    fi
    exec {fd}<&-
  done
}

wait_http() {  # url timeout_s [pid]: gives up at once when process pid has exited
  local url=$1 deadline=$((SECONDS + $2)) pid=${3:-}
  until curl -fsS "$url" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
}

wait_tcp() {  # port timeout_s
  local deadline=$((SECONDS + $2))
  until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}
