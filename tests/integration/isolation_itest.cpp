// Tenant isolation, in both modes of the postgres driver, against a real
// PostgreSQL that checks passwords over TCP: with tenant A's credentials one
// cannot reach, read, change or delete tenant B's data, see B's schema, or
// become another role; paused tenants cannot connect; deleted tenants leave
// nothing behind; rotated credentials stop working (and their sessions end).
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "eventually.hpp"
#include "servers.hpp"
#include "supaplane/driver/postgres_driver.hpp"

namespace {

using namespace supaplane;
using driver::PostgresDriver;
using driver::PostgresMode;

testenv::PostgresServer& pg() { return testenv::shared_postgres_with_passwords(); }

/// One libpq session; `exec` answers "" on success, else the server's error.
class Session {
 public:
  explicit Session(const std::string& dsn) : c_(PQconnectdb(dsn.c_str())) {}
  ~Session() { PQfinish(c_); }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  bool ok() const { return PQstatus(c_) == CONNECTION_OK; }
  std::string error() const { return PQerrorMessage(c_); }
  std::string exec(const std::string& sql) {
    PGresult* r = PQexec(c_, sql.c_str());
    const auto st = PQresultStatus(r);
    std::string err = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? "" : PQerrorMessage(c_);
    if (err.empty() && PQntuples(r) > 0 && PQnfields(r) > 0) last_ = PQgetvalue(r, 0, 0);
    PQclear(r);
    return err;
  }
  /// The first value of a query that must succeed.
  std::string value(const std::string& sql) {
    last_.clear();
    const std::string err = exec(sql);
    EXPECT_EQ(err, "") << sql;
    return last_;
  }
  int pid() { return std::stoi(value("SELECT pg_backend_pid()")); }
  /// Payloads of the notifications received so far on `channel`.
  std::vector<std::string> notifications(const std::string& channel) {
    std::vector<std::string> out;
    PQconsumeInput(c_);
    while (PGnotify* n = PQnotifies(c_)) {
      if (channel == n->relname) out.emplace_back(n->extra);
      PQfreemem(n);
    }
    return out;
  }

 private:
  PGconn* c_;
  std::string last_;
};

std::string admin(const std::string& db) { return pg().admin_dsn(db); }

class IsolationTest : public ::testing::TestWithParam<PostgresMode> {
 protected:
  IsolationTest() : driver_(options()) {}

  static driver::PostgresDriverOptions options() {
    driver::PostgresDriverOptions o;
    o.admin_dsn = pg().admin_dsn();
    o.mode = GetParam();
    o.central_database = "supabase";
    return o;
  }
  bool schema_mode() const { return GetParam() == PostgresMode::schema; }

  /// A fresh ref per call (20 lowercase letters), e.g. "isoldb" + tag + counter.
  std::string ref(char tag) const {
    static int n = 0;
    std::string out = std::string("iso") + (schema_mode() ? "s" : "d") + tag;
    for (int v = ++n; out.size() < 20; v /= 26) out += static_cast<char>('a' + v % 26);
    return out;
  }

  driver::StackRequest req(const std::string& r, const std::string& pw, bool end = false) {
    return {r, pw, 5, end};
  }
  /// Where a tenant's credentials lead: its database, or the central one.
  std::string dbname(const std::string& r) const { return driver_.endpoints(r).db_name; }
  std::string tenant_dsn(const std::string& r, const std::string& pw,
                         const std::string& db = "") const {
    return "host=127.0.0.1 port=" + std::to_string(pg().port()) + " user=t_" + r +
           " dbname=" + (db.empty() ? dbname(r) : db) + " password=" + pw + " connect_timeout=5";
  }
  /// Where tenant `r`'s tables live.
  std::string table(const std::string& r, const std::string& name) const {
    return schema_mode() ? "proj_" + r + "." + name : name;
  }
  /// Tenant `r`'s own API role (`anon`, `authenticated`, `service_role`).
  std::string scoped(const std::string& r, const std::string& role) const {
    return "t_" + r + "_" + role;
  }
  std::string pgrst_schemas() {
    Session s(admin("postgres"));
    return s.value(
        "SELECT coalesce((SELECT string_agg(c, ',') FROM pg_db_role_setting d JOIN pg_roles r ON "
        "r.oid = d.setrole, unnest(d.setconfig) c WHERE r.rolname = 'authenticator' AND c LIKE "
        "'pgrst.db_schemas=%'), '')");
  }

