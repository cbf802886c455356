#pragma once
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "supaplane/driver/driver.hpp"

struct pg_conn;  // libpq's PGconn
namespace pqxx {
class transaction_base;
}

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
  std::string public_host{};
  int public_port{0};
  /// SUPAPLANE_TENANT_DB_CONNECT_TIMEOUT_S: `connect_timeout` added to
  /// `admin_dsn` when it names none.
  int connect_timeout_s{5};
  /// SUPAPLANE_TENANT_DB_STATEMENT_TIMEOUT_MS / _LOCK_TIMEOUT_MS: set on every
  /// admin session, so one hung statement fails (and is retried) instead of
  /// holding a worker forever. 0 = no limit.
  int statement_timeout_ms{30'000};
  int lock_timeout_ms{5'000};
  /// SUPAPLANE_TENANT_DB_CONNECTION_RESERVE: connections of `max_connections`
  /// never promised to tenants (superusers, the platform, PostgREST, ...).
  int connection_reserve{20};
};

/// What the postgres driver counts (plain atomics; the provisioner exports them).
struct PostgresDriverCounters {
  std::atomic<std::uint64_t> timeouts{0};  ///< statements ended by a statement / lock timeout
  std::atomic<std::uint64_t> budget_refusals{0};  ///< converges refused by the connection budget
  std::atomic<std::int64_t> budget{0};            ///< max_connections - reserve, at the last check
  std::atomic<std::int64_t> promised{0};  ///< tenants' connection limits summed, at the last check
};

/// Tenants on a shared PostgreSQL cluster, through an admin connection
/// (`SUPAPLANE_TENANT_DB_URL`). Thread-safe (a small pool per database).
///
/// database mode: login role `t_<ref>` with CONNECT, CREATE and TEMPORARY on
/// database `t_<ref>` (owned by the driver's role, so the tenant cannot grant
/// CONNECT to PUBLIC or to anyone), its own scoped roles `t_<ref>_anon`,
/// `t_<ref>_authenticated`, `t_<ref>_service_role` (never the cluster-wide
/// Supabase roles), CONNECT revoked from PUBLIC on every database.
///
/// Both modes: passwords go to the server as SCRAM verifiers computed here;
/// every admin session has a statement and a lock timeout; a tenant's
/// connection limit is handed out only within the cluster's budget
/// (`max_connections` - `connection_reserve`).
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
  const PostgresDriverCounters& counters() const { return counters_; }

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
  /// The SCRAM-SHA-256 verifier of `password` (libpq, client side).
  std::string scram_verifier(const std::string& password, const std::string& role);
  /// Throws when `new_limit` does not fit the cluster's connection budget.
  void check_budget(pqxx::transaction_base& tx, const std::string& role, int old_limit,
                    int new_limit);
  /// database mode: grants inside the tenant's database (and the migration
  /// of a tenant made by an older version), once per database.
  void setup_inside(const std::string& db, const std::string& role);
  PostgresDriverOptions opts_;
  std::string admin_dsn_;  ///< opts_.admin_dsn with a connect_timeout
  std::string central_dsn_;
  std::pair<std::string, int> public_;  ///< host, port in tenants' connection strings
  std::atomic<bool> prepared_{false};   ///< cluster hardened (and central database made)
  std::mutex prepare_mu_;
  std::mutex mu_;
  std::map<std::string, std::vector<std::unique_ptr<Conn>>> idle_;  ///< by dsn
  std::mutex hash_mu_;
  /// libpq computes verifiers with a connection at hand (never used for I/O
  /// once open); one per driver.
  ::pg_conn* hasher_{nullptr};
  PostgresDriverCounters counters_;
};

}  // namespace supaplane::driver
