#pragma once
// Real throwaway servers for integration tests: nats-server (JetStream),
// redis-server and PostgreSQL on free ports in temp dirs, stopped by PID.
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace supaplane::testenv {

/// A TCP port on 127.0.0.1 reserved for as long as the lease lives. It is
/// chosen below the kernel's ephemeral range (ip_local_port_range), so no
/// outgoing connection and no bind-to-0 can be handed it, and it is locked
/// with flock on $TMPDIR/supaplane-ports/<port>, so test processes running in
/// parallel (C++ here, scripts/lib.sh `free_port` in the shell tests) never
/// pick the same one. Nothing must listen on it when it is leased.
class PortLease {
 public:
  PortLease();
  ~PortLease();
  PortLease(const PortLease&) = delete;
  PortLease& operator=(const PortLease&) = delete;
  int port() const { return port_; }

 private:
  int port_{0};
  int lock_fd_{-1};
};

/// A port leased until this process exits (for ports handed to subprocesses).
int free_port();
/// Waits until something accepts on 127.0.0.1:port.
bool wait_port(int port, int timeout_ms);

/// A directory removed (recursively) on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "supaplane-test");
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// A child process with its output in a log file.
class Process {
 public:
  Process() = default;
  ~Process() { stop(); }
  /// Starts argv; if `run_as` is set (and we are root), drops to that user.
  void start(const std::vector<std::string>& argv, const std::string& log_file,
             const std::string& run_as = "");
  /// SIGTERM (or `sig`), then waits; SIGKILL after 10 s.
  void stop(int sig = 15);
  /// Sends a signal without waiting (e.g. SIGSTOP / SIGCONT to freeze a server).
  void signal(int sig);
  /// Waits for the process to exit; returns its exit code (-1 if signalled).
  int wait();
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_{-1};
};

struct NatsServerOptions {
  /// Run with the users of deploy/compose/nats/nats.conf (one per service,
  /// passwords generated here); anonymous connections are refused.
  bool users{false};
  /// Create the PLATFORM stream (as admin) when the server starts, as
  /// `supaplanectl admin init-stream` does in a deployment.
  bool create_stream{true};
  /// TTL of the provisioner's lease bucket made with the stream (shorter
  /// than a deployment's 15 s: a provisioner restarted after a SIGKILL
  /// waits out its previous life's lease).
  std::int64_t lease_ttl_ms{5000};
};

/// One nats-server (JetStream) on a leased port in a temp dir.
class NatsServer {
 public:
  explicit NatsServer(NatsServerOptions options = {});
  /// Starts the server and (unless disabled) creates the PLATFORM stream.
  void start();
  void stop(int sig = 15) { proc_.stop(sig); }
  /// SIGSTOP / SIGCONT: connections stay open, nothing is answered meanwhile.
  void freeze() { proc_.signal(19); }
  void thaw() { proc_.signal(18); }
  /// Same port, same store directory.
  void restart();
  /// The admin's URL (with its password when users are on).
  std::string url() const { return url_for("admin"); }
  /// The URL of one user of the users file ("api", "provisioner",
  /// "router-sync", "billing", "admin"); without users, the plain URL.
  std::string url_for(const std::string& user) const;
  /// The URL with no credentials at all.
  std::string anonymous_url() const { return "nats://127.0.0.1:" + std::to_string(port_.port()); }
  /// The generated password of `user` (users on).
  std::string password(const std::string& user) const;
  int port() const { return port_.port(); }
  const std::string& log_file() const { return log_; }

 private:
  void launch();
  NatsServerOptions options_;
  TempDir dir_;
  PortLease port_;
  Process proc_;
  std::string config_;
  std::string log_;
  std::vector<std::pair<std::string, std::string>> passwords_;
};

/// A JetStream cluster of three nats-server processes on loopback (free
/// ports, one temp dir each), routes between all of them.
class NatsCluster {
 public:
  static constexpr int kNodes = 3;
  NatsCluster();
  ~NatsCluster();
  /// Starts every node and waits until the cluster has a JetStream meta
  /// leader (it answers an account info request).
  void start();
  /// Creates PLATFORM with `replicas` replicas (waits out leader election).
  void create_stream(int replicas);
  /// The three client URLs, comma-separated (the form SUPAPLANE_NATS_URL takes).
  std::string urls() const;
  std::string url(int node) const;
  /// SIGKILL one node (no lame duck, no flush).
  void kill(int node);
  /// Starts a killed node again with its store.
  void start_node(int node);
  bool running(int node) const;
  /// The node leading the PLATFORM stream (-1 if none answers).
  int stream_leader() const;
  /// True when the stream's leader reports every other node current with no
  /// lag (a restarted node has caught up).
  bool replicas_current() const;
  static std::string node_name(int node) { return "n" + std::to_string(node + 1); }

 private:
  struct Node;
  std::vector<std::unique_ptr<Node>> nodes_;
};

class RedisServer {
 public:
  RedisServer();
  /// Starts it empty (no persistence); after stop() the same port again.
  void start();
  /// SIGTERM (or `sig`, e.g. 9 to kill it), then waits.
  void stop(int sig = 15) { proc_.stop(sig); }
  /// Freezes / thaws the server (SIGSTOP / SIGCONT): connections hang.
  void freeze() { proc_.signal(19); }
  void thaw() { proc_.signal(18); }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_.port()); }
  int port() const { return port_.port(); }

 private:
  TempDir dir_;
  PortLease port_;
  Process proc_;
};

class PostgresServer {
 public:
  /// With `password_auth`, TCP connections need a password (scram-sha-256)
  /// while the unix socket stays trusted (see `admin_dsn`).
  explicit PostgresServer(bool password_auth = false);
  ~PostgresServer();
  void start();
  /// Superuser over the unix socket (trusted in both modes).
  std::string admin_dsn(const std::string& db = "postgres") const;
  void stop() { proc_.stop(); }
  /// Same port, same data directory (after stop()).
  void restart() { launch(); }
  /// libpq connection string for database `db`.
  std::string dsn(const std::string& db = "postgres") const;
  /// Creates a fresh database and returns its DSN.
  std::string create_database(const std::string& name);
  int port() const { return port_.port(); }

 private:
  void launch();
  TempDir dir_;
  PortLease port_;
  bool password_auth_;
  Process proc_;
};

/// A self-signed certificate (EC P-256, one day) for 127.0.0.1 and
/// localhost, made with the openssl command: `dir`/`name`.crt and .key.
struct CertFiles {
  std::string cert;
  std::string key;
};
CertFiles self_signed_cert(const std::string& dir, const std::string& name);

/// One PostgreSQL per test binary (initdb costs seconds).
PostgresServer& shared_postgres();
/// The same, but TCP logins need a password (tenant credentials are real).
PostgresServer& shared_postgres_with_passwords();

}  // namespace supaplane::testenv
