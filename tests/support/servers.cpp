#include "servers.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <nats/nats.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <thread>

#include "eventually.hpp"
#include "supaplane/event_store/event_store.hpp"
#include "supaplane/event_store/kv.hpp"

namespace supaplane::testenv {

namespace fs = std::filesystem;

namespace {
// The lowest port of the kernel's ephemeral range: ports below it are never
// handed out for outgoing connections or bind(0).
int ephemeral_low() {
  int lo = 32768, hi = 60999;
  if (FILE* f = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) {
    if (std::fscanf(f, "%d %d", &lo, &hi) != 2) lo = 32768;
    std::fclose(f);
  }
  return lo;
}

bool bindable(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}
}  // namespace

// Keep in step with free_port in scripts/lib.sh (same range, same lock files).
PortLease::PortLease() {
  constexpr int kLow = 10000;
  const int high = ephemeral_low() - 1;
  if (high <= kLow) throw std::runtime_error("PortLease: ephemeral port range starts too low");
  const fs::path dir = fs::temp_directory_path() / "supaplane-ports";
  std::error_code ec;
  if (fs::create_directories(dir, ec))  // shared by every user's tests
    fs::permissions(dir, fs::perms::all | fs::perms::sticky_bit, ec);
  std::random_device rd;
  std::mt19937 rng(rd());
  std::uniform_int_distribution<int> pick(kLow, high);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const int p = pick(rng);
    const int fd = ::open((dir / std::to_string(p)).c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) continue;
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0 && bindable(p)) {
      port_ = p;
      lock_fd_ = fd;
      return;
    }
    ::close(fd);
  }
  throw std::runtime_error("PortLease: no free port in 1000 tries");
}

PortLease::~PortLease() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

int free_port() {
  static std::mutex mu;
  static std::vector<std::unique_ptr<PortLease>> held;  // released at exit
  auto lease = std::make_unique<PortLease>();
  const int p = lease->port();
  std::lock_guard lock(mu);
  held.push_back(std::move(lease));
  return p;
}

bool wait_port(int port, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    if (ok) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

TempDir::TempDir(const std::string& prefix) {
  std::string tmpl = (fs::temp_directory_path() / (prefix + "-XXXXXX")).string();
  if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

void Process::start(const std::vector<std::string>& argv, const std::string& log_file,
                    const std::string& run_as) {
  uid_t uid = 0;
  gid_t gid = 0;
  const bool drop = !run_as.empty() && ::geteuid() == 0;
  if (drop) {
    passwd* pw = ::getpwnam(run_as.c_str());
    if (!pw) throw std::runtime_error("no such user: " + run_as);
    uid = pw->pw_uid;
    gid = pw->pw_gid;
  }
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::setpgid(0, 0);
    int fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      if (drop) (void)::fchown(fd, uid, gid);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::close(fd);
    }
    if (drop && (::setgid(gid) != 0 || ::setuid(uid) != 0)) ::_exit(126);
    // A test binary killed by a timeout must not leave its servers running.
    // (Set after setuid, which clears it; it fires when the forking thread
    // exits, and servers are started from the test's main thread.)
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(125);  // the parent died before prctl
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  pid_ = pid;
}

void Process::stop(int sig) {
  if (pid_ <= 0) return;
  ::kill(pid_, sig);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_ || r < 0) break;
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  pid_ = -1;
}

void Process::signal(int sig) {
  if (pid_ > 0) ::kill(pid_, sig);
}

int Process::wait() {
  if (pid_ <= 0) return -1;
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

CertFiles self_signed_cert(const std::string& dir, const std::string& name) {
  CertFiles f{dir + "/" + name + ".crt", dir + "/" + name + ".key"};
  Process p;
  p.start({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
           "-nodes", "-days", "1", "-subj", "/CN=" + name, "-addext",
           "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", f.key, "-out", f.cert},
          dir + "/" + name + ".openssl.log");
  if (p.wait() != 0)
    throw std::runtime_error("openssl could not make a certificate; see " + dir + "/" + name +
                             ".openssl.log");
  return f;
}

namespace {

std::string random_password() {
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::random_device rd;
  std::uniform_int_distribution<int> pick(0, static_cast<int>(sizeof kAlphabet) - 2);
  std::string out;
  for (int i = 0; i < 24; ++i) out += kAlphabet[pick(rd)];
  return out;
}

std::string read_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error("cannot read " + path);
  std::string out;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
  std::fclose(f);
  return out;
}

void write_file(const std::string& path, const std::string& text) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw std::runtime_error("cannot write " + path);
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (std::size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size()))
    s.replace(p, from.size(), to);
}

