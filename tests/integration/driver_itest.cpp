// PostgresDriver (database mode) against a real PostgreSQL that checks
// passwords over TCP: what a tenant's credentials can and cannot do.
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <chrono>
#include <cstdio>
#include <future>
#include <string>

#include "driver_contract.hpp"
#include "eventually.hpp"
#include "servers.hpp"
#include "supaplane/driver/postgres_driver.hpp"

namespace {

using namespace supaplane;
using driver::PostgresDriver;

testenv::PostgresServer& pg() { return testenv::shared_postgres_with_passwords(); }

/// A tenant's connection over TCP with its password; "" when it works,
/// else the server's complaint.
std::string try_connect(const std::string& ref, const std::string& password,
                        const std::string& db = "") {
  const std::string dsn = "host=127.0.0.1 port=" + std::to_string(pg().port()) + " user=t_" + ref +
                          " dbname=" + (db.empty() ? "t_" + ref : db) + " password=" + password +
                          " connect_timeout=5";
  PGconn* c = PQconnectdb(dsn.c_str());
  std::string err = PQstatus(c) == CONNECTION_OK ? "" : PQerrorMessage(c);
  PQfinish(c);
  return err;
}

std::string admin_query(const std::string& sql, const std::string& db = "postgres") {
  PGconn* c = PQconnectdb(pg().admin_dsn(db).c_str());
  PGresult* r = PQexec(c, sql.c_str());
  std::string out = PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "";
  PQclear(r);
  PQfinish(c);
  return out;
}

/// Runs `sql` as the tenant over TCP in `db` (default: its own database):
/// "" on success, else the server's complaint.
std::string tenant_exec(const std::string& ref, const std::string& password, const std::string& sql,
                        const std::string& db = "") {
  const std::string dsn = "host=127.0.0.1 port=" + std::to_string(pg().port()) + " user=t_" + ref +
                          " dbname=" + (db.empty() ? "t_" + ref : db) + " password=" + password +
                          " connect_timeout=5";
  PGconn* c = PQconnectdb(dsn.c_str());
  std::string err = PQstatus(c) == CONNECTION_OK ? "" : PQerrorMessage(c);
  if (err.empty()) {
    PGresult* r = PQexec(c, sql.c_str());
    const auto st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) err = PQerrorMessage(c);
    PQclear(r);
  }
  PQfinish(c);
  return err;
}

/// An admin session that keeps its transaction open (holding its locks)
/// until rolled back or destroyed.
class Holder {
 public:
  explicit Holder(const std::string& db) : c_(PQconnectdb(pg().admin_dsn(db).c_str())) {}
  ~Holder() {
    rollback();
    PQfinish(c_);
  }
  std::string exec(const std::string& sql) {
    PGresult* r = PQexec(c_, sql.c_str());
    const auto st = PQresultStatus(r);
    std::string err = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? "" : PQerrorMessage(c_);
    PQclear(r);
    return err;
  }
  void rollback() { exec("ROLLBACK"); }

 private:
  PGconn* c_;
};

class DriverTest : public ::testing::Test {
 protected:
  PostgresDriver driver_{{pg().admin_dsn()}};
  driver::StackRequest req(const std::string& ref, const std::string& pw) { return {ref, pw, 5}; }
};

TEST_F(DriverTest, LifecycleIsIdempotentAndEnforced) {
  const std::string ref = "lifecycleaaaaaaaaaaa";
  auto r = req(ref, "pw-one-0123456789");
  ASSERT_TRUE(driver_.provision(r).ok());
  const auto progress = driver_.provision(r);  // twice = once
  ASSERT_TRUE(progress.ok());
  EXPECT_EQ(try_connect(ref, "pw-one-0123456789"), "");
  EXPECT_NE(try_connect(ref, "wrong-password"), "");
  auto st = driver_.observe(ref, true).value();
  EXPECT_TRUE(st.exists);
  EXPECT_TRUE(st.accepting_connections);
  // A database is the whole stack: its health report is `db`, and only it.
  const std::vector<driver::ServiceHealth> db_only{
      {"db", v1::SERVICE_HEALTH_STATUS_ACTIVE_HEALTHY, ""}};
  EXPECT_TRUE(progress->done);
  EXPECT_EQ(progress->health, db_only);
  EXPECT_EQ(st.health, db_only);

  ASSERT_TRUE(driver_.pause(r).ok());
  ASSERT_TRUE(driver_.pause(r).ok());
  EXPECT_NE(try_connect(ref, "pw-one-0123456789"), "");
  EXPECT_FALSE(driver_.observe(ref, true)->accepting_connections);

  EXPECT_EQ(driver_.observe(ref, true)->health,
            (std::vector<driver::ServiceHealth>{
                {"db", v1::SERVICE_HEALTH_STATUS_UNHEALTHY, "refuses connections"}}));

  const auto resumed = driver_.resume(r);
  ASSERT_TRUE(resumed.ok());
  EXPECT_EQ(resumed->health, db_only);
  EXPECT_EQ(try_connect(ref, "pw-one-0123456789"), "");

  // A new password (rotation) replaces the old one.
  auto rotated = req(ref, "pw-two-0123456789");
  ASSERT_TRUE(driver_.provision(rotated).ok());
  EXPECT_NE(try_connect(ref, "pw-one-0123456789"), "");
  EXPECT_EQ(try_connect(ref, "pw-two-0123456789"), "");

  ASSERT_TRUE(driver_.remove(ref).ok());
  ASSERT_TRUE(driver_.remove(ref).ok());
  EXPECT_FALSE(driver_.observe(ref, true)->exists);
  EXPECT_EQ(admin_query("SELECT count(*) FROM pg_database WHERE datname = 't_" + ref + "'"), "0");
  EXPECT_EQ(admin_query("SELECT count(*) FROM pg_roles WHERE rolname = 't_" + ref + "'"), "0");
}

