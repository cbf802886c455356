#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "supaplane/core/result.hpp"
#include "supaplane/secrets/secrets.hpp"
#include "supaplane/v1/types.pb.h"

namespace supaplane::driver {

/// What a driver needs to build or change one tenant's stack.
struct StackRequest {
  std::string ref;          ///< validated tenant ref (20 lowercase letters)
  std::string db_password;  ///< the tenant's database password (never logged)
  int connection_limit{20};
  /// The keys were rotated: sessions opened with the old password end.
  bool end_sessions{false};
  /// The tenant's plan (the docker driver sizes containers by it).
  v1::Plan plan{v1::PLAN_FREE};
  /// Every key of the tenant (the docker driver renders them into its
  /// services' environment; never logged). `db_password` repeats keys.db_password.
  secrets::TenantKeys keys{};
};

/// Where a tenant lives, as the driver reports it in its outcome events: the
/// api, router-sync and the CLI read these from the log and never guess.
struct Endpoints {
  std::string gateway_url;  ///< the tenant's API gateway (router-sync routes there)
  std::string db_host;      ///< public database endpoint for the owner's clients
  int db_port{5432};
  std::string db_name;
  std::string db_user;
  std::string db_schema;  ///< where the tenant's tables live ("public" in its own database)
  /// host:port the edge forwards `db_host` to (a TCP route); empty when
  /// clients reach the database directly.
  std::string db_upstream;
};

/// One service of a stack as the driver sees it.
struct ServiceHealth {
  std::string name;  ///< Management API name (auth, db, pooler, realtime, rest, storage, ...)
  v1::ServiceHealthStatus status{v1::SERVICE_HEALTH_STATUS_COMING_UP};
  std::string error;  ///< why it is unhealthy (no secret)
  bool operator==(const ServiceHealth&) const = default;
};

/// What one provision / resume step achieved. A stack may need minutes to
/// become healthy: a driver starts what it can and answers `done = false`
/// instead of waiting, and the provisioner calls it again when the stack
/// reports progress (or at the next resync). Calls are idempotent.
struct Progress {
  bool done{false};
  std::string waiting_on;  ///< what the stack still waits for (for logs and the api)
  std::vector<ServiceHealth> health;
};

/// What a driver sees of a stack (for drift detection and health).
struct StackStatus {
  bool exists{false};
  bool accepting_connections{false};
  /// Something differs from what the driver would build (a container
  /// missing, stopped, or changed by hand): what, for DriftDetected.
  std::string drift;
  std::vector<ServiceHealth> health;
};

/// Converges one tenant's stack. Implementations are thread-safe for
/// different refs; the provisioner never runs two calls for one ref at once.
/// Every call is idempotent. Errors are `unavailable` (the cluster or daemon
/// cannot be reached: retried until it is back) or `internal` (a failure of
/// this tenant's stack: retried a few times, then FAILED).
class Driver {
 public:
  virtual ~Driver() = default;
  /// "postgres" | "docker".
  virtual const char* name() const = 0;
  /// Create what is missing, repair what changed, start it; `done` once the
  /// stack serves.
  virtual Result<Progress> provision(const StackRequest& r) = 0;
  /// Create what is missing, refuse new connections, end the open ones.
  virtual Status pause(const StackRequest& r) = 0;
  /// Serve again (creating what is missing); `done` once the stack serves.
  virtual Result<Progress> resume(const StackRequest& r) = 0;
  /// Remove the stack and everything it owns.
  virtual Status remove(const std::string& ref) = 0;
  /// `want_running`: what the stack should be doing, so a driver can tell
  /// drift (a stopped container while ACTIVE) from a paused stack.
  virtual Result<StackStatus> observe(const std::string& ref, bool want_running) = 0;
  /// Where the tenant lives (the same for every call with this ref).
  virtual Endpoints endpoints(const std::string& ref) const = 0;
};

/// `{ref}` in `tmpl` replaced by the ref (gateway URL templates).
std::string expand_ref(const std::string& tmpl, const std::string& ref);

}  // namespace supaplane::driver
