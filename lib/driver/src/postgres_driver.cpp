#include "supaplane/driver/postgres_driver.hpp"

#include <libpq-fe.h>

#include <pqxx/pqxx>

#include "supaplane/core/types.hpp"
#include "supaplane/logging/logging.hpp"
#include "supaplane/pg/pool.hpp"

namespace supaplane::driver {

namespace {
std::shared_ptr<spdlog::logger> log() {
  static auto l = logging::get("postgres_driver");
  return l;
}
// Refs are 20 lowercase letters (validated before any SQL), and the other
// names are our own configuration; quoting is all the escaping they need.
std::string ident(pqxx::transaction_base& tx, const std::string& name) {
  return tx.quote_name(name);
}

constexpr const char* kScopedSuffixes[] = {"_anon", "_authenticated",
                                           "_service_role"};  // schema mode

bool role_exists(pqxx::transaction_base& tx, const std::string& role) {
  return !tx.exec_params("SELECT 1 FROM pg_roles WHERE rolname = $1", role).empty();
}

void end_sessions(pqxx::transaction_base& tx, const std::string& role, const std::string& db) {
  tx.exec_params(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
      "WHERE (usename = $1 OR datname = $2) AND pid <> pg_backend_pid()",
      role, db);
}

/// Connection trouble, a server shutting down, resources, serialization:
/// the platform's weather, retried; anything else is the tenant's failure.
bool transient_sqlstate(const std::string& state) {
  const std::string cls = state.substr(0, 2);
  return cls == "08" || cls == "57" || cls == "53" || cls == "40" || state == "55P03";
}

/// The login role with the request's password; LOGIN only while accepting.
void ensure_login_role(pqxx::transaction_base& tx, const StackRequest& r, const std::string& role,
                       bool accept) {
  if (!role_exists(tx, role)) tx.exec("CREATE ROLE " + ident(tx, role) + " NOLOGIN");
  tx.exec("ALTER ROLE " + ident(tx, role) + (accept ? " LOGIN" : " NOLOGIN") +
          " NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT " +
          std::to_string(r.connection_limit) + " PASSWORD " + tx.quote(r.db_password));
}

/// PostgREST serves the schemas of running tenants (whose owner may log in):
/// SQL that recomputes the list, stores it on the authenticator role and
/// tells PostgREST (NOTIFY is delivered at commit). Run inside a transaction,
/// after taking the advisory lock of `serialize_sql()`: concurrent changes to
/// one catalog row (the authenticator's settings, the central database's ACL)
/// fail with "tuple concurrently updated".
std::string exposure_sql(pqxx::transaction_base& tx, const std::string& authenticator) {
  return "DO $$ DECLARE l text; BEGIN "
         "SELECT coalesce(string_agg(n.nspname, ',' ORDER BY n.nspname), '') INTO l "
         "FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner "
         "WHERE n.nspname LIKE 'proj\\_%' AND r.rolcanlogin; "
         "IF l = '' THEN EXECUTE format('ALTER ROLE %I RESET pgrst.db_schemas', " +
         tx.quote(authenticator) +
         "); "
         "ELSE EXECUTE format('ALTER ROLE %I SET pgrst.db_schemas = %L', " +
         tx.quote(authenticator) +
         ", l); END IF; END $$;\n"
         "NOTIFY pgrst, 'reload config';\n";
}
constexpr const char* kSerializeSql =
    "SELECT pg_advisory_xact_lock(hashtext('supaplane.central.catalog'));\n";
}  // namespace

Result<PostgresMode> parse_postgres_mode(const std::string& s) {
  if (s == "database") return PostgresMode::database;
  if (s == "schema") return PostgresMode::schema;
  return make_error(errc::invalid_argument,
                    "tenant database mode must be 'database' or 'schema', not '" + s + "'",
                    "tenant_db_mode");
}

std::string expand_ref(const std::string& tmpl, const std::string& ref) {
  std::string out = tmpl;
  for (auto at = out.find("{ref}"); at != std::string::npos;
       at = out.find("{ref}", at + ref.size()))
    out.replace(at, 5, ref);
  return out;
}

struct PostgresDriver::Conn {
  explicit Conn(const std::string& dsn) : c(dsn) {}
  pqxx::connection c;
};

PostgresDriver::PostgresDriver(PostgresDriverOptions opts)
    : opts_(std::move(opts)),
      central_dsn_(pg::with_dbname(opts_.admin_dsn, opts_.central_database)),
      public_(public_endpoint(opts_.admin_dsn, opts_.public_host, opts_.public_port)) {}
PostgresDriver::~PostgresDriver() = default;

std::pair<std::string, int> public_endpoint(const std::string& admin_dsn, std::string host,
                                            int port) {
  // What the admin connection names, unless told otherwise: a unix socket
  // directory is no address for a client elsewhere, so it means loopback.
  std::string dsn_host, dsn_port;
  if (PQconninfoOption* opts = PQconninfoParse(admin_dsn.c_str(), nullptr)) {
    for (auto* o = opts; o->keyword; ++o) {
      if (!o->val) continue;
      if (std::string_view(o->keyword) == "host") dsn_host = o->val;
      if (std::string_view(o->keyword) == "port") dsn_port = o->val;
    }
    PQconninfoFree(opts);
  }
  dsn_host = dsn_host.substr(0, dsn_host.find(','));  // the first of a host list
  dsn_port = dsn_port.substr(0, dsn_port.find(','));
  if (host.empty()) host = dsn_host.empty() || dsn_host[0] == '/' ? "127.0.0.1" : dsn_host;
  if (port <= 0) {
    port = 5432;
    if (!dsn_port.empty()) {
      try {
        port = std::stoi(dsn_port);
      } catch (const std::exception&) {
        port = 5432;  // libpq refuses such a DSN itself when connecting
      }
    }
  }
  return {host, port};
}

Endpoints PostgresDriver::endpoints(const std::string& ref) const {
  Endpoints e;
  e.gateway_url = expand_ref(opts_.gateway_url_template, ref);
  e.db_host = public_.first;
  e.db_port = public_.second;
  e.db_user = role_name(ref);
  if (opts_.mode == PostgresMode::schema) {
    e.db_name = opts_.central_database;
    e.db_schema = schema_name(ref);
  } else {
    e.db_name = database_name(ref);
    e.db_schema = "public";
  }
  return e;
}

template <typename F>
Status PostgresDriver::run(const char* what, const std::string& ref, const std::string& dsn,
                           F&& f) {
  if (!TenantRef::valid(ref)) return make_error(errc::invalid_argument, "bad tenant ref", "ref");
  std::unique_ptr<Conn> conn;
  {
    std::lock_guard lk(mu_);
    auto& idle = idle_[dsn];
    if (!idle.empty()) {
      conn = std::move(idle.back());
      idle.pop_back();
    }
  }
  try {
    if (!conn || !conn->c.is_open()) conn = std::make_unique<Conn>(dsn);
    f(conn->c);
    std::lock_guard lk(mu_);
    auto& idle = idle_[dsn];
    if (idle.size() < 8) idle.push_back(std::move(conn));
    return Status::Ok();
  } catch (const pqxx::broken_connection&) {
    log()->warn("{} ref={}: tenant database cluster unreachable", what, ref);
    return make_error(errc::unavailable,
                      std::string(what) + ": tenant database cluster unreachable");
  } catch (const pqxx::sql_error& e) {
    // The server's message, never the statement (it may carry a password);
    // libpqxx 6 leaves sqlstate() empty for some errors.
    std::string msg = e.what();
    msg = msg.substr(0, msg.find('\n'));
    log()->error("{} ref={}: SQL error {}: {}", what, ref, e.sqlstate(), msg);
    prepared_ = false;  // maybe the cluster changed under us: prepare it again
    const std::string reason =
        e.sqlstate().empty() ? "SQL error (see the provisioner log)" : "SQL error " + e.sqlstate();
    return make_error(transient_sqlstate(e.sqlstate()) ? errc::unavailable : errc::internal,
                      std::string(what) + ": " + reason);
  } catch (const std::exception& e) {
    log()->error("{} ref={}: {}", what, ref, e.what());
    return make_error(errc::unavailable, std::string(what) + ": driver error");
  }
}

Status PostgresDriver::prepare_cluster(const char* what, const std::string& ref) {
  if (prepared_.load()) return Status::Ok();
  std::lock_guard lk(prepare_mu_);
  if (prepared_.load()) return Status::Ok();
  const bool schema_mode = opts_.mode == PostgresMode::schema;
  auto st = run(what, ref, opts_.admin_dsn, [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);  // CREATE DATABASE cannot run in a transaction block
    if (schema_mode &&
        tx.exec_params("SELECT 1 FROM pg_database WHERE datname = $1", opts_.central_database)
            .empty())
      tx.exec("CREATE DATABASE " + ident(tx, opts_.central_database));
    // A fresh cluster lets PUBLIC connect to every database (postgres,
    // template1, a platform database, the central one): tenant roles must
    // reach only their own. Owners and superusers keep their access.
    tx.exec(
        "DO $$ DECLARE d record; BEGIN "
        "FOR d IN SELECT datname FROM pg_database WHERE datname NOT LIKE 't\\_%' "
        "AND datname <> 'template0' LOOP "
        "EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', d.datname); "
        "END LOOP; END $$");
    if (!schema_mode)
      // The Supabase roles are cluster-wide; each tenant's login role may use them.
      tx.exec(
          "DO $$ BEGIN "
          "IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN CREATE ROLE anon "
          "NOLOGIN; END IF; "
          "IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN CREATE "
          "ROLE authenticated NOLOGIN; END IF; "
          "IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN CREATE ROLE "
          "service_role NOLOGIN BYPASSRLS; END IF; "
          "EXCEPTION WHEN duplicate_object THEN NULL; END $$");
  });
  if (st && schema_mode)
    st = run(what, ref, central_dsn_, [&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      // Nothing shared in the central database: each tenant has its schema.
      tx.exec("REVOKE ALL ON SCHEMA public FROM PUBLIC");
      const std::string auth = opts_.authenticator_role;
      // PostgREST's login role; the operator gives it LOGIN and a password.
      if (!role_exists(tx, auth)) tx.exec("CREATE ROLE " + ident(tx, auth) + " NOINHERIT NOLOGIN");
      tx.exec("GRANT CONNECT ON DATABASE " + ident(tx, opts_.central_database) + " TO " +
              ident(tx, auth));
    });
  if (st) prepared_ = true;
  return st;
}