TEST_F(DriverTest, ATenantCannotReachAnotherTenantsDatabase) {
  const std::string a = "isolationaaaaaaaaaaa", b = "isolationbbbbbbbbbbb";
  ASSERT_TRUE(driver_.provision(req(a, "pw-a-0123456789")).ok());
  ASSERT_TRUE(driver_.provision(req(b, "pw-b-0123456789")).ok());
  EXPECT_EQ(try_connect(a, "pw-a-0123456789"), "");
  EXPECT_NE(try_connect(a, "pw-a-0123456789", "t_" + b), "");  // CONNECT revoked
  EXPECT_NE(try_connect(a, "pw-a-0123456789", "postgres"), "");
  // Each tenant has its own API roles (no login), and no role shared with another.
  EXPECT_EQ(admin_query("SELECT count(*) FROM pg_roles WHERE rolname IN ('t_" + a + "_anon', 't_" +
                        a + "_authenticated', 't_" + a + "_service_role') AND NOT rolcanlogin"),
            "3");
  EXPECT_EQ(admin_query("SELECT pg_has_role('t_" + a + "', 't_" + a + "_anon', 'MEMBER')"), "t");
  EXPECT_EQ(admin_query("SELECT pg_has_role('t_" + a + "', 't_" + b + "_anon', 'MEMBER')"), "f");
  EXPECT_EQ(admin_query("SELECT count(*) FROM pg_auth_members m JOIN pg_roles u ON u.oid = "
                        "m.member JOIN pg_roles g ON g.oid = m.roleid WHERE u.rolname = 't_" +
                        a + "' AND g.rolname NOT LIKE 't_" + a + "%'"),
            "0");
  EXPECT_EQ(admin_query("SELECT rolsuper OR rolcreatedb OR rolcreaterole FROM pg_roles WHERE "
                        "rolname = 't_" +
                        a + "'"),
            "f");
  ASSERT_TRUE(driver_.remove(a).ok());
  ASSERT_TRUE(driver_.remove(b).ok());
}

