#pragma once
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "supaplane/driver/driver.hpp"

namespace supaplane::driver {

/// How tenants share the cluster.
enum class PostgresMode {
  database,  ///< a database `t_<ref>` per tenant (the default; strongest isolation)
  schema,    ///< a schema `proj_<ref>` per tenant in one central database (seed 002)
};

/// The host and port tenants' clients use: `host` / `port` when set, else
/// those of `admin_dsn` (a unix socket directory there means 127.0.0.1).
std::pair<std::string, int> public_endpoint(const std::string& admin_dsn, std::string host,
                                            int port);

/// "database" | "schema"; `invalid_argument` otherwise.
Result<PostgresMode> parse_postgres_mode(const std::string& s);

struct PostgresDriverOptions {
  std::string admin_dsn;  ///< SUPAPLANE_TENANT_DB_URL: an admin connection to the cluster
  /// SUPAPLANE_GATEWAY_URL_TEMPLATE: the tenant's API gateway (`{ref}` expanded).
  std::string gateway_url_template{"http://{ref}.gateway.internal:8000"};
  PostgresMode mode{PostgresMode::database};
  /// schema mode: the central database holding every `proj_<ref>` schema.
  std::string central_database{"supabase"};
  /// schema mode: the role PostgREST logs in as; its `pgrst.db_schemas`
  /// lists the schemas of running tenants.
  std::string authenticator_role{"authenticator"};
  /// SUPAPLANE_TENANT_DB_PUBLIC_HOST / _PORT: where tenants' clients reach
  /// the cluster; empty / 0 = the host and port of `admin_dsn` (a unix
  /// socket directory there means 127.0.0.1).
  std::string public_host;
  int public_port{0};
};

/// Tenants on a shared PostgreSQL cluster, through an admin connection
/// (`SUPAPLANE_TENANT_DB_URL`). Thread-safe (a small pool per database).
///
/// database mode: login role `t_<ref>` owning database `t_<ref>`, member of
/// the cluster-wide Supabase roles (`anon`, `authenticated`, `service_role`),
/// CONNECT revoked from PUBLIC on every database.
///
/// schema mode: login role `t_<ref>` owning schema `proj_<ref>` in the central
/// database, with its own scoped roles `t_<ref>_anon`, `t_<ref>_authenticated`,
/// `t_<ref>_service_role` (the shared Supabase roles would let one tenant
/// SET ROLE into grants another tenant gave them), PUBLIC's rights on the
/// central database's `public` schema revoked, and the running tenants'
/// schemas exposed to PostgREST (`ALTER ROLE authenticator SET
/// pgrst.db_schemas` + `NOTIFY pgrst, 'reload config'`).
class PostgresDriver final : public Driver {
 public:
  explicit PostgresDriver(PostgresDriverOptions opts);
  ~PostgresDriver() override;
  const char* name() const override { return "postgres"; }
  Result<Progress> provision(const StackRequest& r) override;
  Status pause(const StackRequest& r) override;
  Result<Progress> resume(const StackRequest& r) override;
  Status remove(const std::string& ref) override;
  Result<StackStatus> observe(const std::string& ref, bool want_running) override;
  Endpoints endpoints(const std::string& ref) const override;

  /// Names of a tenant's login role, database (database mode) and schema (schema mode).
  static std::string role_name(const std::string& ref) { return "t_" + ref; }
  static std::string database_name(const std::string& ref) { return "t_" + ref; }
  static std::string schema_name(const std::string& ref) { return "proj_" + ref; }

 private:
  struct Conn;
  template <typename F>
  Status run(const char* what, const std::string& ref, const std::string& dsn, F&& f);
  Status ensure(const StackRequest& r, bool accept);
  Status ensure_database(const StackRequest& r, bool accept);
  Status ensure_schema(const StackRequest& r, bool accept);
  Status prepare_cluster(const char* what, const std::string& ref);
  Status remove_database(const std::string& ref);
  Status remove_schema(const std::string& ref);
  PostgresDriverOptions opts_;
  std::string central_dsn_;
  std::pair<std::string, int> public_;  ///< host, port in tenants' connection strings
  std::atomic<bool> prepared_{false};   ///< cluster hardened (and central database made)
  std::mutex prepare_mu_;
  std::mutex mu_;
  std::map<std::string, std::vector<std::unique_ptr<Conn>>> idle_;  ///< by dsn
};

}  // namespace supaplane::driver