/// Creates (or verifies) PLATFORM and the lease bucket as `supaplanectl
/// admin init-stream` does, waiting out a JetStream that is still starting
/// or electing its leader.
void init_stream(const std::string& admin_url, int replicas, std::int64_t lease_ttl_ms) {
  event_store::ConnectOptions co;
  co.url = admin_url;
  co.name = "testenv-init-stream";
  co.request_timeout_ms = 2000;
  event_store::StreamSettings ss;
  ss.replicas = replicas;
  auto es = event_store::EventStore::connect(co, ss);
  if (!es) throw std::runtime_error("init stream: " + es.error().message);
  std::string last = "not connected";
  const bool ok = eventually(
      [&] {
        auto st = (*es)->create_or_verify_stream();
        if (st) {
          event_store::KvBucketSettings kv;
          kv.ttl_ms = lease_ttl_ms;
          kv.replicas = replicas;
          st = event_store::create_or_verify_kv_bucket(**es, kv);
        }
        if (st) return true;
        last = st.error().message;
        if (st.error().code == errc::incompatible) throw std::runtime_error(last);
        return false;
      },
      std::chrono::seconds(30), std::chrono::milliseconds(100));
  if (!ok) throw std::runtime_error("init stream: " + last);
}

}  // namespace

NatsServer::NatsServer(NatsServerOptions options)
    : options_(options), dir_("supaplane-nats"), port_() {
  log_ = dir_.path() + "/nats.log";
  if (!options_.users) return;
  // The shipped users block with generated passwords; the store, client
  // port and monitoring move here.
  std::string conf =
      read_file(std::string(SUPAPLANE_SOURCE_DIR) + "/deploy/compose/nats/nats.conf");
  for (const char* user : {"admin", "api", "provisioner", "router-sync", "billing"}) {
    std::string var = std::string("$NATS_") + user + "_PASSWORD";
    for (auto& c : var) c = c == '-' ? '_' : static_cast<char>(std::toupper(c));
    if (conf.find(var) == std::string::npos)
      throw std::runtime_error("deploy/compose/nats/nats.conf has no " + var);
    passwords_.emplace_back(user, random_password());
    replace_all(conf, var, "\"" + passwords_.back().second + "\"");
  }
  replace_all(conf, "store_dir: /data/jetstream", "store_dir: \"" + dir_.path() + "/store\"");
  replace_all(conf, "http: 0.0.0.0:8222", "");
  config_ = dir_.path() + "/nats.conf";
  write_file(config_, conf);
}

std::string NatsServer::password(const std::string& user) const {
  for (const auto& [u, pw] : passwords_)
    if (u == user) return pw;
  throw std::runtime_error("no NATS user " + user);
}

std::string NatsServer::url_for(const std::string& user) const {
  if (!options_.users) return anonymous_url();
  return "nats://" + user + ":" + password(user) + "@127.0.0.1:" + std::to_string(port_.port());
}

void NatsServer::launch() {
  std::vector<std::string> argv{"nats-server", "-js", "-a",
                                "127.0.0.1",   "-p",  std::to_string(port_.port())};
  // With the config file its store_dir (moved here) holds; nats-server
  // refuses -sd next to it.
  if (config_.empty())
    argv.insert(argv.end(), {"-sd", dir_.path() + "/store"});
  else
    argv.insert(argv.end(), {"-c", config_});
  proc_.start(argv, log_);
  if (!wait_port(port_.port(), 10000)) throw std::runtime_error("nats-server did not start");
}