  PostgresDriver driver_;
};

TEST_P(IsolationTest, ATenantCannotReadWriteOrDeleteAnotherTenantsData) {
  const std::string a = ref('a'), b = ref('b');
  const std::string pa = "pw-a-0123456789", pb = "pw-b-0123456789";
  ASSERT_TRUE(driver_.provision(req(a, pa)).ok());
  ASSERT_TRUE(driver_.provision(req(b, pb)).ok());

  // B sets up its data the way a Supabase project does: readable by its API roles.
  Session sb(tenant_dsn(b, pb));
  ASSERT_TRUE(sb.ok()) << sb.error();
  ASSERT_EQ(sb.exec("CREATE TABLE " + table(b, "secrets") + " (v text)"), "");
  ASSERT_EQ(sb.exec("INSERT INTO " + table(b, "secrets") + " VALUES ('b-secret')"), "");
  ASSERT_EQ(sb.exec("GRANT SELECT, INSERT, DELETE ON " + table(b, "secrets") + " TO " +
                    scoped(b, "anon") + ", " + scoped(b, "authenticated")),
            "");

  // A with its own credentials: its own space works.
  Session sa(tenant_dsn(a, pa));
  ASSERT_TRUE(sa.ok()) << sa.error();
  EXPECT_EQ(sa.exec("CREATE TABLE " + table(a, "mine") + " (v int)"), "");
  EXPECT_EQ(sa.exec("INSERT INTO " + table(a, "mine") + " VALUES (1)"), "");
  EXPECT_EQ(sa.value("SELECT count(*) FROM " + table(a, "mine")), "1");

  // ...but nothing of B's. Database mode: B's database is unreachable.
  EXPECT_FALSE(Session(tenant_dsn(a, pa, "t_" + b)).ok());
  EXPECT_FALSE(Session(tenant_dsn(a, pa, "postgres")).ok());
  EXPECT_FALSE(Session(tenant_dsn(a, pa, "template1")).ok());
  // Schema mode: same database, every path to B's schema refused.
  const std::string theirs = "proj_" + b + ".secrets";
  if (schema_mode()) {
    EXPECT_NE(sa.exec("SELECT * FROM " + theirs), "");
    EXPECT_NE(sa.exec("INSERT INTO " + theirs + " VALUES ('a-was-here')"), "");
    EXPECT_NE(sa.exec("DELETE FROM " + theirs), "");
    EXPECT_NE(sa.exec("UPDATE " + theirs + " SET v = 'x'"), "");
    EXPECT_NE(sa.exec("DROP TABLE " + theirs), "");
    EXPECT_NE(sa.exec("TRUNCATE " + theirs), "");
    EXPECT_NE(sa.exec("CREATE TABLE proj_" + b + ".planted (v int)"), "");
    EXPECT_NE(sa.exec("DROP SCHEMA proj_" + b + " CASCADE"), "");
    EXPECT_NE(sa.exec("CREATE TABLE public.shared (v int)"), "");  // nothing shared
    // B's schema is not visible to A.
    EXPECT_EQ(sa.value("SELECT count(*) FROM information_schema.schemata WHERE schema_name = "
                       "'proj_" +
                       b + "'"),
              "0");
    EXPECT_EQ(sa.value("SELECT count(*) FROM information_schema.tables WHERE table_schema = "
                       "'proj_" +
                       b + "'"),
              "0");
    EXPECT_EQ(sa.value("SELECT has_schema_privilege('proj_" + b + "', 'USAGE')"), "f");
  }

  // No way into another role: not B's, not B's API roles, not a superuser.
  for (const std::string& role : {"t_" + b, std::string("postgres"), scoped(b, "anon")}) {
    EXPECT_NE(sa.exec("SET ROLE \"" + role + "\""), "") << role;
    EXPECT_NE(sa.exec("SET SESSION AUTHORIZATION \"" + role + "\""), "") << role;
  }
  // Each tenant has its own API roles, in both modes: B's are out of A's reach.
  EXPECT_NE(sa.exec("SET ROLE \"t_" + b + "_service_role\""), "");
  // Its own scoped role works, and still reaches nothing of B's.
  EXPECT_EQ(sa.exec("SET ROLE \"t_" + a + "_service_role\""), "");
  if (schema_mode()) {
    EXPECT_NE(sa.exec("SELECT * FROM " + theirs), "");
  }
  EXPECT_EQ(sa.exec("RESET ROLE"), "");
  if (schema_mode()) {
    EXPECT_NE(sa.exec("ALTER ROLE authenticator SET pgrst.db_schemas = 'proj_" + b + "'"), "");
  }
  EXPECT_NE(sa.exec("CREATE ROLE evil LOGIN PASSWORD 'evil'"), "");
  EXPECT_NE(sa.exec("ALTER ROLE \"t_" + a + "\" SUPERUSER"), "");
  EXPECT_NE(sa.exec("ALTER ROLE \"t_" + a + "\" BYPASSRLS"), "");
  EXPECT_NE(sa.exec("ALTER ROLE \"t_" + b + "\" PASSWORD 'taken-over'"), "");
  EXPECT_NE(sa.exec("GRANT \"t_" + b + "\" TO \"t_" + a + "\""), "");
  EXPECT_NE(sa.exec("CREATE DATABASE stolen"), "");
  EXPECT_NE(sa.exec("COPY (SELECT 1) TO PROGRAM 'true'"), "");
  // Cannot end B's sessions either.
  const int b_pid = sb.pid();
  EXPECT_NE(sa.exec("SELECT pg_terminate_backend(" + std::to_string(b_pid) + ")"), "");
  EXPECT_EQ(sb.value("SELECT 1"), "1");

  // B's data is exactly what B left.
  EXPECT_EQ(sb.value("SELECT string_agg(v, ',') FROM " + table(b, "secrets")), "b-secret");
  ASSERT_TRUE(driver_.remove(a).ok());
  ASSERT_TRUE(driver_.remove(b).ok());
}

TEST_P(IsolationTest, PausedTenantsCannotConnectAndAreNotServed) {
  const std::string a = ref('a'), b = ref('b');
  ASSERT_TRUE(driver_.provision(req(a, "pw-a-0123456789")).ok());
  ASSERT_TRUE(driver_.provision(req(b, "pw-b-0123456789")).ok());
  Session open(tenant_dsn(a, "pw-a-0123456789"));
  ASSERT_TRUE(open.ok()) << open.error();
  if (schema_mode()) {
    const std::string exposed = pgrst_schemas();
    EXPECT_NE(exposed.find("proj_" + a), std::string::npos) << exposed;
    EXPECT_NE(exposed.find("proj_" + b), std::string::npos) << exposed;
  }
  // PostgREST is told to reload its config when the exposed schemas change.
  Session listener(admin(schema_mode() ? "supabase" : "postgres"));
  ASSERT_EQ(listener.exec("LISTEN pgrst"), "");

  ASSERT_TRUE(driver_.pause(req(a, "pw-a-0123456789")).ok());
  EXPECT_FALSE(Session(tenant_dsn(a, "pw-a-0123456789")).ok());
  EXPECT_NE(open.exec("SELECT 1"), "") << "a session survived the pause";
  EXPECT_TRUE(Session(tenant_dsn(b, "pw-b-0123456789")).ok()) << "pausing A touched B";
  if (schema_mode()) {
    const std::string exposed = pgrst_schemas();
    EXPECT_EQ(exposed.find("proj_" + a), std::string::npos) << exposed;
    EXPECT_NE(exposed.find("proj_" + b), std::string::npos) << exposed;
    EXPECT_EQ(listener.exec("SELECT 1"), "");  // a round trip: pending notifications arrive
    const auto got = listener.notifications("pgrst");
    EXPECT_NE(std::find(got.begin(), got.end(), "reload config"), got.end())
        << "PostgREST was not told to reload";
  }
  ASSERT_TRUE(driver_.resume(req(a, "pw-a-0123456789")).ok());
  EXPECT_TRUE(Session(tenant_dsn(a, "pw-a-0123456789")).ok());
  if (schema_mode()) {
    EXPECT_NE(pgrst_schemas().find("proj_" + a), std::string::npos);
  }
  ASSERT_TRUE(driver_.remove(a).ok());
  ASSERT_TRUE(driver_.remove(b).ok());
}

TEST_P(IsolationTest, ADeletedTenantLeavesNothingBehind) {
  const std::string a = ref('a');
  ASSERT_TRUE(driver_.provision(req(a, "pw-a-0123456789")).ok());
  {
    Session s(tenant_dsn(a, "pw-a-0123456789"));
    ASSERT_TRUE(s.ok()) << s.error();
    EXPECT_EQ(s.exec("CREATE TABLE " + table(a, "data") + " (v int)"), "");
    EXPECT_EQ(s.exec("CREATE FUNCTION " + table(a, "f") +
                     "() RETURNS int LANGUAGE sql AS "
                     "'SELECT 1'"),
              "");
  }
  Session still_open(tenant_dsn(a, "pw-a-0123456789"));
  ASSERT_TRUE(still_open.ok());
  ASSERT_TRUE(driver_.remove(a).ok());
  ASSERT_TRUE(driver_.remove(a).ok());  // twice = once
  EXPECT_FALSE(Session(tenant_dsn(a, "pw-a-0123456789")).ok());
  EXPECT_NE(still_open.exec("SELECT 1"), "");
  Session adm(admin("postgres"));
  EXPECT_EQ(adm.value("SELECT count(*) FROM pg_roles WHERE rolname LIKE 't\\_" + a + "%'"), "0");
  EXPECT_EQ(adm.value("SELECT count(*) FROM pg_database WHERE datname = 't_" + a + "'"), "0");
  if (schema_mode()) {
    Session central(admin("supabase"));
    EXPECT_EQ(central.value("SELECT count(*) FROM pg_namespace WHERE nspname = 'proj_" + a + "'"),
              "0");
    EXPECT_EQ(pgrst_schemas().find("proj_" + a), std::string::npos);
  }
  EXPECT_FALSE(driver_.observe(a, true)->exists);
}

TEST_P(IsolationTest, RotatedCredentialsStopWorking) {
  const std::string a = ref('a');
  ASSERT_TRUE(driver_.provision(req(a, "pw-old-0123456789")).ok());
  Session old_session(tenant_dsn(a, "pw-old-0123456789"));
  ASSERT_TRUE(old_session.ok()) << old_session.error();
  ASSERT_TRUE(driver_.provision(req(a, "pw-new-0123456789", /*end=*/true)).ok());
  EXPECT_FALSE(Session(tenant_dsn(a, "pw-old-0123456789")).ok());
  EXPECT_TRUE(Session(tenant_dsn(a, "pw-new-0123456789")).ok());
  EXPECT_NE(old_session.exec("SELECT 1"), "") << "a session with the old password survived";
  ASSERT_TRUE(driver_.remove(a).ok());
}

TEST_P(IsolationTest, TenantPasswordsNeverReachTheServerLog) {
  // Every statement the server receives goes to its log (stderr, the file
  // next to the data directory); the password must never be among them.
  Session adm(admin("postgres"));
  const std::string data_dir = adm.value("SHOW data_directory");
  const std::string log_file = data_dir.substr(0, data_dir.rfind('/')) + "/postgres.log";
  ASSERT_EQ(adm.exec("ALTER SYSTEM SET log_statement = 'all'"), "");
  ASSERT_EQ(adm.exec("SELECT pg_reload_conf()"), "");
  struct Restore {
    Session& s;
    ~Restore() {
      s.exec("ALTER SYSTEM RESET log_statement");
      s.exec("SELECT pg_reload_conf()");
    }
  } restore{adm};
  // The reload reached the server's sessions once a new one logs its statements.
  const std::string probe = "SELECT 'log-probe-" + ref('p') + "'";
  auto log_text = [&] {
    std::ifstream in(log_file);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  ASSERT_TRUE(testenv::eventually([&] {
    Session(admin("postgres")).exec(probe);
    return log_text().find(probe) != std::string::npos;
  })) << "log_statement=all never took effect in "
      << log_file;

  const std::string a = ref('a');
  const std::string pw = "pw-never-logged-" + a, rotated = "pw-rotated-never-logged-" + a;
  ASSERT_TRUE(driver_.provision(req(a, pw)).ok());
  ASSERT_TRUE(driver_.pause(req(a, pw)).ok());
  ASSERT_TRUE(driver_.resume(req(a, pw)).ok());
  Session sa(tenant_dsn(a, pw));
  EXPECT_TRUE(sa.ok()) << "the tenant cannot log in with its password over TCP: " << sa.error();
  ASSERT_TRUE(driver_.provision(req(a, rotated, /*end=*/true)).ok());
  Session again(tenant_dsn(a, rotated));
  EXPECT_TRUE(again.ok()) << again.error();
  EXPECT_FALSE(Session(tenant_dsn(a, pw)).ok());

  const std::string text = log_text();
  EXPECT_NE(text.find("t_" + a), std::string::npos) << "the driver's statements were not logged";
  EXPECT_EQ(text.find(pw), std::string::npos) << "a tenant password is in the server log";
  EXPECT_EQ(text.find(rotated), std::string::npos) << "a tenant password is in the server log";
  EXPECT_NE(text.find("SCRAM-SHA-256$"), std::string::npos) << "no verifier was sent";
  ASSERT_TRUE(driver_.remove(a).ok());
}

INSTANTIATE_TEST_SUITE_P(Modes, IsolationTest,
                         ::testing::Values(PostgresMode::database, PostgresMode::schema),
                         [](const auto& info) {
                           return info.param == PostgresMode::schema ? std::string("schema")
                                                                     : std::string("database");
                         });

// Database mode: a tenant that opens its database to PUBLIC (or grants its
// tables to PUBLIC and its own roles) opens it to no other tenant: its role
// does not own the database, so the grant gives nothing, and no tenant is a
// member of a role shared with another.
TEST(DatabaseModeIsolation, ATenantOpeningItsDatabaseToPublicOpensItToNoOtherTenant) {
  driver::PostgresDriverOptions o;
  o.admin_dsn = pg().admin_dsn();
  PostgresDriver d(o);
  const std::string a = "publicgrantaaaaaaaaa", b = "publicgrantbbbbbbbbb";
  const std::string pa = "pw-a-0123456789", pb = "pw-b-0123456789";
  ASSERT_TRUE(d.provision({a, pa, 5}).ok());
  ASSERT_TRUE(d.provision({b, pb, 5}).ok());
  auto dsn = [](const std::string& user, const std::string& pw, const std::string& db) {
    return "host=127.0.0.1 port=" + std::to_string(pg().port()) + " user=" + user +
           " dbname=" + db + " password=" + pw + " connect_timeout=5";
  };
  {
    Session sa(dsn("t_" + a, pa, "t_" + a));
    ASSERT_TRUE(sa.ok()) << sa.error();
    // Whatever the server answers (a warning that nothing was granted).
    sa.exec("GRANT CONNECT, TEMPORARY ON DATABASE \"t_" + a + "\" TO PUBLIC");
    sa.exec("GRANT CONNECT ON DATABASE \"t_" + a + "\" TO \"t_" + b + "\"");
    ASSERT_EQ(sa.exec("CREATE TABLE secrets (v text)"), "");
    ASSERT_EQ(sa.exec("INSERT INTO secrets VALUES ('a-secret')"), "");
    ASSERT_EQ(sa.exec("GRANT USAGE ON SCHEMA public TO PUBLIC"), "");
    ASSERT_EQ(sa.exec("GRANT SELECT ON secrets TO PUBLIC"), "");
    EXPECT_EQ(sa.exec("GRANT SELECT ON secrets TO \"t_" + a + "_anon\", \"t_" + a +
                      "_authenticated\", \"t_" + a + "_service_role\""),
              "");
    // Nor can it lift the limits the platform set on its database.
    EXPECT_NE(sa.exec("ALTER DATABASE \"t_" + a + "\" CONNECTION LIMIT -1"), "");
    EXPECT_NE(sa.exec("ALTER DATABASE \"t_" + a + "\" OWNER TO \"t_" + b + "\""), "");
    EXPECT_EQ(sa.value("SELECT v FROM secrets"), "a-secret");
  }
  // B's login role cannot reach A's database, nor can B's API roles.
  Session sb_there(dsn("t_" + b, pb, "t_" + a));
  EXPECT_FALSE(sb_there.ok()) << "B connected to A's database";
  if (sb_there.ok()) {
    EXPECT_NE(sb_there.exec("SELECT v FROM secrets"), "") << "B read A's data";
  }
  Session adm(admin("postgres"));
  for (const std::string suffix : {"", "_anon", "_authenticated", "_service_role"})
    EXPECT_EQ(adm.value("SELECT has_database_privilege('t_" + b + suffix + "', 't_" + a +
                        "', 'CONNECT')"),
              "f")
        << "t_" << b << suffix;
  // B's roles are members of B's roles only (nothing shared with A).
  EXPECT_EQ(adm.value("SELECT count(*) FROM pg_auth_members m JOIN pg_roles u ON u.oid = m.member "
                      "JOIN pg_roles g ON g.oid = m.roleid WHERE u.rolname LIKE 't_" +
                      b + "%' AND g.rolname NOT LIKE 't_" + b + "%'"),
            "0");
  // A itself still works.
  Session sa(dsn("t_" + a, pa, "t_" + a));
  ASSERT_TRUE(sa.ok()) << sa.error();
  EXPECT_EQ(sa.value("SELECT v FROM secrets"), "a-secret");
  ASSERT_TRUE(d.remove(a).ok());
  ASSERT_TRUE(d.remove(b).ok());
}

}  // namespace