Status PostgresDriver::ensure(const StackRequest& r, bool accept) {
  const char* what = accept ? "provision" : "pause";
  if (!TenantRef::valid(r.ref)) return make_error(errc::invalid_argument, "bad tenant ref", "ref");
  if (auto st = prepare_cluster(what, r.ref); !st) return st;
  return opts_.mode == PostgresMode::schema ? ensure_schema(r, accept) : ensure_database(r, accept);
}

Status PostgresDriver::ensure_database(const StackRequest& r, bool accept) {
  return run(accept ? "provision" : "pause", r.ref, opts_.admin_dsn, [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);  // CREATE DATABASE cannot run in a transaction block
    const std::string name = role_name(r.ref);
    const std::string db = database_name(r.ref);
    const std::string limit = std::to_string(r.connection_limit);
    ensure_login_role(tx, r, name, accept);
    tx.exec("GRANT anon, authenticated, service_role TO " + ident(tx, name));
    if (tx.exec_params("SELECT 1 FROM pg_database WHERE datname = $1", db).empty())
      tx.exec("CREATE DATABASE " + ident(tx, db) + " OWNER " + ident(tx, name));
    tx.exec("REVOKE ALL ON DATABASE " + ident(tx, db) + " FROM PUBLIC");
    tx.exec("GRANT CONNECT, TEMPORARY ON DATABASE " + ident(tx, db) + " TO " + ident(tx, name));
    tx.exec("ALTER DATABASE " + ident(tx, db) + " WITH ALLOW_CONNECTIONS " +
            (accept ? "true" : "false") + " CONNECTION LIMIT " + limit);
    if (!accept || r.end_sessions) end_sessions(tx, name, db);
  });
}