TEST_F(DriverTest, ATenantMadeByTheOlderLayoutIsMigratedByItsNextConverge) {
  // What the driver made before tenants had their own API roles: a member of
  // the cluster-wide Supabase roles, owning its database.
  const std::string ref = "migrationaaaaaaaaaaa", pw = "pw-old-layout-0123456789";
  ASSERT_EQ(admin_query("DO $$ BEGIN "
                        "IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN "
                        "CREATE ROLE anon NOLOGIN; END IF; "
                        "IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') "
                        "THEN CREATE ROLE authenticated NOLOGIN; END IF; "
                        "IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') "
                        "THEN CREATE ROLE service_role NOLOGIN BYPASSRLS; END IF; END $$; "
                        "CREATE ROLE t_" +
                        ref + " LOGIN CONNECTION LIMIT 5 PASSWORD '" + pw +
                        "'; GRANT anon, authenticated, service_role TO t_" + ref + "; SELECT 'ok'"),
            "ok");
  admin_query("CREATE DATABASE t_" + ref + " OWNER t_" + ref);
  admin_query("REVOKE ALL ON DATABASE t_" + ref +
              " FROM PUBLIC; GRANT CONNECT, TEMPORARY ON "
              "DATABASE t_" +
              ref + " TO t_" + ref);
  ASSERT_EQ(tenant_exec(ref, pw,
                        "CREATE TABLE items (v int); INSERT INTO items VALUES (1); "
                        "GRANT SELECT ON items TO anon; GRANT SELECT, INSERT ON items TO "
                        "authenticated; CREATE SCHEMA api; GRANT USAGE ON SCHEMA api TO anon; "
                        "CREATE FUNCTION api.f() RETURNS int LANGUAGE sql AS 'SELECT 1'; "
                        "GRANT EXECUTE ON FUNCTION api.f() TO service_role"),
            "");

  // The resync sees it as drift, whose repair (a converge) migrates it.
  EXPECT_EQ(driver_.observe(ref, true)->drift, "tenant database on an older layout");
  ASSERT_TRUE(driver_.provision(req(ref, pw)).ok());
  EXPECT_EQ(driver_.observe(ref, true)->drift, "");
  ASSERT_TRUE(driver_.provision(req(ref, pw)).ok());  // twice = once
  EXPECT_EQ(admin_query("SELECT pg_has_role('t_" + ref + "', 'anon', 'MEMBER') OR pg_has_role('t_" +
                        ref + "', 'service_role', 'MEMBER')"),
            "f");
  EXPECT_EQ(admin_query("SELECT pg_get_userbyid(datdba) <> 't_" + ref +
                        "' FROM pg_database WHERE datname = 't_" + ref + "'"),
            "t");
  // What it granted to the shared roles now belongs to its own.
  const std::string db = "t_" + ref;
  EXPECT_EQ(admin_query("SELECT has_table_privilege('t_" + ref + "_anon', 'items', 'SELECT')", db),
            "t");
  EXPECT_EQ(admin_query(
                "SELECT has_table_privilege('t_" + ref + "_authenticated', 'items', 'INSERT')", db),
            "t");
  EXPECT_EQ(admin_query("SELECT has_schema_privilege('t_" + ref + "_anon', 'api', 'USAGE')", db),
            "t");
  EXPECT_EQ(
      admin_query(
          "SELECT has_function_privilege('t_" + ref + "_service_role', 'api.f()', 'EXECUTE')", db),
      "t");
  // The tenant keeps working as before: its data, new tables in public, new schemas.
  EXPECT_EQ(tenant_exec(ref, pw,
                        "SELECT * FROM items; CREATE TABLE more (v int); CREATE SCHEMA extra; "
                        "CREATE TEMP TABLE scratch (v int)"),
            "");
  // ...but can no longer open its database to PUBLIC.
  tenant_exec(ref, pw, "GRANT CONNECT ON DATABASE t_" + ref + " TO PUBLIC");
  EXPECT_EQ(admin_query("SELECT has_database_privilege('pg_monitor', 't_" + ref + "', 'CONNECT')"),
            "f");
  ASSERT_TRUE(driver_.remove(ref).ok());
  EXPECT_EQ(admin_query("SELECT count(*) FROM pg_roles WHERE rolname LIKE 't_" + ref + "%'"), "0");
}

TEST_F(DriverTest, AFirstConvergeThatIsAPauseMakesAPausedTenant) {
  // Commands queued while a tenant is made collapse: its first converge may be a pause.
  const std::string ref = "firstpauseaaaaaaaaaa";
  ASSERT_TRUE(driver_.pause(req(ref, "pw-p-0123456789")).ok());
  auto st = driver_.observe(ref, false).value();
  EXPECT_TRUE(st.exists);
  EXPECT_EQ(st.drift, "");
  EXPECT_NE(try_connect(ref, "pw-p-0123456789"), "");
  ASSERT_TRUE(driver_.resume(req(ref, "pw-p-0123456789")).ok());
  EXPECT_EQ(try_connect(ref, "pw-p-0123456789"), "");
  ASSERT_TRUE(driver_.remove(ref).ok());
}

TEST_F(DriverTest, PauseEndsOpenSessions) {
  const std::string ref = "sessionsaaaaaaaaaaaa";
  ASSERT_TRUE(driver_.provision(req(ref, "pw-s-0123456789")).ok());
  const std::string dsn = "host=127.0.0.1 port=" + std::to_string(pg().port()) + " user=t_" + ref +
                          " dbname=t_" + ref + " password=pw-s-0123456789";
  PGconn* c = PQconnectdb(dsn.c_str());
  ASSERT_EQ(PQstatus(c), CONNECTION_OK) << PQerrorMessage(c);
  ASSERT_TRUE(driver_.pause(req(ref, "pw-s-0123456789")).ok());
  PGresult* r = PQexec(c, "SELECT 1");
  EXPECT_NE(PQresultStatus(r), PGRES_TUPLES_OK) << "session survived the pause";
  PQclear(r);
  PQfinish(c);
  ASSERT_TRUE(driver_.remove(ref).ok());
}

