#pragma once
#include <string>

#include "supaplane/core/result.hpp"

namespace supaplane::driver {

/// What a driver needs to build or change one tenant's stack.
struct StackRequest {
  std::string ref;          ///< validated tenant ref (20 lowercase letters)
  std::string db_password;  ///< the tenant's database password (never logged)
  int connection_limit{20};
  /// The keys were rotated: sessions opened with the old password end.
  bool end_sessions{false};
};

/// How a tenant reaches its database (no secret: the password is in the keys).
struct ConnectionInfo {
  std::string database;
  std::string user;
  std::string schema;  ///< where the tenant's tables live ("public" in its own database)
};

/// What a driver sees of a stack (for drift detection).
struct StackStatus {
  bool exists{false};
  bool accepting_connections{false};
};

/// Converges one tenant's stack. Implementations are thread-safe for
/// different refs; the provisioner never runs two calls for one ref at once.
/// Every call is idempotent. Errors are `unavailable` (the cluster cannot be
/// reached or is shutting down: retried until it is back) or `internal` (a
/// failure of this tenant's stack: retried a few times, then FAILED).
class Driver {
 public:
  virtual ~Driver() = default;
  /// Create what is missing and accept connections.
  virtual Status provision(const StackRequest& r) = 0;
  /// Create what is missing, refuse new connections, end the open ones.
  virtual Status pause(const StackRequest& r) = 0;
  /// Accept connections again (creating what is missing).
  virtual Status resume(const StackRequest& r) = 0;
  /// Remove the stack and everything it owns.
  virtual Status remove(const std::string& ref) = 0;
  virtual Result<StackStatus> observe(const std::string& ref) = 0;
  /// Where the tenant's API gateway answers (router-sync routes there).
  virtual std::string gateway_url(const std::string& ref) const = 0;
  virtual ConnectionInfo connection_info(const std::string& ref) const = 0;
};

/// `{ref}` in `tmpl` replaced by the ref (gateway URL templates).
std::string expand_ref(const std::string& tmpl, const std::string& ref);

}  // namespace supaplane::driver