Status PostgresDriver::ensure_schema(const StackRequest& r, bool accept) {
  return run(accept ? "provision" : "pause", r.ref, central_dsn_, [&](pqxx::connection& c) {
    const std::string name = role_name(r.ref);
    {
      // One transaction, sent as one batch: a few hundred microseconds of
      // round trips instead of twenty.
      pqxx::work tx(c);
      const std::string schema = ident(tx, schema_name(r.ref));
      const std::string login = ident(tx, name);
      std::string sql = "DO $$ BEGIN ";
      std::string scoped;
      for (const char* suffix : {"", "_anon", "_authenticated", "_service_role"}) {
        const std::string role = name + suffix;
        sql += "IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = " + tx.quote(role) +
               ") THEN CREATE ROLE " + ident(tx, role) + " NOLOGIN" +
               (std::string(suffix) == "_service_role" ? " BYPASSRLS" : "") + "; END IF; ";
        if (*suffix) scoped += (scoped.empty() ? "" : ", ") + ident(tx, role);
      }
      sql += "END $$;\n";
      sql += "ALTER ROLE " + login + (accept ? " LOGIN" : " NOLOGIN") +
             " NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT " +
             std::to_string(r.connection_limit) + " PASSWORD " + tx.quote(r.db_password) + ";\n";
      sql += "GRANT " + scoped + " TO " + login + ";\n";
      sql += "GRANT " + scoped + " TO " + ident(tx, opts_.authenticator_role) + ";\n";
      sql += "CREATE SCHEMA IF NOT EXISTS " + schema + " AUTHORIZATION " + login + ";\n";
      sql += "GRANT USAGE ON SCHEMA " + schema + " TO " + scoped + ";\n";
      for (const char* kind : {"TABLES", "SEQUENCES", "FUNCTIONS"})
        sql += "ALTER DEFAULT PRIVILEGES FOR ROLE " + login + " IN SCHEMA " + schema +
               " GRANT ALL ON " + std::string(kind) + " TO " + ident(tx, name + "_service_role") +
               ";\n";
      sql += "ALTER ROLE " + login + " IN DATABASE " + ident(tx, opts_.central_database) +
             " SET search_path = " + schema + ";\n";
      sql += kSerializeSql;
      sql += "GRANT CONNECT, TEMPORARY ON DATABASE " + ident(tx, opts_.central_database) + " TO " +
             login + ";\n";
      sql += exposure_sql(tx, opts_.authenticator_role);
      tx.exec(sql);
      tx.commit();
    }
    if (!accept || r.end_sessions) {
      pqxx::nontransaction tx(c);  // after the commit: no way back in meanwhile
      end_sessions(tx, name, "");
    }
  });
}

