#pragma once
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "supaplane/driver/driver.hpp"

namespace supaplane::driver {

struct PostgresDriverOptions {
  std::string admin_dsn;  ///< SUPAPLANE_TENANT_DB_URL: an admin connection to the cluster
  /// SUPAPLANE_GATEWAY_URL_TEMPLATE: the tenant's API gateway (`{ref}` expanded).
  std::string gateway_url_template{"http://{ref}.gateway.internal:8000"};
};

/// Database-per-tenant on a shared PostgreSQL cluster, through an admin
/// connection (`SUPAPLANE_TENANT_DB_URL`). Thread-safe (a small pool).
class PostgresDriver final : public Driver {
 public:
  explicit PostgresDriver(PostgresDriverOptions opts);
  ~PostgresDriver() override;
  Status provision(const StackRequest& r) override;
  Status pause(const StackRequest& r) override;
  Status resume(const StackRequest& r) override;
  Status remove(const std::string& ref) override;
  Result<StackStatus> observe(const std::string& ref) override;
  std::string gateway_url(const std::string& ref) const override;

  /// Names of a tenant's database and login role.
  static std::string database_name(const std::string& ref) { return "t_" + ref; }
  static std::string role_name(const std::string& ref) { return "t_" + ref; }

 private:
  struct Conn;
  template <typename F>
  Status run(const char* what, const std::string& ref, F&& f);
  Status ensure(const StackRequest& r, bool accept);
  PostgresDriverOptions opts_;
  std::atomic<bool> hardened_{false};  ///< PUBLIC's CONNECT revoked cluster-wide
  std::mutex mu_;
  std::vector<std::unique_ptr<Conn>> idle_;
};

}  // namespace supaplane::driver