TEST_F(DriverTest, RejectsMalformedRefs) {
  EXPECT_EQ(driver_.provision(req("Robert'); DROP TABLE x;--", "pw")).error().code,
            errc::invalid_argument);
  EXPECT_EQ(driver_.remove("short").error().code, errc::invalid_argument);
}

// Not a check: what one provision costs, in each mode (run with
// --gtest_also_run_disabled_tests --gtest_filter='*ProvisionCost*').
TEST(DriverTiming, DISABLED_ProvisionCost) {
  for (auto mode : {driver::PostgresMode::database, driver::PostgresMode::schema}) {
    driver::PostgresDriverOptions o;
    o.admin_dsn = pg().admin_dsn();
    o.mode = mode;
    PostgresDriver d(o);
    const char tag = mode == driver::PostgresMode::schema ? 's' : 'd';
    auto ref_of = [&](int i) {
      std::string r = std::string("timing") + tag;
      for (int v = i; r.size() < 20; v /= 26) r += static_cast<char>('a' + v % 26);
      return r;
    };
    ASSERT_TRUE(d.provision({ref_of(99), "pw-warm-0123456789", 5}).ok());  // prepares the cluster
    constexpr int kRounds = 20;
    double provision_ms = 0, again_ms = 0;
    for (int i = 0; i < kRounds; ++i) {
      const driver::StackRequest r{ref_of(i), "pw-timing-0123456789", 5};
      auto t0 = std::chrono::steady_clock::now();
      ASSERT_TRUE(d.provision(r).ok());
      auto t1 = std::chrono::steady_clock::now();
      ASSERT_TRUE(d.provision(r).ok());  // a converge with nothing to create (resync)
      auto t2 = std::chrono::steady_clock::now();
      provision_ms += std::chrono::duration<double, std::milli>(t1 - t0).count();
      again_ms += std::chrono::duration<double, std::milli>(t2 - t1).count();
    }
    std::printf("%s mode: new tenant %.2f ms, converge again %.2f ms (mean of %d)\n",
                tag == 's' ? "schema" : "database", provision_ms / kRounds, again_ms / kRounds,
                kRounds);
    for (int i = 0; i < kRounds; ++i) ASSERT_TRUE(d.remove(ref_of(i)).ok());
    ASSERT_TRUE(d.remove(ref_of(99)).ok());
  }
}

driver::PostgresDriverOptions mode_options(driver::PostgresMode mode) {
  driver::PostgresDriverOptions o;
  o.admin_dsn = pg().admin_dsn();
  o.mode = mode;
  return o;
}

// A converge that waits on a lock held elsewhere gives up with a clear
// timeout error (and is retried later), while other tenants converge.
TEST(DriverTimeouts, AHeldLockTimesOutOneTenantsConvergeWhileOthersConverge) {
  for (auto mode : {driver::PostgresMode::database, driver::PostgresMode::schema}) {
    const bool schema = mode == driver::PostgresMode::schema;
    SCOPED_TRACE(schema ? "schema mode" : "database mode");
    auto o = mode_options(mode);
    o.lock_timeout_ms = 3000;
    PostgresDriver d(o);
    const std::string x = schema ? "locksxxxxxxxxxxxxxxx" : "lockdxxxxxxxxxxxxxxx";
    const std::string y = schema ? "locksyyyyyyyyyyyyyyy" : "lockdyyyyyyyyyyyyyyy";
    const driver::StackRequest rx{x, "pw-x-0123456789", 5};
    ASSERT_TRUE(d.provision(rx).ok());

    // Another session changes X's role and keeps its transaction open.
    Holder holder(schema ? "supabase" : "postgres");
    ASSERT_EQ(holder.exec("BEGIN; ALTER ROLE t_" + x + " CONNECTION LIMIT 4"), "");
    auto converge_x = std::async(std::launch::async, [&] { return d.provision(rx); });
    EXPECT_TRUE(testenv::eventually([&] {
      return admin_query(
                 "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                 "AND query LIKE '%t_" +
                 x + "%'") != "0";
    })) << "X's converge never waited for the lock";

    // Y converges while X's lock is held.
    EXPECT_TRUE(d.provision({y, "pw-y-0123456789", 5}).ok());
    EXPECT_EQ(tenant_exec(y, "pw-y-0123456789", "SELECT 1", schema ? "supabase" : ""), "");

    if (converge_x.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
      holder.rollback();  // let it finish, then fail
      converge_x.wait();
      FAIL() << "X's converge was still blocked after 60 s";
    }
    auto got = converge_x.get();
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.error().code, errc::unavailable);  // retried, the tenant keeps its phase
    EXPECT_NE(got.error().message.find("timed out waiting for a lock (lock_timeout 3000 ms)"),
              std::string::npos)
        << got.error().message;
    EXPECT_EQ(d.counters().timeouts.load(), 1u);

    holder.rollback();
    EXPECT_TRUE(d.provision(rx).ok()) << "X did not converge once the lock was gone";
    ASSERT_TRUE(d.remove(x).ok());
    ASSERT_TRUE(d.remove(y).ok());
  }
}

