#include "servers.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <thread>

namespace supaplane::testenv {

namespace fs = std::filesystem;

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    throw std::runtime_error("free_port: bind failed");
  }
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
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

NatsServer::NatsServer() : dir_("supaplane-nats"), port_(free_port()) {}

void NatsServer::start() {
  proc_.start({"nats-server", "-js", "-a", "127.0.0.1", "-p", std::to_string(port_), "-sd",
               dir_.path() + "/store"},
              dir_.path() + "/nats.log");
  if (!wait_port(port_, 10000)) throw std::runtime_error("nats-server did not start");
}

void NatsServer::restart() {
  proc_.stop();
  start();
}

RedisServer::RedisServer() : dir_("supaplane-redis"), port_(free_port()) {}

void RedisServer::start() {
  proc_.start({"redis-server", "--port", std::to_string(port_), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", dir_.path()},
              dir_.path() + "/redis.log");
  if (!wait_port(port_, 10000)) throw std::runtime_error("redis-server did not start");
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
    : dir_("supaplane-pg"), port_(free_port()), password_auth_(password_auth) {}
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
  proc_.start({pg_bin("postgres"), "-D", data, "-p", std::to_string(port_), "-k", dir_.path(), "-c",
               "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
               "-c", "full_page_writes=off", "-c", "max_connections=200"},
              dir_.path() + "/postgres.log", as);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (PQping(admin_dsn().c_str()) != PQPING_OK) {
    if (std::chrono::steady_clock::now() > deadline)
      throw std::runtime_error("postgres did not start; see " + dir_.path() + "/postgres.log");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string PostgresServer::dsn(const std::string& db) const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " user=postgres dbname=" + db;
}

std::string PostgresServer::admin_dsn(const std::string& db) const {
  return "host=" + dir_.path() + " port=" + std::to_string(port_) + " user=postgres dbname=" + db;
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
