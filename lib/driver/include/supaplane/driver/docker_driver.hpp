#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>

#include "supaplane/docker/client.hpp"
#include "supaplane/driver/driver.hpp"
#include "supaplane/driver/stack_spec.hpp"

namespace supaplane::driver {

struct DockerDriverOptions {
  std::string docker_host{"unix:///var/run/docker.sock"};  ///< SUPAPLANE_DOCKER_HOST
  std::string registry_auth_file;  ///< SUPAPLANE_REGISTRY_AUTH_FILE: a Docker config.json
  StackSpec spec;                  ///< SUPAPLANE_STACK_SPEC, already validated
  std::string base_domain{"supabase.localhost"};
  std::string jwt_issuer{"supaplane"};
  /// SUPAPLANE_EDGE_NETWORK: the network Traefik shares with every tenant's
  /// gateway and database route (created when missing).
  std::string edge_network{"supaplane-edge"};
  /// SUPAPLANE_DB_EDGE_PORT: the edge's PostgreSQL entrypoint port.
  int db_edge_port{5432};
};

/// What the docker driver counts (plain atomics; the provisioner exports them).
struct DockerDriverCounters {
  std::atomic<std::uint64_t> on_healthy_runs{0};      ///< on_healthy commands that exited 0
  std::atomic<std::uint64_t> on_healthy_failures{0};  ///< ... that exited non-zero or were lost
};

/// Each tenant is a stack of containers through the Docker Engine API: an
/// internal network `sp-<ref>`, containers `sp-<ref>-<service>` labelled
/// with the ref, the service, the hash of their rendered configuration and
/// the limits they were created with, volumes `sp-<ref>-<volume>`. A
/// container whose image, networks, limits or restart policy differ from
/// that (changed by hand) is drift, and recreated. Only the gateway and the database route are
/// also on the edge network; no host ports. Every container drops all
/// capabilities but those the spec grants, runs with no-new-privileges and
/// the plan's limits. Containers have no restart policy: the provisioner
/// restarts them, and records it (DriftDetected).
///
/// provision / resume never wait for a stack to become healthy: each call
/// does what can be done now (create, recreate what changed, start what
/// whose dependencies are ready) and reports progress. A service's
/// `on_healthy` command is started (a detached exec) once the driver has
/// started the container and it is healthy, and its exit code read by a
/// later call; dependents waiting for that service to be `healthy` start
/// only after it exited 0 in the container as it runs now. Thread-safe.
class DockerDriver final : public Driver {
 public:
  explicit DockerDriver(DockerDriverOptions opts);
  const char* name() const override { return "docker"; }
  Result<Progress> provision(const StackRequest& r) override;
  Status pause(const StackRequest& r) override;
  Result<Progress> resume(const StackRequest& r) override { return provision(r); }
  Status remove(const std::string& ref) override;
  Result<StackStatus> observe(const std::string& ref, bool want_running) override;
  Endpoints endpoints(const std::string& ref) const override;

  /// Streams the daemon's container events (start, die, destroy,
  /// health_status, ...) of managed containers, calling `on_change(ref)`,
  /// until `stop`; reconnects with backoff when the daemon goes away.
  void watch(const std::function<void(const std::string&)>& on_change,
             const std::atomic<bool>& stop);

  /// Reaches the daemon (API version) and makes the edge network.
  Status connect();
  docker::Client& client() { return client_; }

  const DockerDriverCounters& counters() const { return counters_; }

  static std::string network_name(const std::string& ref) { return "sp-" + ref; }
  static std::string container_name(const std::string& ref, const std::string& service) {
    return "sp-" + ref + "-" + service;
  }
  static std::string volume_name(const std::string& ref, const std::string& volume) {
    return "sp-" + ref + "-" + volume;
  }

  /// The create body of `svc` for `r` (exposed for tests: the hash label
  /// is computed over it).
  Result<docker::Json> container_body(const ServiceSpec& svc, const StackRequest& r) const;

 private:
  struct Seen;
  Result<std::map<std::string, Seen>> list(const std::string& ref);
  /// Network, volumes, and every container as the spec renders it for `r`
  /// (missing ones created, changed ones recreated, extra ones removed);
  /// nothing started. What the daemon has afterwards, by service.
  Result<std::map<std::string, Seen>> materialize(const StackRequest& r);
  /// What differs between `s` as the daemon inspects it and what the driver
  /// makes of `svc` (image, networks, `want_limits` when an object, restart
  /// policy): "<container> changed by hand: ..." or empty. One inspect call.
  Result<std::string> changed_by_hand(const std::string& ref, const ServiceSpec& svc, const Seen& s,
                                      const docker::Json& want_limits);
  Status ensure_network(const std::string& ref);
  Status ensure_edge_network();
  Status ensure_volumes(const std::string& ref);
  Status create_container(const ServiceSpec& svc, const StackRequest& r, const docker::Json& body);
  std::map<std::string, std::string> template_values(const StackRequest& r) const;
  bool on_edge(const std::string& service) const;

  /// Where `svc`'s on_healthy command stands in one container (by id).
  struct HookRun {
    std::string container;
    std::string exec;        ///< the exec instance running it; empty = not started
    bool done{false};        ///< exited 0 in this container since the driver started it
    std::string last_error;  ///< why the previous run failed (no secret: exit code only)
  };
  /// One step of `svc`'s on_healthy command in the healthy container
  /// `container_id`: starts it the first time, reads its exit code after.
  /// Never waits. "" once it succeeded, else what it waits on; an error
  /// when it failed (the next step runs it again).
  Result<std::string> on_healthy_step(const std::string& ref, const ServiceSpec& svc,
                                      const std::string& container_id);
  /// The container of `ref`'s `service` is not running: its command runs
  /// again after the next start.
  void forget_on_healthy(const std::string& ref, const std::string& service);
  /// Every run of `ref` (its stack is removed).
  void forget_on_healthy(const std::string& ref);

  DockerDriverOptions opts_;
  docker::Client client_;
  std::atomic<bool> edge_ready_{false};
  /// Containers (by id) a converge inspected and found as the driver makes
  /// them: later converge steps skip that inspect (a starting stack is
  /// stepped every second and on each of its events). observe() inspects
  /// every time and takes a container it finds changed off the list, so the
  /// next converge compares it again and repairs it.
  std::mutex verified_mu_;
  std::set<std::string> verified_;
  std::mutex hooks_mu_;
  std::map<std::pair<std::string, std::string>, HookRun> hooks_;  ///< (ref, service) → run
  DockerDriverCounters counters_;
};

}  // namespace supaplane::driver
