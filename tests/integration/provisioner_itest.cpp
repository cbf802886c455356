// supaplane-provisioner with the postgres driver, end to end: the api takes
// commands over gRPC, the provisioner converges real tenant databases on a
// PostgreSQL that checks passwords, outcomes come back through the log.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <libpq-fe.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "alert_rules.hpp"
#include "api_options.hpp"
#include "app.hpp"
#include "eventually.hpp"
#include "provisioner_app.hpp"
#include "provisioner_fixture.hpp"
#include "servers.hpp"
#include "supaplane/events/history.hpp"
#include "supaplane/keystore/key_store.hpp"
#include "supaplane/secrets/secrets.hpp"
#include "supaplane/v1/api.grpc.pb.h"

namespace {

using namespace supaplane;
namespace v1 = supaplane::v1;
using SteadyClock = std::chrono::steady_clock;

const char* kMasterKey = testenv::kTestMasterKey;

testenv::PostgresServer& pg() { return testenv::shared_postgres_with_passwords(); }

class ProvisionerTest : public testenv::ProvisionerFixture {
 protected:
  ProvisionerTest() : ProvisionerFixture(pg(), "prov") {}

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(start_api([](api::ApiOptions& ao) {
      ao.admin_email = "admin@example.com";
      ao.admin_password = "admin-password";
      ao.master_key = kMasterKey;
    }));
    prov_ = std::make_unique<provisioner::App>(provisioner_options());
    ASSERT_TRUE(prov_->start().ok());
    ASSERT_NO_FATAL_FAILURE(wait_ready());
    ASSERT_NO_FATAL_FAILURE(sign_up_owner());
  }
  void TearDown() override {
    prov_.reset();
    ProvisionerFixture::TearDown();
  }

  void wait_ready() {
    ASSERT_TRUE(
        testenv::eventually([&] { return api_->readiness().empty() && prov_->readiness().empty(); },
                            std::chrono::seconds(30), std::chrono::milliseconds(20)))
        << api_->readiness() << prov_->readiness();
  }

  std::string password(const std::string& ref) {
    auto k = prov_->keys().load(ref);
    EXPECT_TRUE(k.ok() && k->has_value());
    return k.ok() && k->has_value() ? (*k)->keys.db_password : "";
  }

  bool can_connect(const std::string& ref, const std::string& pw) {
    const std::string dsn = "host=127.0.0.1 port=" + std::to_string(pg().port()) + " user=t_" +
                            ref + " dbname=t_" + ref + " password=" + pw + " connect_timeout=5";
    PGconn* c = PQconnectdb(dsn.c_str());
    const bool ok = PQstatus(c) == CONNECTION_OK;
    PQfinish(c);
    return ok;
  }

  std::unique_ptr<provisioner::App> prov_;
};

TEST_F(ProvisionerTest, TenantLifecycleConvergesForReal) {
  const std::string ref = call("create", "", "shop").tenant().ref();
  auto t = wait_phase(ref, v1::PHASE_ACTIVE);
  EXPECT_EQ(t.status(), "ACTIVE_HEALTHY");
  EXPECT_EQ(t.observed_generation(), t.generation());
  EXPECT_EQ(t.active_deployment_count(), 1);
  const std::string pw = password(ref);
  EXPECT_TRUE(can_connect(ref, pw));
  EXPECT_FALSE(can_connect(ref, "not-the-password"));

  call("pause", ref);
  EXPECT_EQ(wait_phase(ref, v1::PHASE_PAUSED).status(), "INACTIVE");
  EXPECT_FALSE(can_connect(ref, pw));
  call("resume", ref);
  wait_phase(ref, v1::PHASE_ACTIVE);
  EXPECT_TRUE(can_connect(ref, pw));

  call("delete", ref);
  t = wait_phase(ref, v1::PHASE_DELETED);
  EXPECT_EQ(t.status(), "REMOVED");
  EXPECT_EQ(t.active_deployment_count(), 0);
  EXPECT_FALSE(can_connect(ref, pw));
  EXPECT_FALSE(prov_->keys().load(ref)->has_value()) << "keys outlived the tenant";
  EXPECT_EQ(history_types(ref),
            (std::vector<std::string>{
                "tenant.created", "tenant.provisioning_started", "tenant.stack_converged",
                "tenant.pause_requested", "tenant.stack_paused", "tenant.resume_requested",
                "tenant.stack_resumed", "tenant.deletion_requested", "tenant.stack_deleted"}));
}

