#include "supaplane/driver/postgres_driver.hpp"

#include <libpq-fe.h>

#include <pqxx/pqxx>
#include <stdexcept>

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

/// Each tenant's own API roles (never the cluster-wide Supabase roles: every
/// tenant would reach what any tenant grants them).
constexpr const char* kScopedSuffixes[] = {"_anon", "_authenticated", "_service_role"};

/// The cluster's connection budget cannot cover a tenant's limit: the
/// converge's transaction rolls back (nothing created) and the tenant fails.
struct BudgetExceeded : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Marks a tenant database whose inside the driver has set up (database
/// mode); a database without it (new, or made by an older version) gets
/// `setup_inside` at its next converge.
constexpr const char* kLayoutComment = "supaplane tenant database, layout 2";

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

/// The connection limit `role` holds now: 0 for a role still to be made.
int current_limit(pqxx::transaction_base& tx, const std::string& role) {
  const auto res = tx.exec_params("SELECT rolconnlimit FROM pg_roles WHERE rolname = $1", role);
  return res.empty() ? 0 : res[0][0].as<int>();
}

/// SQL for the login role `name` and its scoped API roles (created when
/// missing, granted to it): LOGIN only while accepting, the password as a
/// SCRAM verifier (the server never sees the password itself, not even in a
/// statement it logs).
std::string roles_sql(pqxx::transaction_base& tx, const std::string& name,
                      const std::string& verifier, int limit, bool accept) {
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
         std::to_string(limit) + " PASSWORD " + tx.quote(verifier) + ";\n";
  sql += "GRANT " + scoped + " TO " + login + ";\n";
  return sql;
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
      admin_dsn_(pg::with_connect_timeout(opts_.admin_dsn, opts_.connect_timeout_s)),
      central_dsn_(pg::with_dbname(admin_dsn_, opts_.central_database)),
      public_(public_endpoint(opts_.admin_dsn, opts_.public_host, opts_.public_port)) {}
PostgresDriver::~PostgresDriver() {
  if (hasher_) PQfinish(hasher_);
}

std::string PostgresDriver::scram_verifier(const std::string& password, const std::string& role) {
  std::lock_guard lk(hash_mu_);
  if (!hasher_ || PQstatus(hasher_) != CONNECTION_OK) {
    if (hasher_) PQfinish(hasher_);
    hasher_ = PQconnectdb(admin_dsn_.c_str());
    if (PQstatus(hasher_) != CONNECTION_OK) {
      PQfinish(hasher_);
      hasher_ = nullptr;
      throw pqxx::broken_connection("cannot connect");
    }
  }
  // With the algorithm named, libpq asks the server nothing: a random salt
  // and 4096 iterations, computed here.
  char* v = PQencryptPasswordConn(hasher_, password.c_str(), role.c_str(), "scram-sha-256");
  if (!v) throw std::runtime_error("could not compute a SCRAM verifier (out of memory?)");
  std::string out(v);
  PQfreemem(v);
  return out;
}

void PostgresDriver::check_budget(pqxx::transaction_base& tx, const std::string& role,
                                  int old_limit, int new_limit) {
  // Lowering or keeping a limit always fits: an existing tenant's converge
  // (pause, resync) never fails because the budget shrank under it.
  if (new_limit <= old_limit) return;
  // Taken after the tenant's own rows are locked (its ALTER ROLE ran first),
  // so a tenant whose rows are held never sits on the lock others need.
  tx.exec(kSerializeSql);
  const auto row = tx.exec_params(
      "SELECT current_setting('max_connections')::int, "
      "coalesce(sum(rolconnlimit) FILTER (WHERE rolconnlimit > 0), 0)::bigint "
      "FROM pg_roles WHERE rolname ~ '^t_[a-z]{20}$' AND rolname <> $1",
      role)[0];
  const long max_conn = row[0].as<long>();
  const long others = row[1].as<long>();
  const long budget = max_conn - opts_.connection_reserve;
  counters_.budget = budget;
  counters_.promised = others + new_limit;
  if (others + new_limit > budget)
    throw BudgetExceeded(
        "connection budget exceeded: a limit of " + std::to_string(new_limit) + " on top of the " +
        std::to_string(others) + " promised to other tenants would exceed max_connections " +
        std::to_string(max_conn) + " minus the reserve of " +
        std::to_string(opts_.connection_reserve) + " (" + std::to_string(budget) + ")");
}

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
    if (!conn || !conn->c.is_open()) {
      conn = std::make_unique<Conn>(dsn);
      // Kept by libpqxx across its reconnects. 0 = no limit.
      conn->c.set_variable("statement_timeout", std::to_string(opts_.statement_timeout_ms));
      conn->c.set_variable("lock_timeout", std::to_string(opts_.lock_timeout_ms));
    }
    f(conn->c);
    std::lock_guard lk(mu_);
    auto& idle = idle_[dsn];
    if (idle.size() < 8) idle.push_back(std::move(conn));
    return Status::Ok();
  } catch (const BudgetExceeded& e) {
    counters_.budget_refusals++;
    log()->error("{} ref={}: {}", what, ref, e.what());
    return make_error(errc::failed_precondition, std::string(what) + ": " + e.what());
  } catch (const pqxx::broken_connection&) {
    log()->warn("{} ref={}: tenant database cluster unreachable", what, ref);
    return make_error(errc::unavailable,
                      std::string(what) + ": tenant database cluster unreachable");
  } catch (const pqxx::sql_error& e) {
    // The server's message, never the statement (it may carry a password);
    // libpqxx 6 leaves sqlstate() empty for some errors.
    std::string msg = e.what();
    msg = msg.substr(0, msg.find('\n'));
    if (e.sqlstate() == "55P03" || e.sqlstate() == "57014") {
      // Something held a lock this tenant needs, or a statement hung: this
      // converge gives up (and is retried); other tenants go on meanwhile.
      counters_.timeouts++;
      const bool lock = e.sqlstate() == "55P03";
      const std::string reason = lock ? "timed out waiting for a lock (lock_timeout " +
                                            std::to_string(opts_.lock_timeout_ms) + " ms)"
                                      : "statement timed out or was canceled (statement_timeout " +
                                            std::to_string(opts_.statement_timeout_ms) + " ms)";
      log()->warn("{} ref={}: {}: {}", what, ref, reason, msg);
      return make_error(errc::unavailable, std::string(what) + ": " + reason);
    }
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
  auto st = run(what, ref, admin_dsn_, [&](pqxx::connection& c) {
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
  return run(accept ? "provision" : "pause", r.ref, admin_dsn_, [&](pqxx::connection& c) {
    const std::string name = role_name(r.ref);
    const std::string db = database_name(r.ref);
    const std::string verifier = scram_verifier(r.db_password, name);
    pqxx::result found;
    {
      pqxx::nontransaction q(c);
      found = q.exec_params(
          "SELECT pg_get_userbyid(datdba), coalesce(shobj_description(oid, 'pg_database'), '') "
          "FROM pg_database WHERE datname = $1",
          db);
    }
    // A new database, one made by an older version, or one whose setup was
    // interrupted: set up (and migrated) in full; else only what a converge
    // may change.
    const bool setup = found.empty() || found[0][1].as<std::string>() != kLayoutComment;
    {
      // Roles and the budget in one transaction: a refused budget leaves
      // nothing behind (the database comes after the commit).
      pqxx::work tx(c);
      const int old_limit = current_limit(tx, name);
      std::string sql = roles_sql(tx, name, verifier, r.connection_limit, accept);
      // Tenants made by an older version were members of the cluster-wide
      // Supabase roles: no longer.
      if (setup)
        sql +=
            "DO $$ DECLARE g text; BEGIN FOR g IN SELECT b.rolname FROM pg_auth_members m "
            "JOIN pg_roles b ON b.oid = m.roleid JOIN pg_roles u ON u.oid = m.member "
            "WHERE u.rolname = " +
            tx.quote(name) +
            " AND b.rolname IN ('anon', 'authenticated', 'service_role') LOOP "
            "EXECUTE format('REVOKE %I FROM %I', g, " +
            tx.quote(name) + "); END LOOP; END $$;\n";
      tx.exec(sql);
      check_budget(tx, name, old_limit, r.connection_limit);
      tx.commit();
    }
    pqxx::nontransaction tx(c);  // CREATE DATABASE cannot run in a transaction block
    // The driver's role owns the database: an owner could grant CONNECT to
    // PUBLIC (every other tenant's role) and change its own connection limit.
    if (found.empty())
      tx.exec("CREATE DATABASE " + ident(tx, db));
    else if (found[0][0].as<std::string>() == name)
      tx.exec("ALTER DATABASE " + ident(tx, db) + " OWNER TO CURRENT_USER");
    // Exactly: the tenant's role, the owner; nobody else (PUBLIC included).
    // (Only the owner could grant more: an older version's tenant, cleaned
    // up by its setup.)
    const std::string others =
        "DO $$ DECLARE g text; BEGIN FOR g IN SELECT DISTINCT pg_get_userbyid(a.grantee) "
        "FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = " +
        tx.quote(db) + " AND a.grantee NOT IN (0, d.datdba) AND pg_get_userbyid(a.grantee) <> " +
        tx.quote(name) + " LOOP EXECUTE format('REVOKE ALL ON DATABASE %I FROM %I', " +
        tx.quote(db) + ", g); END LOOP; END $$;\n";
    tx.exec("REVOKE ALL ON DATABASE " + ident(tx, db) + " FROM PUBLIC;\n" +
            (setup ? others : std::string()) + "GRANT CONNECT, CREATE, TEMPORARY ON DATABASE " +
            ident(tx, db) + " TO " + ident(tx, name) + ";\n" + "ALTER DATABASE " + ident(tx, db) +
            " WITH ALLOW_CONNECTIONS " + (accept || setup ? "true" : "false") +
            " CONNECTION LIMIT " + std::to_string(r.connection_limit) + ";\n");
    if (setup) {
      // The driver connects even to a paused tenant's database here (its
      // role cannot log in meanwhile), then closes it again.
      setup_inside(db, name);
      tx.exec("COMMENT ON DATABASE " + ident(tx, db) + " IS " + tx.quote(kLayoutComment));
      if (!accept) tx.exec("ALTER DATABASE " + ident(tx, db) + " WITH ALLOW_CONNECTIONS false");
    }
    if (!accept || r.end_sessions) end_sessions(tx, name, db);
  });
}

void PostgresDriver::setup_inside(const std::string& db, const std::string& role) {
  // Once per database, so not pooled (one pool per tenant database would
  // keep thousands of idle sessions).
  pqxx::connection c(pg::with_dbname(admin_dsn_, db));
  c.set_variable("statement_timeout", std::to_string(opts_.statement_timeout_ms));
  c.set_variable("lock_timeout", std::to_string(opts_.lock_timeout_ms));
  pqxx::work tx(c);
  const std::string q = tx.quote(role);
  // `public` belongs to the database's owner (the driver's role): the tenant
  // creates its tables there as before.
  std::string sql =
      "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'public') THEN "
      "EXECUTE format('GRANT USAGE, CREATE ON SCHEMA public TO %I', " +
      q + "); END IF; END $$;\n";
  // A tenant made by an older version granted to the cluster-wide Supabase
  // roles: the same privileges go to its own API roles (t_<ref>_anon, ...).
  const std::string shared = "g.rolname IN ('anon', 'authenticated', 'service_role')";
  const std::string to = "format('%I', " + q + " || '_' || g.rolname)";
  sql +=
      "DO $$ DECLARE s text; BEGIN FOR s IN "
      "SELECT format('GRANT %s ON %s %s TO ', a.privilege_type, CASE c.relkind WHEN 'S' THEN "
      "'SEQUENCE' ELSE 'TABLE' END, c.oid::regclass) || " +
      to +
      " FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a JOIN pg_roles g ON g.oid = "
      "a.grantee WHERE " +
      shared +
      " UNION ALL "
      "SELECT format('GRANT %s ON SCHEMA %I TO ', a.privilege_type, n.nspname) || " +
      to +
      " FROM pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) a JOIN pg_roles g ON "
      "g.oid = a.grantee WHERE " +
      shared +
      " UNION ALL "
      "SELECT format('GRANT EXECUTE ON ROUTINE %s TO ', p.oid::regprocedure) || " +
      to +
      " FROM pg_proc p CROSS JOIN LATERAL aclexplode(p.proacl) a JOIN pg_roles g ON g.oid = "
      "a.grantee WHERE " +
      shared + " LOOP EXECUTE s; END LOOP; END $$;\n";
  tx.exec(sql);
  tx.commit();
}

Status PostgresDriver::ensure_schema(const StackRequest& r, bool accept) {
  return run(accept ? "provision" : "pause", r.ref, central_dsn_, [&](pqxx::connection& c) {
    const std::string name = role_name(r.ref);
    const std::string verifier = scram_verifier(r.db_password, name);
    {
      // One transaction, sent as few batches: a few hundred microseconds of
      // round trips instead of twenty.
      pqxx::work tx(c);
      const int old_limit = current_limit(tx, name);
      const std::string schema = ident(tx, schema_name(r.ref));
      const std::string login = ident(tx, name);
      std::string scoped;
      for (const char* suffix : kScopedSuffixes)
        scoped += (scoped.empty() ? "" : ", ") + ident(tx, name + suffix);
      std::string sql = roles_sql(tx, name, verifier, r.connection_limit, accept);
      sql += "GRANT " + scoped + " TO " + ident(tx, opts_.authenticator_role) + ";\n";
      sql += "CREATE SCHEMA IF NOT EXISTS " + schema + " AUTHORIZATION " + login + ";\n";
      sql += "GRANT USAGE ON SCHEMA " + schema + " TO " + scoped + ";\n";
      for (const char* kind : {"TABLES", "SEQUENCES", "FUNCTIONS"})
        sql += "ALTER DEFAULT PRIVILEGES FOR ROLE " + login + " IN SCHEMA " + schema +
               " GRANT ALL ON " + std::string(kind) + " TO " + ident(tx, name + "_service_role") +
               ";\n";
      sql += "ALTER ROLE " + login + " IN DATABASE " + ident(tx, opts_.central_database) +
             " SET search_path = " + schema + ";\n";
      tx.exec(sql);
      check_budget(tx, name, old_limit, r.connection_limit);
      tx.exec(std::string(kSerializeSql) + "GRANT CONNECT, TEMPORARY ON DATABASE " +
              ident(tx, opts_.central_database) + " TO " + login + ";\n" +
              exposure_sql(tx, opts_.authenticator_role));
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
  return run("remove", ref, admin_dsn_, [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    const std::string db = database_name(ref);
    const std::string name = role_name(ref);
    tx.exec("DROP DATABASE IF EXISTS " + ident(tx, db) + " WITH (FORCE)");
    end_sessions(tx, name, db);
    tx.exec("DROP ROLE IF EXISTS " + ident(tx, name));
    for (const char* suffix : kScopedSuffixes)
      tx.exec("DROP ROLE IF EXISTS " + ident(tx, name + suffix));
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
  bool old_layout = false;
  const bool schema_mode = opts_.mode == PostgresMode::schema;
  auto s = run("observe", ref, schema_mode ? central_dsn_ : admin_dsn_, [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    const auto res = schema_mode
                         ? tx.exec_params(
                               "SELECT true, coalesce(r.rolcanlogin, false) FROM pg_namespace n "
                               "LEFT JOIN pg_roles r ON r.rolname = $2 WHERE n.nspname = $1",
                               schema_name(ref), role_name(ref))
                         : tx.exec_params(
                               "SELECT d.datallowconn, coalesce(r.rolcanlogin, false), "
                               "coalesce(shobj_description(d.oid, 'pg_database'), '') <> $3 "
                               "FROM pg_database d LEFT JOIN pg_roles r ON r.rolname = $2 WHERE "
                               "d.datname = $1",
                               database_name(ref), role_name(ref), std::string(kLayoutComment));
    if (res.empty()) return;
    st.exists = true;
    st.accepting_connections = res[0][0].as<bool>() && res[0][1].as<bool>();
    if (!schema_mode) old_layout = res[0][2].as<bool>();
  });
  if (!s) return s.error();
  if (!st.exists)
    st.drift = "stack missing";
  else if (want_running && !st.accepting_connections)
    st.drift = "stack refuses connections while ACTIVE";
  else if (!want_running && st.accepting_connections)
    st.drift = "stack accepts connections while PAUSED";
  else if (old_layout)
    // Made by an earlier version (or its setup was interrupted): the repair
    // (a converge) migrates it, so the resync reaches settled tenants too.
    st.drift = "tenant database on an older layout";
  if (want_running)
    st.health.push_back({"db",
                         st.accepting_connections ? v1::SERVICE_HEALTH_STATUS_ACTIVE_HEALTHY
                                                  : v1::SERVICE_HEALTH_STATUS_UNHEALTHY,
                         st.accepting_connections ? "" : "refuses connections"});
  return st;
}

}  // namespace supaplane::driver
