#include "supaplane/driver/postgres_driver.hpp"

#include <pqxx/pqxx>

#include "supaplane/core/types.hpp"
#include "supaplane/logging/logging.hpp"

namespace supaplane::driver {

namespace {
std::shared_ptr<spdlog::logger> log() {
  static auto l = logging::get("postgres_driver");
  return l;
}
// Refs are 20 lowercase letters (validated), so these names need no escaping
// beyond the quotes; validation is repeated here as a last line of defence.
std::string ident(const std::string& name) { return "\"" + name + "\""; }
}  // namespace

struct PostgresDriver::Conn {
  explicit Conn(const std::string& dsn) : c(dsn) {}
  pqxx::connection c;
};

std::string expand_ref(const std::string& tmpl, const std::string& ref) {
  std::string out = tmpl;
  for (auto at = out.find("{ref}"); at != std::string::npos;
       at = out.find("{ref}", at + ref.size()))
    out.replace(at, 5, ref);
  return out;
}

PostgresDriver::PostgresDriver(PostgresDriverOptions opts) : opts_(std::move(opts)) {}

std::string PostgresDriver::gateway_url(const std::string& ref) const {
  return expand_ref(opts_.gateway_url_template, ref);
}
PostgresDriver::~PostgresDriver() = default;

template <typename F>
Status PostgresDriver::run(const char* what, const std::string& ref, F&& f) {
  if (!TenantRef::valid(ref)) return make_error(errc::invalid_argument, "bad tenant ref", "ref");
  std::unique_ptr<Conn> conn;
  {
    std::lock_guard lk(mu_);
    if (!idle_.empty()) {
      conn = std::move(idle_.back());
      idle_.pop_back();
    }
  }
  try {
    if (!conn || !conn->c.is_open()) conn = std::make_unique<Conn>(opts_.admin_dsn);
    // DDL such as CREATE DATABASE cannot run in a transaction block.
    {
      pqxx::nontransaction tx(conn->c);
      f(tx);
    }
    std::lock_guard lk(mu_);
    if (idle_.size() < 8) idle_.push_back(std::move(conn));
    return Status::Ok();
  } catch (const pqxx::broken_connection&) {
    log()->warn("{} ref={}: tenant database cluster unreachable", what, ref);
    return make_error(errc::unavailable,
                      std::string(what) + ": tenant database cluster unreachable");
  } catch (const pqxx::sql_error& e) {
    // The statement may carry a password: log the SQLSTATE only.
    log()->error("{} ref={}: SQL error {}", what, ref, e.sqlstate());
    return make_error(errc::unavailable, std::string(what) + ": SQL error " + e.sqlstate());
  } catch (const std::exception& e) {
    log()->error("{} ref={}: {}", what, ref, e.what());
    return make_error(errc::unavailable, std::string(what) + ": driver error");
  }
}

Status PostgresDriver::ensure(const StackRequest& r, bool accept) {
  return run(accept ? "provision" : "pause", r.ref, [&](pqxx::nontransaction& tx) {
    const std::string name = role_name(r.ref);
    const std::string db = database_name(r.ref);
    const std::string limit = std::to_string(r.connection_limit);
    if (!hardened_.load()) {
      // A fresh cluster lets PUBLIC connect to every database (postgres,
      // template1, a platform database): tenant roles must reach only their
      // own. Owners and superusers keep their access.
      tx.exec(
          "DO $$ DECLARE d record; BEGIN "
          "FOR d IN SELECT datname FROM pg_database WHERE datname NOT LIKE 't\\_%' "
          "AND datname <> 'template0' LOOP "
          "EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', d.datname); "
          "END LOOP; END $$");
      hardened_ = true;
    }
    // The Supabase roles are cluster-wide; each tenant's login role may use them.
    tx.exec(
        "DO $$ BEGIN "
        "IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN CREATE ROLE anon "
        "NOLOGIN; END IF; "
        "IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN CREATE ROLE "
        "authenticated NOLOGIN; END IF; "
        "IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN CREATE ROLE "
        "service_role NOLOGIN BYPASSRLS; END IF; "
        "EXCEPTION WHEN duplicate_object THEN NULL; END $$");
    if (tx.exec_params("SELECT 1 FROM pg_roles WHERE rolname = $1", name).empty())
      tx.exec("CREATE ROLE " + ident(name) + " NOLOGIN");
    tx.exec("ALTER ROLE " + ident(name) + (accept ? " LOGIN" : " NOLOGIN") +
            " NOSUPERUSER NOCREATEDB NOCREATEROLE CONNECTION LIMIT " + limit + " PASSWORD " +
            tx.quote(r.db_password));
    tx.exec("GRANT anon, authenticated, service_role TO " + ident(name));
    if (tx.exec_params("SELECT 1 FROM pg_database WHERE datname = $1", db).empty())
      tx.exec("CREATE DATABASE " + ident(db) + " OWNER " + ident(name));
    tx.exec("REVOKE ALL ON DATABASE " + ident(db) + " FROM PUBLIC");
    tx.exec("GRANT CONNECT, TEMPORARY ON DATABASE " + ident(db) + " TO " + ident(name));
    tx.exec("ALTER DATABASE " + ident(db) + " WITH ALLOW_CONNECTIONS " +
            (accept ? "true" : "false") + " CONNECTION LIMIT " + limit);
    if (!accept || r.end_sessions)
      tx.exec_params(
          "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
          "WHERE (datname = $1 OR usename = $2) AND pid <> pg_backend_pid()",
          db, name);
  });
}

Status PostgresDriver::provision(const StackRequest& r) { return ensure(r, true); }
Status PostgresDriver::pause(const StackRequest& r) { return ensure(r, false); }
Status PostgresDriver::resume(const StackRequest& r) { return ensure(r, true); }

Status PostgresDriver::remove(const std::string& ref) {
  return run("remove", ref, [&](pqxx::nontransaction& tx) {
    const std::string db = database_name(ref);
    const std::string name = role_name(ref);
    tx.exec("DROP DATABASE IF EXISTS " + ident(db) + " WITH (FORCE)");
    tx.exec_params(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1 AND pid <> "
        "pg_backend_pid()",
        name);
    tx.exec("DROP ROLE IF EXISTS " + ident(name));
  });
}

Result<StackStatus> PostgresDriver::observe(const std::string& ref) {
  StackStatus st;
  auto s = run("observe", ref, [&](pqxx::nontransaction& tx) {
    auto res = tx.exec_params(
        "SELECT d.datallowconn, coalesce(r.rolcanlogin, false) FROM pg_database d "
        "LEFT JOIN pg_roles r ON r.rolname = $2 WHERE d.datname = $1",
        database_name(ref), role_name(ref));
    if (res.empty()) return;
    st.exists = true;
    st.accepting_connections = res[0][0].as<bool>() && res[0][1].as<bool>();
  });
  if (!s) return s.error();
  return st;
}

}  // namespace supaplane::driver