// A tenant's connection limit is handed out only within max_connections
// minus the reserve; beyond, the converge fails naming the numbers and
// creates nothing.
TEST(DriverBudget, ALimitBeyondTheClusterBudgetIsRefusedAndCreatesNothing) {
  for (auto mode : {driver::PostgresMode::database, driver::PostgresMode::schema}) {
    const bool schema = mode == driver::PostgresMode::schema;
    SCOPED_TRACE(schema ? "schema mode" : "database mode");
    const int max_conn = std::stoi(admin_query("SHOW max_connections"));
    const int promised = std::stoi(admin_query(
        "SELECT coalesce(sum(rolconnlimit), 0) FROM pg_roles WHERE rolname ~ '^t_[a-z]{20}$' "
        "AND rolconnlimit > 0"));
    auto o = mode_options(mode);
    o.connection_reserve = max_conn - promised - 10;  // room for 10 more
    PostgresDriver d(o);
    const std::string a = schema ? "budgetsaaaaaaaaaaaaa" : "budgetdaaaaaaaaaaaaa";
    const std::string b = schema ? "budgetsbbbbbbbbbbbbb" : "budgetdbbbbbbbbbbbbb";
    ASSERT_TRUE(d.provision({a, "pw-a-0123456789", 6}).ok());

    auto refused = d.provision({b, "pw-b-0123456789", 6});
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().code, errc::failed_precondition);
    const std::string want =
        "provision: connection budget exceeded: a limit of 6 on top of the " +
        std::to_string(promised + 6) + " promised to other tenants would exceed max_connections " +
        std::to_string(max_conn) + " minus the reserve of " + std::to_string(o.connection_reserve) +
        " (" + std::to_string(promised + 10) + ")";
    EXPECT_EQ(refused.error().message, want);
    EXPECT_EQ(d.counters().budget_refusals.load(), 1u);
    EXPECT_EQ(admin_query("SELECT count(*) FROM pg_roles WHERE rolname LIKE 't_" + b + "%'"), "0");
    EXPECT_EQ(admin_query("SELECT count(*) FROM pg_database WHERE datname = 't_" + b + "'"), "0");
    if (schema) {
      EXPECT_EQ(admin_query("SELECT count(*) FROM pg_namespace WHERE nspname = 'proj_" + b + "'",
                            "supabase"),
                "0");
    }

    // A tenant that already holds its limit keeps converging when the budget
    // shrinks under it (resync, pause); a smaller limit fits.
    auto tight = mode_options(mode);
    tight.connection_reserve = max_conn - promised - 3;
    PostgresDriver t(tight);
    EXPECT_TRUE(t.provision({a, "pw-a-0123456789", 6}).ok());
    EXPECT_TRUE(t.pause({a, "pw-a-0123456789", 6}).ok());
    EXPECT_TRUE(d.provision({b, "pw-b-0123456789", 4}).ok());
    EXPECT_EQ(d.counters().promised.load(), promised + 10);
    ASSERT_TRUE(d.remove(a).ok());
    ASSERT_TRUE(d.remove(b).ok());
  }
}

TEST(DriverDown, UnreachableClusterIsUnavailable) {
  PostgresDriver d({"host=127.0.0.1 port=" + std::to_string(testenv::free_port()) +
                    " user=postgres connect_timeout=2"});
  auto st = d.provision({"downaaaaaaaaaaaaaaaa", "pw", 5});
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, errc::unavailable);
}

}  // namespace

namespace {
TEST(PostgresDriverContract, KeepsTheDriverContract) {
  supaplane::driver::PostgresDriver d{{pg().admin_dsn()}};
  supaplane::driver::StackRequest r{"contractpgaaaaaaaaaa", "pw-contract-0123456789", 5};
  auto rotated = r;
  rotated.db_password = "pw-rotated-0123456789";
  rotated.end_sessions = true;
  supaplane::testenv::driver_contract(d, r, rotated,
                                      [&] { admin_query("ALTER ROLE t_" + r.ref + " NOLOGIN"); });
}
}  // namespace