// Another 32-byte key (base64), for master-key rotation.
const char* kNewMasterKey = "bmV3LW1hc3Rlci1rZXktMDEyMzQ1Njc4OWFiY2RlZlg=";
const char* kStrangerKey = "c3RyYW5nZXIta2V5LTAxMjM0NTY3ODlhYmNkZWYwMTI=";

TEST_F(ProvisionerTest, MasterKeyRotationReSealsEveryTenantSecret) {
  const std::string a = call("create", "", "a").tenant().ref();
  const std::string b = call("create", "", "b").tenant().ref();
  wait_phase(a, v1::PHASE_ACTIVE);
  wait_phase(b, v1::PHASE_ACTIVE);
  const auto before = prov_->keys().load(a);
  ASSERT_TRUE(before.ok() && before->has_value());
  const auto key = [](const char* b64) { return secrets::MasterKey::from_base64(b64).value(); };
  const std::string dsn = pg().admin_dsn(db_);
  keystore::KeyStore new_only(dsn, key(kNewMasterKey), "supaplane", SystemClock::instance());
  keystore::KeyStore old_only(dsn, key(kMasterKey), "supaplane", SystemClock::instance());
  // Sealed with the old key: the new one alone cannot read it.
  EXPECT_EQ(new_only.load(a).error().code, errc::corrupt);

  // A store that knows neither key changes nothing and says so.
  keystore::KeyStore stranger(dsn, key(kStrangerKey), "supaplane", SystemClock::instance(),
                              {key(kNewMasterKey)});
  auto none = stranger.reseal_all();
  ASSERT_TRUE(none.ok()) << none.error().message;
  EXPECT_EQ(none->unreadable, 2);
  EXPECT_EQ(none->resealed, 0);
  EXPECT_TRUE(old_only.load(a).ok());

  // The provisioner restarted with the new key and the old one as previous
  // re-seals every row before it converges anything.
  prov_.reset();
  auto o = provisioner_options();
  o.master_key = kNewMasterKey;
  o.master_key_previous = std::string(kMasterKey);
  prov_ = std::make_unique<provisioner::App>(o);
  ASSERT_TRUE(prov_->start().ok());
  wait_ready();
  for (const auto& ref : {a, b}) {
    auto now = new_only.load(ref);
    ASSERT_TRUE(now.ok() && now->has_value()) << ref;
    EXPECT_FALSE(old_only.load(ref).ok()) << ref << " still opens with the retired key";
  }
  EXPECT_EQ(new_only.load(a).value()->keys.secret_key, before.value()->keys.secret_key);
  auto again = prov_->keys().reseal_all();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->current, 2);
  EXPECT_EQ(again->resealed, 0);

  // A row written with the retired key later (a node not restarted yet) is
  // re-sealed the first time a rotated store reads it.
  const std::string c = "cccccccccccccccccccc";
  ASSERT_TRUE(old_only.ensure(c, 1).ok());
  keystore::KeyStore rotated(dsn, key(kNewMasterKey), "supaplane", SystemClock::instance(),
                             {key(kMasterKey)});
  auto read = rotated.load(c);
  ASSERT_TRUE(read.ok() && read->has_value());
  EXPECT_TRUE(new_only.load(c).ok());
  // The rotated pipeline still works: a key rotation stores new keys.
  const auto rot = call("rotate", a);
  wait_settled(a, rot.sequence(), v1::PHASE_ACTIVE);
  EXPECT_NE(new_only.load(a).value()->keys.secret_key, before.value()->keys.secret_key);
}

TEST(ProvisionerStart, RefusesAMalformedPreviousMasterKey) {
  provisioner::AppOptions o;
  o.master_key = kMasterKey;
  o.master_key_previous = std::string(kMasterKey) + ",not-a-key";
  o.metrics_addr = "127.0.0.1:0";
  provisioner::App app(o);
  auto st = app.start();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().field, "master_key_previous");
  EXPECT_NE(st.error().message.find("#2"), std::string::npos) << st.error().message;
  EXPECT_EQ(st.error().message.find("not-a-key"), std::string::npos);
}

TEST_F(ProvisionerTest, DeployAlertRulesAndDashboardUseOnlyMetricsTheProvisionerExports) {
  httplib::Client http("127.0.0.1", prov_->metrics_port());
  auto res = http.Get("/metrics");
  ASSERT_TRUE(res);
  // Its alert group and the Grafana dashboard's panels, against one scrape.
  const auto mon =
      testenv::check_monitoring("supaplane-provisioner", "supaplane_provisioner_", res->body);
  EXPECT_GE(mon.alert_uses, 3u);
  EXPECT_GT(mon.panel_uses, 0u);
  EXPECT_EQ(mon.missing, std::vector<std::string>{});
}

