// PostgresDriver (database mode) against a real PostgreSQL that checks
// passwords over TCP: what a tenant's credentials can and cannot do.
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "driver_contract.hpp"
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

std::string admin_query(const std::string& sql) {
  PGconn* c = PQconnectdb(pg().admin_dsn().c_str());
  PGresult* r = PQexec(c, sql.c_str());
  std::string out = PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "";
  PQclear(r);
  PQfinish(c);
  return out;
}

class DriverTest : public ::testing::Test {
 protected:
  PostgresDriver driver_{{pg().admin_dsn()}};
  driver::StackRequest req(const std::string& ref, const std::string& pw) { return {ref, pw, 5}; }
};

TEST_F(DriverTest, LifecycleIsIdempotentAndEnforced) {
  const std::string ref = "lifecycleaaaaaaaaaaa";
  auto r = req(ref, "pw-one-0123456789");
  ASSERT_TRUE(driver_.provision(r).ok());
  ASSERT_TRUE(driver_.provision(r).ok());  // twice = once
  EXPECT_EQ(try_connect(ref, "pw-one-0123456789"), "");
  EXPECT_NE(try_connect(ref, "wrong-password"), "");
  auto st = driver_.observe(ref, true).value();
  EXPECT_TRUE(st.exists);
  EXPECT_TRUE(st.accepting_connections);

  ASSERT_TRUE(driver_.pause(r).ok());
  ASSERT_TRUE(driver_.pause(r).ok());
  EXPECT_NE(try_connect(ref, "pw-one-0123456789"), "");
  EXPECT_FALSE(driver_.observe(ref, true)->accepting_connections);

  ASSERT_TRUE(driver_.resume(r).ok());
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
  // The Supabase roles exist and each tenant may use them, but cannot log in as them.
  EXPECT_EQ(admin_query("SELECT count(*) FROM pg_roles WHERE rolname IN "
                        "('anon','authenticated','service_role') AND NOT rolcanlogin"),
            "3");
  EXPECT_EQ(admin_query("SELECT pg_has_role('t_" + a + "', 'anon', 'MEMBER')"), "t");
  EXPECT_EQ(admin_query("SELECT rolsuper OR rolcreatedb OR rolcreaterole FROM pg_roles WHERE "
                        "rolname = 't_" +
                        a + "'"),
            "f");
  ASSERT_TRUE(driver_.remove(a).ok());
  ASSERT_TRUE(driver_.remove(b).ok());
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