namespace {
/// A database that accepts connections is the whole stack: done at once.
Result<Progress> serving(Status st) {
  if (!st) return st.error();
  Progress p;
  p.done = true;
  p.health.push_back({"db", v1::SERVICE_HEALTH_STATUS_ACTIVE_HEALTHY, ""});
  return p;
}
}  // namespace

Result<Progress> PostgresDriver::provision(const StackRequest& r) {
  return serving(ensure(r, true));
}
Status PostgresDriver::pause(const StackRequest& r) { return ensure(r, false); }
Result<Progress> PostgresDriver::resume(const StackRequest& r) { return serving(ensure(r, true)); }

Status PostgresDriver::remove(const std::string& ref) {
  if (!TenantRef::valid(ref)) return make_error(errc::invalid_argument, "bad tenant ref", "ref");
  if (auto st = prepare_cluster("remove", ref); !st) return st;
  return opts_.mode == PostgresMode::schema ? remove_schema(ref) : remove_database(ref);
}

Status PostgresDriver::remove_database(const std::string& ref) {
  return run("remove", ref, opts_.admin_dsn, [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    const std::string db = database_name(ref);
    const std::string name = role_name(ref);
    tx.exec("DROP DATABASE IF EXISTS " + ident(tx, db) + " WITH (FORCE)");
    end_sessions(tx, name, db);
    tx.exec("DROP ROLE IF EXISTS " + ident(tx, name));
  });
}