void NatsServer::start() {
  launch();
  if (options_.create_stream) init_stream(url(), 1, options_.lease_ttl_ms);
}

void NatsServer::restart() {
  proc_.stop();
  launch();
}

struct NatsCluster::Node {
  TempDir dir{"supaplane-nats-node"};
  PortLease client;
  PortLease route;
  Process proc;
};

NatsCluster::NatsCluster() {
  for (int i = 0; i < kNodes; ++i) nodes_.push_back(std::make_unique<Node>());
}

NatsCluster::~NatsCluster() {
  for (auto& n : nodes_) n->proc.stop(SIGKILL);
}

std::string NatsCluster::url(int node) const {
  return "nats://127.0.0.1:" + std::to_string(nodes_.at(node)->client.port());
}

std::string NatsCluster::urls() const {
  std::string out;
  for (int i = 0; i < kNodes; ++i) out += (i ? "," : "") + url(i);
  return out;
}

void NatsCluster::start_node(int i) {
  Node& n = *nodes_.at(i);
  std::string routes;
  for (int j = 0; j < kNodes; ++j)
    if (j != i)
      routes += (routes.empty() ? "" : ",") + std::string("nats-route://127.0.0.1:") +
                std::to_string(nodes_[j]->route.port());
  n.proc.start({"nats-server", "-js", "-n", node_name(i), "-a", "127.0.0.1", "-p",
                std::to_string(n.client.port()), "-sd", n.dir.path() + "/store", "--cluster_name",
                "supaplane-test", "--cluster", "nats://127.0.0.1:" + std::to_string(n.route.port()),
                "--routes", routes},
               n.dir.path() + "/nats.log");
  if (!wait_port(n.client.port(), 10000))
    throw std::runtime_error("nats-server " + node_name(i) + " did not start");
}

void NatsCluster::start() {
  for (int i = 0; i < kNodes; ++i) start_node(i);
}

void NatsCluster::create_stream(int replicas) {
  init_stream(urls(), replicas, NatsServerOptions{}.lease_ttl_ms);
}

void NatsCluster::kill(int node) { nodes_.at(node)->proc.stop(SIGKILL); }

bool NatsCluster::running(int node) const { return nodes_.at(node)->proc.running(); }

namespace {
/// PLATFORM's stream info from each running node in turn, handed to `read`;
/// the first answer `read` takes (not nullopt), else `fallback`.
template <typename T, typename Read>
T read_stream_info(const NatsCluster& cluster, T fallback, Read read) {
  for (int i = 0; i < NatsCluster::kNodes; ++i) {
    if (!cluster.running(i)) continue;
    event_store::ConnectOptions co;
    co.url = cluster.url(i);
    co.fail_fast = true;
    co.request_timeout_ms = 2000;
    auto es = event_store::EventStore::connect(co);
    if (!es) continue;
    jsStreamInfo* si = nullptr;
    if (js_GetStreamInfo(&si, (*es)->jetstream(), "PLATFORM", nullptr, nullptr) != NATS_OK)
      continue;
    const std::optional<T> out = read(*si);
    jsStreamInfo_Destroy(si);
    if (out) return *out;
  }
  return fallback;
}
}  // namespace

int NatsCluster::stream_leader() const {
  return read_stream_info(*this, -1, [](const jsStreamInfo& si) -> std::optional<int> {
    const std::string leader = si.Cluster && si.Cluster->Leader ? si.Cluster->Leader : "";
    for (int j = 0; j < kNodes; ++j)
      if (leader == node_name(j)) return j;
    return std::nullopt;  // this node knows no leader: ask the next
  });
}

bool NatsCluster::replicas_current() const {
  for (int i = 0; i < kNodes; ++i)
    if (!running(i)) return false;
  return read_stream_info(*this, false, [](const jsStreamInfo& si) -> std::optional<bool> {
    bool current = si.Cluster && si.Cluster->Leader && si.Cluster->ReplicasLen == kNodes - 1;
    for (int r = 0; current && r < si.Cluster->ReplicasLen; ++r) {
      const jsPeerInfo* p = si.Cluster->Replicas[r];
      current = p->Current && !p->Offline && p->Lag == 0;
    }
    return current;
  });
}

