// Crash and fault tests of the provisioner, run as its real binary
// (supaplane-provisioner) so SIGKILL is real: a burst of 200 mixed commands
// with the provisioner killed twice mid-burst, and PostgreSQL stopped for 10 s
// while tenants converge. The api runs in-process; every server is real.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "api_options.hpp"
#include "app.hpp"
#include "eventually.hpp"
#include "provisioner_fixture.hpp"
#include "servers.hpp"
#include "supaplane/domain/tenant.hpp"
#include "supaplane/event_store/event_store.hpp"
#include "supaplane/events/history.hpp"
#include "supaplane/projection/tenant_projection.hpp"
#include "supaplane/v1/api.grpc.pb.h"

namespace {

using namespace supaplane;
namespace v1 = supaplane::v1;
using SteadyClock = std::chrono::steady_clock;

/// This binary's own cluster: the outage test stops it.
testenv::PostgresServer& pg() {
  static testenv::PostgresServer* server = [] {
    auto* s = new testenv::PostgresServer();
    s->start();
    return s;
  }();
  return *server;
}

std::string query(const std::string& sql) {
  PGconn* c = PQconnectdb(pg().admin_dsn().c_str());
  PGresult* r = PQexec(c, sql.c_str());
  std::string out;
  for (int i = 0; i < PQntuples(r); ++i) out += std::string(i ? "," : "") + PQgetvalue(r, i, 0);
  PQclear(r);
  PQfinish(c);
  return out;
}

std::set<std::string> names(const std::string& sql) {
  std::set<std::string> out;
  const std::string all = query(sql);
  for (std::size_t at = 0; at < all.size();) {
    const auto comma = all.find(',', at);
    out.insert(all.substr(at, comma == std::string::npos ? std::string::npos : comma - at));
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return out;
}

class CrashTest : public testenv::ProvisionerFixture {
 protected:
  CrashTest() : ProvisionerFixture(pg(), "crash") {}

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(start_api());
    start_provisioner();
    ASSERT_TRUE(testenv::eventually([&] { return api_->readiness().empty(); },
                                    std::chrono::seconds(30), std::chrono::milliseconds(20)))
        << api_->readiness();
    ASSERT_NO_FATAL_FAILURE(sign_up_owner());
  }
  void TearDown() override {
    provisioner_.stop();
    ProvisionerFixture::TearDown();
  }

  /// The real binary; the master key goes through the environment.
  void start_provisioner() {
    ::setenv("SUPAPLANE_MASTER_KEY", testenv::kTestMasterKey, 1);
    provisioner_.start({SUPAPLANE_PROVISIONER_BIN, "--nats-url", nats_.url(), "--database-url",
                        pg().admin_dsn(db_), "--tenant-db-url", pg().admin_dsn("postgres"),
                        "--metrics-addr", "127.0.0.1:" + std::to_string(testenv::free_port()),
                        "--resync-interval-ms", "5000", "--log-level", "warn",
                        // The suite's tenants share one cluster: small limits keep
                        // them all inside its connection budget.
                        "--connection-limit", "5"},
                       log_dir_.path() + "/provisioner.log");
  }

  static v1::Phase phase_for(v1::DesiredState d) {
    if (d == v1::DESIRED_STATE_PAUSED) return v1::PHASE_PAUSED;
    if (d == v1::DESIRED_STATE_DELETED) return v1::PHASE_DELETED;
    return v1::PHASE_ACTIVE;
  }

  /// Waits until every tenant has converged its latest generation into the
  /// phase its last accepted command asked for; returns the laggards.
  std::vector<std::string> wait_converged(const std::map<std::string, v1::DesiredState>& want,
                                          std::chrono::seconds limit) {
    std::vector<std::string> lagging;
    const auto deadline = SteadyClock::now() + limit;
    do {
      lagging.clear();
      for (const auto& [ref, desired] : want) {
        v1::GetTenantRequest req;
        req.set_ref(ref);
        v1::Tenant t;
        if (!tenants_->GetTenant(ctx().get(), req, &t).ok() || t.phase() != phase_for(desired) ||
            t.observed_generation() != t.generation())
          lagging.push_back(ref + " is " + v1::Phase_Name(t.phase()) + ", wants " +
                            v1::Phase_Name(phase_for(desired)) +
                            (t.last_error().empty() ? "" : " (" + t.last_error() + ")"));
      }
      if (lagging.empty()) return lagging;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    } while (SteadyClock::now() < deadline);
    return lagging;
  }

  /// The invariants of one tenant's whole history: one deployment at most at
  /// every step, at most one outcome per generation, nothing after deletion.
  void check_history(const std::string& ref) {
    const auto msgs = history(ref);
    v1::TenantState s;
    std::set<std::int64_t> outcome_generations, started;
    bool deleted = false;
    for (const auto& m : msgs) {
      const auto d = events::decode(m);
      ASSERT_EQ(d.kind, events::DecodedEvent::Kind::tenant) << ref << " seq " << m.sequence;
      const auto& e = d.envelope.tenant();
      s = domain::fold(std::move(s), e, {ref, m.sequence, d.envelope.occurred_at_unix_ms()});
      EXPECT_GE(s.active_deployment_count(), 0) << ref;
      EXPECT_LE(s.active_deployment_count(), 1) << ref;
      if (e.has_provisioning_started()) {
        EXPECT_TRUE(started.insert(e.provisioning_started().observed_generation()).second)
            << ref << ": provisioning announced twice";
      }
      std::int64_t observed = -1;
      if (e.has_stack_converged()) observed = e.stack_converged().observed_generation();
      if (e.has_stack_paused()) observed = e.stack_paused().observed_generation();
      if (e.has_stack_resumed()) observed = e.stack_resumed().observed_generation();
      if (e.has_stack_deleted()) observed = e.stack_deleted().observed_generation();
      if (observed < 0) continue;
      EXPECT_FALSE(deleted) << ref << ": an outcome after the stack was deleted";
      EXPECT_TRUE(outcome_generations.insert(observed).second)
          << ref << ": two outcomes for generation " << observed;
      deleted = deleted || e.has_stack_deleted();
    }
  }

  testenv::TempDir log_dir_{"supaplane-crash"};
  testenv::Process provisioner_;
};

TEST_F(CrashTest, BurstWithTheProvisionerKilledTwiceEndsInTheLastDesiredState) {
  const unsigned seed = std::random_device{}();
  std::printf("seed %u\n", seed);
  std::mt19937 rng(seed);
  std::map<std::string, v1::DesiredState> want;
  std::vector<std::string> refs;
  int accepted = 0, refused = 0, kills = 0;
  for (int i = 0; i < 200; ++i) {
    if (i == 70 || i == 140) {
      provisioner_.stop(SIGKILL);  // mid-burst, mid-converge: no goodbye
      ++kills;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      start_provisioner();
    }
    v1::TenantMutation m;
    grpc::Status st;
    // One create in four (and always at first), then pause / resume / delete
    // on any tenant, including ones still provisioning.
    if (refs.empty() || rng() % 4 == 0) {
      v1::CreateTenantRequest req;
      req.set_name("burst-" + std::to_string(i));
      st = tenants_->CreateTenant(ctx().get(), req, &m);
      if (st.ok()) refs.push_back(m.tenant().ref());
    } else {
      const std::string& ref = refs[rng() % refs.size()];
      const int pick = static_cast<int>(rng() % 10);
      st = command(pick < 4 ? "pause" : pick < 8 ? "resume" : "delete", ref, &m);
    }
    if (st.ok()) {
      ++accepted;
      want[m.tenant().ref()] = m.tenant().desired_state();
    } else {
      ASSERT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << st.error_message();
      ++refused;  // e.g. pause after delete
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(15));
  }
  EXPECT_EQ(kills, 2);
  std::printf("%d commands accepted, %d refused, %zu tenants\n", accepted, refused, want.size());

  const auto lagging = wait_converged(want, std::chrono::seconds(120));
  EXPECT_TRUE(lagging.empty()) << lagging.size() << " tenants did not converge, e.g. "
                               << (lagging.empty() ? "" : lagging.front());

  // Exactly this burst's live tenants have a database and a role: nothing
  // leaked (other tests' tenants share the cluster and are left out).
  std::set<std::string> live, ours;
  for (const auto& [ref, desired] : want) {
    ours.insert("t_" + ref);
    if (desired != v1::DESIRED_STATE_DELETED) live.insert("t_" + ref);
  }
  auto mine = [&](const std::string& sql) {
    std::set<std::string> out;
    for (const auto& name : names(sql))
      if (ours.count(name)) out.insert(name);
    return out;
  };
  EXPECT_EQ(mine("SELECT datname FROM pg_database WHERE datname LIKE 't\\_%'"), live);
  EXPECT_EQ(mine("SELECT rolname FROM pg_roles WHERE rolname LIKE 't\\_%'"), live);
  for (const auto& [ref, desired] : want) {
    if (desired == v1::DESIRED_STATE_DELETED) continue;
    EXPECT_EQ(query("SELECT datallowconn FROM pg_database WHERE datname = 't_" + ref + "'"),
              desired == v1::DESIRED_STATE_PAUSED ? "f" : "t")
        << ref;
  }
  for (const auto& [ref, desired] : want) check_history(ref);
}

TEST_F(CrashTest, TenantsConvergeAfterPostgresComesBack) {
  std::map<std::string, v1::DesiredState> want;
  auto create = [&](const std::string& name) {
    v1::CreateTenantRequest req;
    req.set_name(name);
    v1::TenantMutation m;
    ASSERT_TRUE(tenants_->CreateTenant(ctx().get(), req, &m).ok());
    want[m.tenant().ref()] = v1::DESIRED_STATE_RUNNING;
  };
  for (int i = 0; i < 20; ++i) create("before-" + std::to_string(i));
  // Stop the cluster while those converge (keys and tenant databases both live there).
  pg().stop();
  const auto down_at = SteadyClock::now();
  // Commands are still taken: the log is NATS, not PostgreSQL.
  for (int i = 0; i < 5; ++i) create("during-" + std::to_string(i));
  std::this_thread::sleep_for(std::chrono::seconds(10) - (SteadyClock::now() - down_at));
  pg().restart();
  const auto lagging = wait_converged(want, std::chrono::seconds(120));
  EXPECT_TRUE(lagging.empty()) << lagging.size() << " tenants did not converge, e.g. "
                               << (lagging.empty() ? "" : lagging.front());
  // None of them was given up on: the cluster being away is not the tenant failing.
  for (const auto& [ref, desired] : want) {
    for (const auto& m : history(ref)) EXPECT_NE(m.event_type, "tenant.converge_failed") << ref;
    check_history(ref);
  }
  const auto dbs = names("SELECT datname FROM pg_database WHERE datname LIKE 't\\_%'");
  for (const auto& [ref, desired] : want) EXPECT_EQ(dbs.count("t_" + ref), 1u) << ref;
}

}  // namespace