Status PostgresDriver::remove_schema(const std::string& ref) {
  return run("remove", ref, central_dsn_, [&](pqxx::connection& c) {
    {
      pqxx::nontransaction tx(c);
      const std::string name = role_name(ref);
      if (role_exists(tx, name)) tx.exec("ALTER ROLE " + ident(tx, name) + " NOLOGIN");
      end_sessions(tx, name, "");
      tx.exec("DROP SCHEMA IF EXISTS " + ident(tx, schema_name(ref)) + " CASCADE");
      std::vector<std::string> roles{name};
      for (const char* suffix : kScopedSuffixes) roles.push_back(name + suffix);
      for (const auto& role : roles) {
        if (!role_exists(tx, role)) continue;
        // Privileges, default privileges and anything else it owns here.
        tx.exec("DROP OWNED BY " + ident(tx, role) + " CASCADE");
        tx.exec("DROP ROLE " + ident(tx, role));
      }
    }
    pqxx::work tx(c);
    tx.exec(std::string(kSerializeSql) + exposure_sql(tx, opts_.authenticator_role));
    tx.commit();
  });
}

Result<StackStatus> PostgresDriver::observe(const std::string& ref, bool want_running) {
  StackStatus st;
  const bool schema_mode = opts_.mode == PostgresMode::schema;
  auto s =
      run("observe", ref, schema_mode ? central_dsn_ : opts_.admin_dsn, [&](pqxx::connection& c) {
        pqxx::nontransaction tx(c);
        const auto res =
            schema_mode ? tx.exec_params(
                              "SELECT true, coalesce(r.rolcanlogin, false) FROM pg_namespace n "
                              "LEFT JOIN pg_roles r ON r.rolname = $2 WHERE n.nspname = $1",
                              schema_name(ref), role_name(ref))
                        : tx.exec_params(
                              "SELECT d.datallowconn, coalesce(r.rolcanlogin, false) FROM "
                              "pg_database d LEFT JOIN pg_roles r ON r.rolname = $2 WHERE "
                              "d.datname = $1",
                              database_name(ref), role_name(ref));
        if (res.empty()) return;
        st.exists = true;
        st.accepting_connections = res[0][0].as<bool>() && res[0][1].as<bool>();
      });
  if (!s) return s.error();
  if (!st.exists)
    st.drift = "stack missing";
  else if (want_running && !st.accepting_connections)
    st.drift = "stack refuses connections while ACTIVE";
  else if (!want_running && st.accepting_connections)
    st.drift = "stack accepts connections while PAUSED";
  if (want_running)
    st.health.push_back({"db",
                         st.accepting_connections ? v1::SERVICE_HEALTH_STATUS_ACTIVE_HEALTHY
                                                  : v1::SERVICE_HEALTH_STATUS_UNHEALTHY,
                         st.accepting_connections ? "" : "refuses connections"});
  return st;
}

}  // namespace supaplane::driver