RedisServer::RedisServer() : dir_("supaplane-redis"), port_() {}

void RedisServer::start() {
  proc_.start({"redis-server", "--port", std::to_string(port_.port()), "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "no", "--dir", dir_.path()},
              dir_.path() + "/redis.log");
  if (!wait_port(port_.port(), 10000)) throw std::runtime_error("redis-server did not start");
}

namespace {
std::string pg_bin(const std::string& name) {
  for (const char* v : {"16", "15"}) {
    std::string p = std::string("/usr/lib/postgresql/") + v + "/bin/" + name;
    if (fs::exists(p)) return p;
  }
  return name;
}
constexpr const char* kPgUser = "postgres";
}  // namespace

PostgresServer::PostgresServer(bool password_auth)
    : dir_("supaplane-pg"), port_(), password_auth_(password_auth) {}
PostgresServer::~PostgresServer() { stop(); }

void PostgresServer::start() {
  const bool root = ::geteuid() == 0;
  const std::string as = root ? kPgUser : "";
  if (root) {
    passwd* pw = ::getpwnam(kPgUser);
    if (!pw) throw std::runtime_error("user postgres missing (install postgresql)");
    if (::chown(dir_.path().c_str(), pw->pw_uid, pw->pw_gid) != 0)
      throw std::runtime_error("chown temp dir failed");
  }
  const std::string data = dir_.path() + "/data";
  {
    Process p;
    p.start({pg_bin("initdb"), "-D", data, "-U", "postgres", "--auth-local=trust",
             password_auth_ ? "--auth-host=scram-sha-256" : "--auth-host=trust", "-E", "UTF8",
             "--no-sync"},
            dir_.path() + "/initdb.log", as);
    if (p.wait() != 0)
      throw std::runtime_error("initdb failed; see " + dir_.path() + "/initdb.log");
  }
  launch();
}

void PostgresServer::launch() {
  const std::string as = ::geteuid() == 0 ? kPgUser : "";
  const std::string data = dir_.path() + "/data";
  proc_.start(
      {pg_bin("postgres"), "-D", data, "-p", std::to_string(port_.port()), "-k", dir_.path(), "-c",
       "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c",
       "full_page_writes=off", "-c", "max_connections=1000"},
      dir_.path() + "/postgres.log", as);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (PQping(admin_dsn().c_str()) != PQPING_OK) {
    if (std::chrono::steady_clock::now() > deadline)
      throw std::runtime_error("postgres did not start; see " + dir_.path() + "/postgres.log");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string PostgresServer::dsn(const std::string& db) const {
  return "host=127.0.0.1 port=" + std::to_string(port_.port()) + " user=postgres dbname=" + db;
}

std::string PostgresServer::admin_dsn(const std::string& db) const {
  return "host=" + dir_.path() + " port=" + std::to_string(port_.port()) +
         " user=postgres dbname=" + db;
}

std::string PostgresServer::create_database(const std::string& name) {
  PGconn* c = PQconnectdb(admin_dsn().c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    PQfinish(c);
    throw std::runtime_error("cannot connect to test postgres");
  }
  PGresult* r = PQexec(c, ("CREATE DATABASE \"" + name + "\"").c_str());
  const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  PQclear(r);
  PQfinish(c);
  if (!ok) throw std::runtime_error("CREATE DATABASE " + name + " failed");
  return dsn(name);
}

PostgresServer& shared_postgres_with_passwords() {
  static std::unique_ptr<PostgresServer> pg = [] {
    auto p = std::make_unique<PostgresServer>(/*password_auth=*/true);
    p->start();
    return p;
  }();
  return *pg;
}

PostgresServer& shared_postgres() {
  // Stopped by its destructor when the test binary exits.
  static std::unique_ptr<PostgresServer> pg = [] {
    auto p = std::make_unique<PostgresServer>();
    p->start();
    return p;
  }();
  return *pg;
}

}  // namespace supaplane::testenv