TEST_F(ProvisionerTest, OwnerGetsWorkingCredentials) {
  const std::string ref = call("create", "", "creds").tenant().ref();
  wait_phase(ref, v1::PHASE_ACTIVE);
  v1::GetTenantRequest req;
  req.set_ref(ref);
  v1::TenantCredentials creds;
  ASSERT_TRUE(tenants_->GetTenantCredentials(ctx().get(), req, &creds).ok());
  EXPECT_EQ(creds.api_url(), "https://" + ref + ".supabase.localhost");
  EXPECT_EQ(creds.publishable_key().rfind("sb_publishable_", 0), 0u);
  EXPECT_EQ(creds.secret_key().rfind("sb_secret_", 0), 0u);
  EXPECT_EQ(std::count(creds.anon_key().begin(), creds.anon_key().end(), '.'), 2);
  EXPECT_EQ(creds.db_user(), "t_" + ref);
  PGconn* c = PQconnectdb(creds.connection_string().c_str());
  EXPECT_EQ(PQstatus(c), CONNECTION_OK) << PQerrorMessage(c);
  PQfinish(c);
  // Another customer: the tenant does not exist for them.
  v1::SignUpRequest other;
  other.set_email("other@example.com");
  other.set_password("other-password");
  v1::SessionResponse session;
  {
    grpc::ClientContext sc;
    ASSERT_TRUE(accounts_->SignUp(&sc, other, &session).ok());
  }
  grpc::ClientContext oc;
  oc.AddMetadata("authorization", "Bearer " + session.token());
  v1::TenantCredentials none;
  EXPECT_EQ(tenants_->GetTenantCredentials(&oc, req, &none).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(none.db_password().empty());
  // Read-your-writes: with the delete's sequence the answer cannot be stale.
  req.set_min_sequence(call("delete", ref).sequence());
  EXPECT_EQ(tenants_->GetTenantCredentials(ctx().get(), req, &none).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(ProvisionerTest, RotatedKeysStopWorkingAndNewOnesWork) {
  const std::string ref = call("create", "", "rotate").tenant().ref();
  wait_phase(ref, v1::PHASE_ACTIVE);
  v1::GetTenantRequest req;
  req.set_ref(ref);
  v1::TenantCredentials before;
  ASSERT_TRUE(tenants_->GetTenantCredentials(ctx().get(), req, &before).ok());
  // A session opened with the old password, still open at rotation time.
  PGconn* open = PQconnectdb(before.connection_string().c_str());
  ASSERT_EQ(PQstatus(open), CONNECTION_OK) << PQerrorMessage(open);

  const auto m = call("rotate", ref);
  EXPECT_EQ(m.tenant().phase(), v1::PHASE_RECONCILING);
  wait_settled(ref, m.sequence(), v1::PHASE_ACTIVE);

  v1::TenantCredentials after;
  req.set_min_sequence(m.sequence());
  ASSERT_TRUE(tenants_->GetTenantCredentials(ctx().get(), req, &after).ok());
  EXPECT_GT(after.keys_generation(), before.keys_generation());
  EXPECT_NE(after.db_password(), before.db_password());
  EXPECT_NE(after.anon_key(), before.anon_key());
  EXPECT_NE(after.service_role_key(), before.service_role_key());
  EXPECT_NE(after.publishable_key(), before.publishable_key());
  EXPECT_NE(after.secret_key(), before.secret_key());
  EXPECT_FALSE(can_connect(ref, before.db_password())) << "old password still accepted";
  EXPECT_TRUE(can_connect(ref, after.db_password()));
  // The session opened with the old password was ended.
  PGresult* r = PQexec(open, "SELECT 1");
  EXPECT_NE(PQresultStatus(r), PGRES_TUPLES_OK) << "old session survived the rotation";
  PQclear(r);
  PQfinish(open);

  // Recorded without secrets: the request and the outcome with the keys generation.
  event_store::ConnectOptions o;
  o.url = nats_.url();
  auto es = event_store::EventStore::connect(o).value();
  const auto msgs = es->read_subject("platform.tenant." + ref).value();
  ASSERT_EQ(msgs.size(), 6u);
  EXPECT_EQ(msgs[3].event_type, "tenant.keys_rotation_requested");
  EXPECT_EQ(msgs[4].event_type, "tenant.provisioning_started");
  EXPECT_EQ(msgs[5].event_type, "tenant.stack_converged");
  for (const auto& msg : msgs)
    for (const auto& secret : {after.db_password(), after.secret_key(), after.anon_key(),
                               before.db_password(), before.secret_key()})
      EXPECT_EQ(msg.data.find(secret), std::string::npos) << "a secret reached the event log";
  const auto state = events::fold_history(ref, msgs);
  EXPECT_EQ(state.applied_keys_generation(), state.keys_generation());
  EXPECT_GT(state.keys_generation(), 0);
}

TEST_F(ProvisionerTest, CommandsQueuedWhileProvisioningCollapse) {
  const std::string ref = call("create", "", "burst").tenant().ref();
  call("pause", ref);
  call("resume", ref);
  call("pause", ref);
  auto t = wait_phase(ref, v1::PHASE_PAUSED);
  EXPECT_EQ(t.observed_generation(), t.generation());
  EXPECT_FALSE(can_connect(ref, password(ref)));
  // Never more than one outcome for one generation.
  int outcomes = 0;
  for (const auto& type : history_types(ref))
    if (type.rfind("tenant.stack_", 0) == 0) ++outcomes;
  EXPECT_GE(outcomes, 1);
  EXPECT_LE(outcomes, 4);
}

TEST_F(ProvisionerTest, DriftIsDetectedAndRepaired) {
  const std::string ref = call("create", "", "drifty").tenant().ref();
  wait_phase(ref, v1::PHASE_ACTIVE);
  const std::string pw = password(ref);
  {
    PGconn* c = PQconnectdb(pg().admin_dsn().c_str());
    PGresult* r = PQexec(c, ("DROP DATABASE \"t_" + ref + "\" WITH (FORCE)").c_str());
    ASSERT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << PQerrorMessage(c);
    PQclear(r);
    PQfinish(c);
  }
  EXPECT_FALSE(can_connect(ref, pw));
  auto drifted = prov_->provisioner().resync();
  ASSERT_TRUE(drifted.ok()) << drifted.error().message;
  EXPECT_EQ(*drifted, 1);
  EXPECT_TRUE(can_connect(ref, pw)) << "drift not repaired";
  wait_phase(ref, v1::PHASE_ACTIVE);
  const auto types = history_types(ref);
  EXPECT_NE(std::find(types.begin(), types.end(), "tenant.drift_detected"), types.end());
  EXPECT_EQ(prov_->provisioner().resync().value(), 0);  // nothing left to repair
}

// The resync folds every tenant from ONE replay of the log: with three
// tenants it reads no tenant's history on its own (at 100,000 tenants that
// is the difference between seconds and minutes at start-up).
TEST_F(ProvisionerTest, ResyncFoldsEveryTenantFromOneReplay) {
  std::vector<std::string> refs;
  for (const char* name : {"one", "two", "three"})
    refs.push_back(call("create", "", name).tenant().ref());
  for (const auto& ref : refs) wait_phase(ref, v1::PHASE_ACTIVE);
  call("pause", refs[1]);
  wait_phase(refs[1], v1::PHASE_PAUSED);
  // A restarted provisioner: its consumer has nothing left to converge, so
  // the resync is the only reader of the log.
  prov_.reset();
  prov_ = std::make_unique<provisioner::App>(provisioner_options());
  ASSERT_TRUE(prov_->start().ok());
  wait_ready();
  auto drifted = prov_->provisioner().resync();
  ASSERT_TRUE(drifted.ok()) << drifted.error().message;
  EXPECT_EQ(*drifted, 0);
  const auto& k = prov_->provisioner().counters();
  EXPECT_EQ(k.history_reads.load(), 0u) << "the resync read tenant histories one by one";
  EXPECT_EQ(k.resyncs.load(), 1u);
  EXPECT_EQ(k.resync_tenants.load(), 3);
  EXPECT_GE(k.resync_events.load(), 3u * 3u);  // created, started, converged each
  EXPECT_EQ(k.drift.load(), 0u);
}

TEST_F(ProvisionerTest, SuspensionPausesTheStackAndUnsuspendResumesIt) {
  const std::string ref = call("create", "", "unpaid").tenant().ref();
  wait_phase(ref, v1::PHASE_ACTIVE);
  const std::string pw = password(ref);
  auto admin = v1::AdminService::NewStub(channel_);
  v1::LoginRequest login;
  login.set_email("admin@example.com");
  login.set_password("admin-password");
  v1::SessionResponse session;
  {
    grpc::ClientContext c;
    ASSERT_TRUE(accounts_->Login(&c, login, &session).ok());
  }
  auto as_admin = [&] {
    auto c = std::make_unique<grpc::ClientContext>();
    c->AddMetadata("authorization", "Bearer " + session.token());
    return c;
  };
  v1::SuspendTenantRequest sreq;
  sreq.set_ref(ref);
  sreq.set_reason("payment overdue");
  v1::TenantMutation m;
  ASSERT_TRUE(admin->SuspendTenant(as_admin().get(), sreq, &m).ok());
  // The phase stays SUSPENDED; the stack is paused underneath.
  const auto deadline = SteadyClock::now() + std::chrono::seconds(30);
  while (can_connect(ref, pw) && SteadyClock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(can_connect(ref, pw)) << "a suspended tenant still accepts connections";
  EXPECT_EQ(wait_phase(ref, v1::PHASE_SUSPENDED).status(), "INACTIVE");
  v1::TenantRequest ureq;
  ureq.set_ref(ref);
  ASSERT_TRUE(admin->UnsuspendTenant(as_admin().get(), ureq, &m).ok());
  wait_phase(ref, v1::PHASE_ACTIVE);
  EXPECT_TRUE(can_connect(ref, pw));
}

TEST_F(ProvisionerTest, ABrokenDriverEndsInFailedWithTheReason) {
  prov_.reset();
  auto o = provisioner_options();
  o.database_url = pg().admin_dsn("postgres");
  // A reachable cluster on which the driver's role may do nothing: a real
  // failure (not the cluster being away, which is retried until it is back).
  {
    PGconn* c = PQconnectdb(pg().admin_dsn().c_str());
    PQclear(PQexec(c,
                   "DO $$ BEGIN CREATE ROLE weakling LOGIN; EXCEPTION WHEN duplicate_object "
                   "THEN NULL; END $$"));
    // Earlier tests revoked PUBLIC's CONNECT (the driver hardens the cluster).
    PQclear(PQexec(c, "GRANT CONNECT ON DATABASE postgres TO weakling"));
    PQfinish(c);
  }
  o.tenant_db_url = pg().admin_dsn("postgres") + " user=weakling";
  o.provisioner.max_attempts = 2;
  prov_ = std::make_unique<provisioner::App>(o);
  ASSERT_TRUE(prov_->start().ok());
  wait_ready();
  const std::string ref = call("create", "", "doomed").tenant().ref();
  auto t = wait_phase(ref, v1::PHASE_FAILED);
  EXPECT_EQ(t.status(), "INIT_FAILED");
  EXPECT_NE(t.last_error().find("provision: SQL error"), std::string::npos) << t.last_error();
}

TEST_F(ProvisionerTest, ATenantBeyondTheConnectionBudgetEndsInFailedNamingTheNumbers) {
  prov_.reset();
  auto o = provisioner_options();
  o.database_url = pg().admin_dsn("postgres");
  // Room for 3 more connections on the cluster; a tenant asks for 5.
  PGconn* c = PQconnectdb(pg().admin_dsn().c_str());
  PGresult* r =
      PQexec(c,
             "SELECT current_setting('max_connections')::int - coalesce(sum(rolconnlimit) "
             "FILTER (WHERE rolconnlimit > 0), 0) FROM pg_roles WHERE rolname ~ "
             "'^t_[a-z]{20}$'");
  const int free_now = std::stoi(PQgetvalue(r, 0, 0));
  PQclear(r);
  PQfinish(c);
  o.tenant_db_connection_reserve = free_now - 3;
  o.provisioner.connection_limit = 5;
  o.provisioner.max_attempts = 2;
  prov_ = std::make_unique<provisioner::App>(o);
  ASSERT_TRUE(prov_->start().ok());
  wait_ready();
  const std::string ref = call("create", "", "too-big").tenant().ref();
  auto t = wait_phase(ref, v1::PHASE_FAILED);
  EXPECT_NE(t.last_error().find("connection budget exceeded: a limit of 5"), std::string::npos)
      << t.last_error();
  EXPECT_FALSE(can_connect(ref, "anything"));
  httplib::Client http("127.0.0.1", prov_->metrics_port());
  EXPECT_TRUE(testenv::eventually([&] {
    auto res = http.Get("/metrics");
    return res && res->body.find("supaplane_provisioner_connection_budget_refusals_total 2") !=
                      std::string::npos;
  })) << "the refusals were not counted";
}

TEST(ProvisionerStart, RefusesANegativeConnectionReserve) {
  provisioner::AppOptions o;
  o.master_key = kMasterKey;
  o.metrics_addr = "127.0.0.1:0";
  o.tenant_db_connection_reserve = -1;
  provisioner::App app(o);
  auto st = app.start();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().field, "tenant_db_connection_reserve");
}

}  // namespace
