// supaplane-api end to end over gRPC, against real nats-server, redis-server
// and PostgreSQL started by the harness.
#include <google/protobuf/util/time_util.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <sodium.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <functional>
#include <map>
#include <pqxx/pqxx>
#include <random>
#include <set>
#include <thread>

#include "alert_rules.hpp"
#include "api_options.hpp"
#include "app.hpp"
#include "eventually.hpp"
#include "servers.hpp"
#include "supaplane/auth/password.hpp"
#include "supaplane/domain/tenant.hpp"
#include "supaplane/events/history.hpp"
#include "supaplane/tls/tls.hpp"
#include "supaplane/v1/api.grpc.pb.h"

namespace {

using namespace supaplane;
namespace v1 = supaplane::v1;
using grpc::StatusCode;
using Clock = std::chrono::steady_clock;

const std::string kSecret = "test-secret-0123456789-0123456789-abcdef";
const std::string kAdminEmail = "admin@example.com";
const std::string kAdminPassword = "admin-password-1";

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    nats_.start();
    redis_.start();
    static int n = 0;
    db_ = testenv::shared_postgres().create_database("api_" + std::to_string(::getpid()) + "_" +
                                                     std::to_string(++n));
    start_api();
  }
  void TearDown() override { app_.reset(); }

  api::ApiOptions options() {
    api::ApiOptions o = testenv::api_options(nats_, redis_, db_, kSecret);
    o.admin_email = kAdminEmail;
    o.admin_password = kAdminPassword;
    return o;
  }

  void start_api() { start_api(options()); }
  void start_api(const api::ApiOptions& o) {
    app_ = std::make_unique<api::ApiApp>(o);
    auto st = app_->start();
    ASSERT_TRUE(st.ok()) << st.error().message;
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    std::string why = "?";
    while (Clock::now() < deadline && !(why = app_->readiness()).empty())
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ASSERT_EQ(why, "") << "api never became ready";
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(app_->grpc_port()),
                                   grpc::InsecureChannelCredentials());
    accounts_ = v1::AccountService::NewStub(channel_);
    tenants_ = v1::TenantService::NewStub(channel_);
    admin_ = v1::AdminService::NewStub(channel_);
  }

  std::unique_ptr<grpc::ClientContext> ctx(const std::string& token) {
    auto c = std::make_unique<grpc::ClientContext>();
    if (!token.empty()) c->AddMetadata("authorization", "Bearer " + token);
    c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    return c;
  }

  std::string signup(const std::string& email) {
    v1::SignUpRequest req;
    req.set_email(email);
    req.set_password("password-" + email);
    v1::SessionResponse resp;
    grpc::ClientContext c;
    auto s = accounts_->SignUp(&c, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.token();
  }
  std::string admin_token() {
    v1::LoginRequest req;
    req.set_email(kAdminEmail);
    req.set_password(kAdminPassword);
    v1::SessionResponse resp;
    grpc::ClientContext c;
    auto s = accounts_->Login(&c, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(resp.account().role(), "admin");
    return resp.token();
  }

  grpc::Status create(const std::string& token, const std::string& name, v1::TenantMutation* out,
                      const std::string& rid = "", v1::Plan plan = v1::PLAN_FREE) {
    v1::CreateTenantRequest req;
    req.set_name(name);
    req.set_plan(plan);
    req.set_request_id(rid);
    return tenants_->CreateTenant(ctx(token).get(), req, out);
  }
  enum class Op { pause, resume, remove };
  grpc::Status op(const std::string& token, Op o, const std::string& ref, v1::TenantMutation* out,
                  const std::string& rid = "") {
    v1::TenantRequest req;
    req.set_ref(ref);
    req.set_request_id(rid);
    auto c = ctx(token);
    switch (o) {
      case Op::pause:
        return tenants_->PauseTenant(c.get(), req, out);
      case Op::resume:
        return tenants_->ResumeTenant(c.get(), req, out);
      case Op::remove:
        return tenants_->DeleteTenant(c.get(), req, out);
    }
    return grpc::Status::CANCELLED;
  }
  grpc::Status get(const std::string& token, const std::string& ref, v1::Tenant* out,
                   std::uint64_t min_seq = 0) {
    v1::GetTenantRequest req;
    req.set_ref(ref);
    req.set_min_sequence(min_seq);
    return tenants_->GetTenant(ctx(token).get(), req, out);
  }
  std::vector<event_store::StoredMessage> history(const std::string& ref) {
    event_store::ConnectOptions o;
    o.url = nats_.url();
    auto es = event_store::EventStore::connect(o).value();
    return es->read_subject("platform.tenant." + ref).value();
  }
  void wait_applied(std::uint64_t seq) {
    ASSERT_TRUE(app_->waiter().wait_for(seq, 20000)) << "projection stuck below " << seq;
  }

  testenv::NatsServer nats_;
  testenv::RedisServer redis_;
  std::string db_;
  std::unique_ptr<api::ApiApp> app_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::AccountService::Stub> accounts_;
  std::unique_ptr<v1::TenantService::Stub> tenants_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
};

void expect_code(const grpc::Status& s, StatusCode code, const std::string& mentions = "") {
  EXPECT_EQ(s.error_code(), code) << s.error_message();
  if (!mentions.empty()) {
    EXPECT_NE(s.error_message().find(mentions), std::string::npos) << s.error_message();
  }
}

TEST_F(ApiTest, SignUpLoginAndMe) {
  const std::string token = signup("Alice@Example.com");
  ASSERT_FALSE(token.empty());
  v1::Account me;
  ASSERT_TRUE(accounts_->Me(ctx(token).get(), v1::MeRequest{}, &me).ok());
  EXPECT_EQ(me.email(), "alice@example.com");
  EXPECT_EQ(me.role(), "customer");

  v1::SignUpRequest dup;
  dup.set_email("alice@example.com");
  dup.set_password("another-password");
  v1::SessionResponse r;
  {
    grpc::ClientContext c;
    expect_code(accounts_->SignUp(&c, dup, &r), StatusCode::ALREADY_EXISTS);
  }
  v1::LoginRequest bad;
  bad.set_email("alice@example.com");
  bad.set_password("wrong-password");
  {
    grpc::ClientContext c;
    expect_code(accounts_->Login(&c, bad, &r), StatusCode::UNAUTHENTICATED);
  }
  bad.set_email("nobody@example.com");
  {
    grpc::ClientContext c;
    expect_code(accounts_->Login(&c, bad, &r), StatusCode::UNAUTHENTICATED);
  }
  v1::SignUpRequest invalid;
  invalid.set_email("not-an-email");
  invalid.set_password("long-enough-pw");
  {
    grpc::ClientContext c;
    expect_code(accounts_->SignUp(&c, invalid, &r), StatusCode::INVALID_ARGUMENT, "email");
  }
  invalid.set_email("bob@example.com");
  invalid.set_password("short");
  {
    grpc::ClientContext c;
    expect_code(accounts_->SignUp(&c, invalid, &r), StatusCode::INVALID_ARGUMENT, "password");
  }
  // The account event carries the id, never the e-mail.
  event_store::ConnectOptions o;
  o.url = nats_.url();
  auto es = event_store::EventStore::connect(o).value();
  auto msgs = es->read_subject("platform.account." + me.id()).value();
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].event_type, "account.created");
  EXPECT_EQ(msgs[0].data.find("alice"), std::string::npos);
}

TEST_F(ApiTest, TokensAreChecked) {
  v1::TenantMutation m;
  expect_code(create("", "x", &m), StatusCode::UNAUTHENTICATED);
  expect_code(create("garbage", "x", &m), StatusCode::UNAUTHENTICATED);
  // Right claims, wrong key.
  auth::TokenService forger(std::string(40, 'f'), SystemClock::instance());
  expect_code(
      create(forger.issue({"acct_aaaaaaaaaaaaaaaaaaaa", auth::Role::admin})->token, "x", &m),
      StatusCode::UNAUTHENTICATED);
  // Right key, expired.
  class OldClock : public supaplane::Clock {
   public:
    std::int64_t now_unix_ms() const override {
      return SystemClock::instance().now_unix_ms() - 7'200'000;
    }
  } old;
  auth::TokenService expired(kSecret, old);
  expect_code(
      create(expired.issue({"acct_aaaaaaaaaaaaaaaaaaaa", auth::Role::customer})->token, "x", &m),
      StatusCode::UNAUTHENTICATED, "expired");
  grpc::ClientContext c;
  c.AddMetadata("authorization", "Basic abc");
  v1::CreateTenantRequest req;
  req.set_name("x");
  expect_code(tenants_->CreateTenant(&c, req, &m), StatusCode::UNAUTHENTICATED);
}

TEST_F(ApiTest, TenantLifecycleAndErrors) {
  const std::string alice = signup("alice@example.com");
  const std::string bob = signup("bob@example.com");
  v1::TenantMutation m;
  ASSERT_TRUE(create(alice, "Shop", &m, "", v1::PLAN_PRO).ok());
  const std::string ref = m.tenant().ref();
  EXPECT_TRUE(TenantRef::valid(ref));
  EXPECT_EQ(m.tenant().phase(), v1::PHASE_PROVISIONING);
  EXPECT_EQ(m.tenant().status(), "COMING_UP");
  EXPECT_EQ(m.tenant().plan(), v1::PLAN_PRO);
  EXPECT_EQ(m.tenant().api_url(), "https://" + ref + ".supabase.localhost");
  EXPECT_GT(m.sequence(), 0u);

  v1::Tenant t;
  ASSERT_TRUE(get(alice, ref, &t, m.sequence()).ok());
  EXPECT_EQ(t.name(), "Shop");
  EXPECT_EQ(t.version(), m.sequence());

  ASSERT_TRUE(op(alice, Op::pause, ref, &m).ok());
  EXPECT_EQ(m.tenant().phase(), v1::PHASE_PAUSING);
  EXPECT_EQ(m.tenant().generation(), 2);
  ASSERT_TRUE(op(alice, Op::resume, ref, &m).ok());
  EXPECT_EQ(m.tenant().phase(), v1::PHASE_PROVISIONING);

  // Another customer's tenant does not exist for bob.
  expect_code(get(bob, ref, &t), StatusCode::NOT_FOUND);
  expect_code(op(bob, Op::pause, ref, &m), StatusCode::NOT_FOUND);
  {
    v1::ListTenantEventsRequest req;
    req.set_ref(ref);
    v1::ListTenantEventsResponse ev;
    expect_code(tenants_->ListTenantEvents(ctx(bob).get(), req, &ev), StatusCode::NOT_FOUND);
  }
  // Bad fields are named.
  expect_code(get(alice, "NOT-A-REF", &t), StatusCode::INVALID_ARGUMENT, "ref");
  expect_code(op(alice, Op::pause, "abc", &m), StatusCode::INVALID_ARGUMENT, "ref");
  expect_code(create(alice, "", &m), StatusCode::INVALID_ARGUMENT, "name");
  expect_code(create(alice, std::string(65, 'n'), &m), StatusCode::INVALID_ARGUMENT, "name");
  expect_code(create(alice, "ok", &m, "", static_cast<v1::Plan>(42)), StatusCode::INVALID_ARGUMENT,
              "plan");
  expect_code(create(alice, "ok", &m, "bad request id"), StatusCode::INVALID_ARGUMENT,
              "request_id");
  expect_code(get(alice, "zzzzzzzzzzzzzzzzzzzz", &t), StatusCode::NOT_FOUND);
  {
    v1::ListTenantsRequest req;
    req.set_page_size(501);
    v1::ListTenantsResponse resp;
    expect_code(tenants_->ListTenants(ctx(alice).get(), req, &resp), StatusCode::INVALID_ARGUMENT,
                "page_size");
    req.set_page_size(10);
    req.set_page_token("forged!");
    expect_code(tenants_->ListTenants(ctx(alice).get(), req, &resp), StatusCode::INVALID_ARGUMENT,
                "page_token");
  }
  // An oversized request is refused before it reaches us; nothing appended.
  const auto before = history(ref).size();
  expect_code(create(alice, std::string(2 << 20, 'x'), &m), StatusCode::RESOURCE_EXHAUSTED);

  // Admin only.
  v1::SuspendTenantRequest sreq;
  sreq.set_ref(ref);
  sreq.set_reason("payment overdue");
  expect_code(admin_->SuspendTenant(ctx(alice).get(), sreq, &m), StatusCode::PERMISSION_DENIED);
  const std::string admin = admin_token();
  ASSERT_TRUE(admin_->SuspendTenant(ctx(admin).get(), sreq, &m).ok());
  EXPECT_EQ(m.tenant().phase(), v1::PHASE_SUSPENDED);
  EXPECT_TRUE(m.tenant().suspended());
  // Owner can pause, but not resume, a suspended tenant.
  ASSERT_TRUE(op(alice, Op::pause, ref, &m).ok());
  expect_code(op(alice, Op::resume, ref, &m), StatusCode::FAILED_PRECONDITION, "suspended");
  v1::TenantRequest ureq;
  ureq.set_ref(ref);
  ASSERT_TRUE(admin_->UnsuspendTenant(ctx(admin).get(), ureq, &m).ok());
  ASSERT_TRUE(op(alice, Op::resume, ref, &m).ok());

  ASSERT_TRUE(op(alice, Op::remove, ref, &m).ok());
  EXPECT_EQ(m.tenant().phase(), v1::PHASE_DELETING);
  EXPECT_EQ(m.tenant().status(), "GOING_DOWN");
  expect_code(op(alice, Op::pause, ref, &m), StatusCode::FAILED_PRECONDITION);
  expect_code(op(alice, Op::resume, ref, &m), StatusCode::FAILED_PRECONDITION);
  const auto seq_before = m.sequence();
  ASSERT_TRUE(op(alice, Op::remove, ref, &m).ok());  // idempotent
  EXPECT_EQ(m.sequence(), seq_before);

  // The history, in order, with actors.
  v1::ListTenantEventsRequest hreq;
  hreq.set_ref(ref);
  v1::ListTenantEventsResponse ev;
  ASSERT_TRUE(tenants_->ListTenantEvents(ctx(alice).get(), hreq, &ev).ok());
  EXPECT_EQ(ev.next_page_token(), "");
  std::vector<std::string> types;
  for (const auto& e : ev.events()) types.push_back(e.type());
  EXPECT_EQ(types, (std::vector<std::string>{
                       "tenant.created", "tenant.pause_requested", "tenant.resume_requested",
                       "tenant.suspended", "tenant.pause_requested", "tenant.unsuspended",
                       "tenant.resume_requested", "tenant.deletion_requested"}));
  EXPECT_EQ(ev.events(0).actor().rfind("account:acct_", 0), 0u);
  EXPECT_EQ(ev.events(3).actor().rfind("admin:acct_", 0), 0u);
  EXPECT_NE(ev.events(3).details().find("payment overdue"), std::string::npos);
  EXPECT_EQ(history(ref).size(), before + 5);  // suspend, pause, unsuspend, resume, delete
}

TEST_F(ApiTest, AdminFoldsATenantAsOfATime) {
  const std::string alice = signup("alice@example.com");
  const std::string admin = admin_token();
  v1::TenantMutation created;
  ASSERT_TRUE(create(alice, "Shop", &created).ok());
  const std::string ref = created.tenant().ref();
  const std::int64_t created_ms =
      google::protobuf::util::TimeUtil::TimestampToMilliseconds(created.tenant().updated_at());
  // The pause must carry a later millisecond than the creation.
  while (std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
             .count() <= created_ms)
    std::this_thread::yield();
  v1::TenantMutation paused;
  ASSERT_TRUE(op(alice, Op::pause, ref, &paused).ok());

  auto as_of = [&](const std::string& token, const std::string& r, std::int64_t ms,
                   v1::TenantAsOf* out, bool set_time = true) {
    v1::GetTenantAsOfRequest req;
    req.set_ref(r);
    if (set_time)
      *req.mutable_as_of() = google::protobuf::util::TimeUtil::MillisecondsToTimestamp(ms);
    return admin_->GetTenantAsOf(ctx(token).get(), req, out);
  };
  v1::TenantAsOf at;
  ASSERT_TRUE(as_of(admin, ref, created_ms, &at).ok());
  EXPECT_EQ(at.tenant().phase(), v1::PHASE_PROVISIONING);
  EXPECT_EQ(at.tenant().name(), "Shop");
  EXPECT_EQ(at.tenant().version(), created.sequence());
  ASSERT_EQ(at.events_size(), 1);
  EXPECT_EQ(at.events(0).type(), "tenant.created");
  EXPECT_EQ(google::protobuf::util::TimeUtil::TimestampToMilliseconds(at.as_of()), created_ms);

  const std::int64_t paused_ms =
      google::protobuf::util::TimeUtil::TimestampToMilliseconds(paused.tenant().updated_at());
  v1::TenantAsOf later;
  ASSERT_TRUE(as_of(admin, ref, paused_ms, &later).ok());
  EXPECT_EQ(later.tenant().phase(), v1::PHASE_PAUSING);
  ASSERT_EQ(later.events_size(), 2);
  EXPECT_EQ(later.events(1).type(), "tenant.pause_requested");
  EXPECT_EQ(later.events(1).actor().rfind("account:acct_", 0), 0u);

  // Before the tenant existed, never existed, bad input, not an admin.
  v1::TenantAsOf none;
  expect_code(as_of(admin, ref, created_ms - 1, &none), StatusCode::NOT_FOUND);
  expect_code(as_of(admin, "zzzzzzzzzzzzzzzzzzzz", paused_ms, &none), StatusCode::NOT_FOUND);
  expect_code(as_of(admin, ref, 0, &none, false), StatusCode::INVALID_ARGUMENT, "as_of");
  expect_code(as_of(admin, "NOT-A-REF", paused_ms, &none), StatusCode::INVALID_ARGUMENT, "ref");
  expect_code(as_of(alice, ref, paused_ms, &none), StatusCode::PERMISSION_DENIED);
}

TEST_F(ApiTest, CredentialsNeedTheMasterKey) {
  const std::string alice = signup("alice@example.com");
  v1::TenantMutation m;
  ASSERT_TRUE(create(alice, "shop", &m).ok());
  v1::GetTenantRequest req;
  req.set_ref(m.tenant().ref());
  req.set_min_sequence(m.sequence());  // read after the create, not before it is projected
  v1::TenantCredentials creds;
  expect_code(tenants_->GetTenantCredentials(ctx(alice).get(), req, &creds),
              StatusCode::FAILED_PRECONDITION, "SUPAPLANE_MASTER_KEY");
  req.set_ref("bad");
  expect_code(tenants_->GetTenantCredentials(ctx(alice).get(), req, &creds),
              StatusCode::INVALID_ARGUMENT, "ref");
}

TEST_F(ApiTest, ListingPagesAndFilters) {
  const std::string alice = signup("alice@example.com");
  const std::string bob = signup("bob@example.com");
  v1::TenantMutation m;
  std::vector<std::string> refs;
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(create(alice, "t" + std::to_string(i), &m).ok());
    refs.push_back(m.tenant().ref());
  }
  ASSERT_TRUE(create(bob, "bobs", &m).ok());
  ASSERT_TRUE(op(alice, Op::pause, refs[1], &m).ok());
  const auto last = m.sequence();
  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    v1::ListTenantsRequest req;
    req.set_page_size(2);
    req.set_page_token(token);
    req.set_min_sequence(last);
    v1::ListTenantsResponse resp;
    ASSERT_TRUE(tenants_->ListTenants(ctx(alice).get(), req, &resp).ok());
    for (const auto& t : resp.tenants()) seen.push_back(t.ref());
    token = resp.next_page_token();
    ASSERT_LT(++pages, 10);
  } while (!token.empty());
  EXPECT_EQ(seen, refs);  // creation order, only alice's
  EXPECT_EQ(pages, 3);
  {  // A full page that ends the listing comes without a token to an empty one.
    v1::ListTenantsRequest req;
    req.set_page_size(5);
    v1::ListTenantsResponse resp;
    ASSERT_TRUE(tenants_->ListTenants(ctx(alice).get(), req, &resp).ok());
    EXPECT_EQ(resp.tenants_size(), 5);
    EXPECT_EQ(resp.next_page_token(), "");
  }
  v1::ListTenantsRequest req;
  req.set_phase(v1::PHASE_PAUSING);
  v1::ListTenantsResponse resp;
  ASSERT_TRUE(tenants_->ListTenants(ctx(alice).get(), req, &resp).ok());
  ASSERT_EQ(resp.tenants_size(), 1);
  EXPECT_EQ(resp.tenants(0).ref(), refs[1]);
  v1::ListTenantsResponse all;
  ASSERT_TRUE(
      admin_->ListAllTenants(ctx(admin_token()).get(), v1::ListTenantsRequest{}, &all).ok());
  EXPECT_EQ(all.tenants_size(), 6);
  expect_code(admin_->ListAllTenants(ctx(alice).get(), v1::ListTenantsRequest{}, &all),
              StatusCode::PERMISSION_DENIED);
}

TEST_F(ApiTest, SameRequestIdIsOneEventAndTheSameAnswer) {
  const std::string alice = signup("alice@example.com");
  v1::TenantMutation a, b;
  ASSERT_TRUE(create(alice, "shop", &a, "create-1").ok());
  ASSERT_TRUE(create(alice, "shop", &b, "create-1").ok());
  EXPECT_EQ(a.tenant().ref(), b.tenant().ref());
  EXPECT_EQ(a.sequence(), b.sequence());
  const std::string ref = a.tenant().ref();
  ASSERT_TRUE(op(alice, Op::pause, ref, &a, "pause-1").ok());
  ASSERT_TRUE(op(alice, Op::resume, ref, &b, "resume-1").ok());
  v1::TenantMutation again;
  ASSERT_TRUE(op(alice, Op::pause, ref, &again, "pause-1").ok());  // a client retry
  EXPECT_EQ(again.sequence(), a.sequence());
  const auto h = history(ref);
  ASSERT_EQ(h.size(), 3u);
  EXPECT_EQ(h[0].event_type, "tenant.created");
  EXPECT_EQ(h[1].event_type, "tenant.pause_requested");
  EXPECT_EQ(h[2].event_type, "tenant.resume_requested");
  // Another customer using the same request id gets its own tenant.
  const std::string bob = signup("bob@example.com");
  ASSERT_TRUE(create(bob, "shop", &b, "create-1").ok());
  EXPECT_NE(b.tenant().ref(), ref);
}

TEST_F(ApiTest, EightConcurrentWritersLeaveAConsistentHistory) {
  const std::string alice = signup("alice@example.com");
  v1::TenantMutation m;
  ASSERT_TRUE(create(alice, "contended", &m).ok());
  const std::string ref = m.tenant().ref();
  std::atomic<int> appended{0}, failures{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < 8; ++w) {
    writers.emplace_back([&, w] {
      std::mt19937 rng(w);
      for (int i = 0; i < 40; ++i) {
        v1::TenantMutation out;
        auto s = op(alice, rng() % 2 ? Op::pause : Op::resume, ref, &out,
                    "w" + std::to_string(w) + "-" + std::to_string(i));
        if (!s.ok()) {
          failures++;
          ADD_FAILURE() << s.error_message();
        }
      }
    });
  }
  for (auto& t : writers) t.join();
  EXPECT_EQ(failures.load(), 0);
  const auto h = history(ref);
  // Every decision saw the state before it: generations 1, 2, 3, ... with no
  // gap or repeat, and pause/resume alternate (a no-op appends nothing).
  std::int64_t gen = 0;
  std::string last_type;
  for (const auto& msg : h) {
    v1::EventEnvelope env;
    ASSERT_TRUE(env.ParseFromString(msg.data));
    const auto& e = env.tenant();
    std::int64_t g = 0;
    if (e.has_created()) g = e.created().generation();
    if (e.has_pause_requested()) g = e.pause_requested().generation();
    if (e.has_resume_requested()) g = e.resume_requested().generation();
    EXPECT_EQ(g, gen + 1) << "at seq " << msg.sequence;
    gen = g;
    EXPECT_NE(msg.event_type, last_type) << "a no-op was appended at seq " << msg.sequence;
    last_type = msg.event_type;
  }
  EXPECT_GT(h.size(), 2u);
  // The projection folds to the same state as the log.
  const auto folded = events::fold_history(ref, h);
  v1::Tenant t;
  ASSERT_TRUE(get(alice, ref, &t, h.back().sequence).ok());
  EXPECT_EQ(t.generation(), folded.generation());
  EXPECT_EQ(t.desired_state(), folded.desired_state());
  EXPECT_EQ(t.version(), h.back().sequence);
}

TEST_F(ApiTest, RandomCommandsThenRebuildEqualsLiveKeyForKey) {
  std::vector<std::string> users = {signup("a@example.com"), signup("b@example.com"),
                                    signup("c@example.com")};
  const std::string admin = admin_token();
  std::vector<std::pair<std::string, std::string>> tenants;  // (token, ref)
  std::mt19937 rng(7);
  std::uint64_t last = 0;
  for (int i = 0; i < 2000; ++i) {
    v1::TenantMutation m;
    const int pick = static_cast<int>(rng() % 100);
    grpc::Status s;
    if (tenants.size() < 5 || pick < 10) {
      const auto& u = users[rng() % users.size()];
      s = create(u, "t" + std::to_string(i), &m, "", static_cast<v1::Plan>(1 + rng() % 3));
      if (s.ok()) tenants.emplace_back(u, m.tenant().ref());
    } else {
      const auto& [tok, ref] = tenants[rng() % tenants.size()];
      if (pick < 40) {
        s = op(tok, Op::pause, ref, &m);
      } else if (pick < 75) {
        s = op(tok, Op::resume, ref, &m);
      } else if (pick < 80) {
        s = op(tok, Op::remove, ref, &m);
      } else if (pick < 90) {
        v1::SuspendTenantRequest r;
        r.set_ref(ref);
        r.set_reason("audit " + std::to_string(i));
        s = admin_->SuspendTenant(ctx(admin).get(), r, &m);
      } else {
        v1::TenantRequest r;
        r.set_ref(ref);
        s = admin_->UnsuspendTenant(ctx(admin).get(), r, &m);
      }
    }
    if (s.ok()) {
      last = std::max<std::uint64_t>(last, m.sequence());
    } else {
      ASSERT_EQ(s.error_code(), StatusCode::FAILED_PRECONDITION) << s.error_message();
    }
  }
  wait_applied(last);
  projection::RedisConnection conn(projection::parse_redis_url(redis_.url()).value(),
                                   projection::TenantProjection().scripts().all());
  projection::TenantProjection proj;
  const std::string live = proj.active_generation(conn).value();
  auto live_dump = proj.dump(conn, live).value();
  event_store::ConnectOptions o;
  o.url = nats_.url();
  auto es = event_store::EventStore::connect(o).value();
  auto rebuilt = projection::rebuild_tenants(*es, conn, proj, "gcheck", false);
  ASSERT_TRUE(rebuilt.ok()) << rebuilt.error().message;
  EXPECT_FALSE(rebuilt->switched);
  auto rebuilt_dump = proj.dump(conn, "gcheck").value();
  ASSERT_GT(live_dump.size(), tenants.size());
  EXPECT_EQ(rebuilt_dump.size(), live_dump.size());
  for (const auto& [k, v] : live_dump) {
    auto it = rebuilt_dump.find(k);
    ASSERT_NE(it, rebuilt_dump.end()) << "rebuild lacks key " << k;
    EXPECT_EQ(it->second, v) << "key " << k << " differs";
  }
  // The operator's rebuild switches the live generation; reads keep working.
  v1::RebuildProjectionRequest rq;
  rq.set_name("api");
  v1::RebuildProjectionResponse rr;
  ASSERT_TRUE(admin_->RebuildProjection(ctx(admin).get(), rq, &rr).ok());
  EXPECT_GE(rr.checkpoint(), last);
  EXPECT_NE(proj.active_generation(conn).value(), live);
  EXPECT_TRUE(proj.dump(conn, live)->empty()) << "old generation left behind";
  v1::Tenant t;
  ASSERT_TRUE(get(tenants[0].first, tenants[0].second, &t).ok());
  rq.set_name("nope");
  expect_code(admin_->RebuildProjection(ctx(admin).get(), rq, &rr), StatusCode::INVALID_ARGUMENT,
              "name");
}

TEST_F(ApiTest, RestartResumesFromCheckpointWithoutReapplying) {
  const std::string alice = signup("alice@example.com");
  v1::TenantMutation m;
  std::vector<std::string> refs;
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(create(alice, "t" + std::to_string(i), &m).ok());
    refs.push_back(m.tenant().ref());
  }
  wait_applied(m.sequence());
  EXPECT_GE(app_->projector().counters().applied.load(), 20u);
  app_.reset();
  start_api();
  ASSERT_TRUE(op(alice, Op::pause, refs[3], &m).ok());
  wait_applied(m.sequence());
  // Give a wrongly re-delivering consumer the chance to show itself.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(app_->projector().counters().applied.load(), 1u);
  EXPECT_EQ(app_->projector().counters().skipped.load(), 0u);
  v1::Tenant t;
  ASSERT_TRUE(get(alice, refs[3], &t, m.sequence()).ok());
  EXPECT_EQ(t.phase(), v1::PHASE_PAUSING);
  ASSERT_TRUE(get(alice, refs[19], &t).ok());
  EXPECT_EQ(t.name(), "t19");
}

TEST_F(ApiTest, MalformedMessagesAreTerminatedCountedAndServingGoesOn) {
  const std::string alice = signup("alice@example.com");
  event_store::ConnectOptions o;
  o.url = nats_.url();
  auto es = event_store::EventStore::connect(o).value();
  event_store::OutgoingEvent junk;
  junk.subject = "platform.tenant.qqqqqqqqqqqqqqqqqqqq";
  junk.body = std::string("\xff\xfe not protobuf \x01", 18);
  ASSERT_TRUE(es->append(junk).ok());
  junk.subject = "platform.tenant.NotAValidRef";
  v1::EventEnvelope env;
  env.mutable_tenant()->mutable_pause_requested()->set_generation(2);
  junk.body = env.SerializeAsString();
  ASSERT_TRUE(es->append(junk).ok());
  // A kind from a newer build: field 99 of TenantEvent, unknown here.
  v1::EventEnvelope future;
  future.set_occurred_at_unix_ms(1);
  std::string payload = future.SerializeAsString();
  const std::string tenant_event =
      std::string("\x9a\x06\x02\x08\x01", 5);  // field 99, {field 1: 1}
  payload += std::string("\x82\x01", 2) + static_cast<char>(tenant_event.size()) + tenant_event;
  junk.subject = "platform.tenant.rrrrrrrrrrrrrrrrrrrr";
  junk.body = payload;
  ASSERT_TRUE(es->append(junk).ok());

  v1::TenantMutation m;
  ASSERT_TRUE(create(alice, "after-junk", &m).ok());
  v1::Tenant t;
  ASSERT_TRUE(get(alice, m.tenant().ref(), &t, m.sequence()).ok());
  EXPECT_EQ(app_->projector().counters().malformed.load(), 2u);
  EXPECT_EQ(app_->projector().counters().unknown.load(), 1u);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(app_->runner().stats().terminated.load(), 2u);  // never redelivered
  httplib::Client http("127.0.0.1", app_->metrics_port());
  auto res = http.Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_NE(res->body.find("supaplane_api_projection_malformed_total 2"), std::string::npos);
  EXPECT_NE(res->body.find("supaplane_api_projection_unknown_events_total 1"), std::string::npos);
  EXPECT_EQ(http.Get("/healthz")->status, 200);
  EXPECT_EQ(http.Get("/readyz")->status, 200);
}

TEST_F(ApiTest, UndecodableMessageOnATenantKeepsItsVersionInStep) {
  const std::string alice = signup("alice@example.com");
  v1::TenantMutation m;
  ASSERT_TRUE(create(alice, "shop", &m).ok());
  const std::string ref = m.tenant().ref();
  event_store::ConnectOptions o;
  o.url = nats_.url();
  auto es = event_store::EventStore::connect(o).value();
  event_store::OutgoingEvent junk;
  junk.subject = "platform.tenant." + ref;
  junk.body = "\xff\xff garbage";
  auto seq = es->append(junk).value().sequence.value();
  v1::Tenant t;
  ASSERT_TRUE(get(alice, ref, &t, seq).ok());
  EXPECT_EQ(t.version(), seq);  // the next command expects the right sequence
  EXPECT_EQ(t.phase(), v1::PHASE_PROVISIONING);
  ASSERT_TRUE(op(alice, Op::pause, ref, &m).ok());
  EXPECT_EQ(m.tenant().phase(), v1::PHASE_PAUSING);
}

TEST_F(ApiTest, LostRedisDataIsRebuiltFromTheLog) {
  const std::string alice = signup("alice@example.com");
  v1::TenantMutation m;
  ASSERT_TRUE(create(alice, "before", &m).ok());
  const std::string before = m.tenant().ref();
  wait_applied(m.sequence());
  {
    projection::RedisConnection c(projection::parse_redis_url(redis_.url()).value(), {});
    ASSERT_TRUE(c.command({"FLUSHALL"}).ok());
  }
  ASSERT_TRUE(create(alice, "after", &m).ok());
  v1::Tenant t;
  ASSERT_TRUE(get(alice, m.tenant().ref(), &t, m.sequence()).ok());
  ASSERT_TRUE(get(alice, before, &t).ok()) << "older tenant lost with Redis";
  EXPECT_EQ(t.name(), "before");
  // One rebuild, whether the guard or the projector noticed first.
  EXPECT_EQ(app_->guard().rebuilds(projection::RebuildReason::pointer_missing), 1u);
}

TEST_F(ApiTest, RedisDataLostWhileTheApiWasDownIsRebuiltAtStart) {
  const std::string alice = signup("alice@example.com");
  v1::TenantMutation m;
  ASSERT_TRUE(create(alice, "kept", &m).ok());
  const std::string ref = m.tenant().ref();
  wait_applied(m.sequence());
  app_.reset();
  {
    projection::RedisConnection c(projection::parse_redis_url(redis_.url()).value(), {});
    ASSERT_TRUE(c.command({"FLUSHALL"}).ok());
  }
  start_api();
  v1::Tenant t;
  ASSERT_TRUE(get(alice, ref, &t).ok()) << "tenant lost with Redis";
  EXPECT_EQ(t.name(), "kept");
  ASSERT_TRUE(op(alice, Op::pause, ref, &m).ok());
  ASSERT_TRUE(get(alice, ref, &t, m.sequence()).ok());
  EXPECT_EQ(t.phase(), v1::PHASE_PAUSING);
}

TEST_F(ApiTest, NatsRestartMidRunLosesNoAcknowledgedCommand) {
  const std::string alice = signup("alice@example.com");
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::map<std::string, std::string> acked;  // request id → ref
  std::atomic<int> unavailable{0};
  std::thread writer([&] {
    for (int i = 0; !stop; ++i) {
      const std::string rid = "c-" + std::to_string(i);
      // Retry the same request id until it is acknowledged (as a client would).
      for (;;) {
        v1::TenantMutation m;
        auto s = create(alice, "t" + std::to_string(i), &m, rid);
        if (s.ok()) {
          std::lock_guard lk(mu);
          acked[rid] = m.tenant().ref();
          break;
        }
        EXPECT_EQ(s.error_code(), StatusCode::UNAVAILABLE) << s.error_message();
        unavailable++;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
  });
  auto count = [&] {
    std::lock_guard lk(mu);
    return acked.size();
  };
  while (count() < 20) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  nats_.restart();
  const auto after = count();
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (count() < after + 20 && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  stop = true;
  writer.join();
  ASSERT_GE(count(), after + 20) << "api did not recover after the NATS restart";
  // Every acknowledged create is in the log exactly once and in the projection.
  std::uint64_t max_seq = 0;
  for (const auto& [rid, ref] : acked) {
    auto h = history(ref);
    ASSERT_EQ(h.size(), 1u) << rid;
    max_seq = std::max(max_seq, h[0].sequence);
  }
  wait_applied(max_seq);
  for (const auto& [rid, ref] : acked) {
    v1::Tenant t;
    ASSERT_TRUE(get(alice, ref, &t).ok()) << rid;
  }
}

TEST_F(ApiTest, WatchStreamsOnlyTheCallersTenants) {
  const std::string alice = signup("alice@example.com");
  const std::string bob = signup("bob@example.com");
  grpc::ClientContext c;
  c.AddMetadata("authorization", "Bearer " + alice);
  auto reader = tenants_->WatchTenants(&c, v1::WatchTenantsRequest{});
  // Wait until the server registered the watcher.
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while (Clock::now() < deadline) {
    httplib::Client http("127.0.0.1", app_->metrics_port());
    auto res = http.Get("/metrics");
    if (res && res->body.find("supaplane_api_watchers 1") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  v1::TenantMutation m;
  ASSERT_TRUE(create(bob, "bobs", &m).ok());
  ASSERT_TRUE(create(alice, "alices", &m).ok());
  const std::string ref = m.tenant().ref();
  ASSERT_TRUE(op(alice, Op::pause, ref, &m).ok());
  v1::TenantChange ch;
  ASSERT_TRUE(reader->Read(&ch));
  EXPECT_EQ(ch.tenant().ref(), ref);
  EXPECT_EQ(ch.event_type(), "tenant.created");
  ASSERT_TRUE(reader->Read(&ch));
  EXPECT_EQ(ch.tenant().ref(), ref);
  EXPECT_EQ(ch.event_type(), "tenant.pause_requested");
  EXPECT_EQ(ch.tenant().phase(), v1::PHASE_PAUSING);
  c.TryCancel();
  while (reader->Read(&ch)) {
  }
}

// ------------------------------------------------------------------ limits
// The api under abuse: rate limits, the hashing gate, quotas, watch streams,
// impossible min_sequence, the admin address, ports. Each case restarts the
// api with the limit it checks (the harness turns them off for other suites).
class ApiLimits : public ApiTest {
 protected:
  void restart(const std::function<void(api::ApiOptions&)>& tune) {
    app_.reset();
    auto o = options();
    tune(o);
    start_api(o);
  }
  double metric(const std::string& series) {
    httplib::Client http("127.0.0.1", app_->metrics_port());
    auto res = http.Get("/metrics");
    if (!res) return -1;
    const auto at = res->body.find("\n" + series + " ");
    if (at == std::string::npos) return 0;
    return std::stod(res->body.substr(at + series.size() + 2));
  }
  grpc::Status signup_as(const std::string& email, const std::string& forwarded_for = "") {
    v1::SignUpRequest req;
    req.set_email(email);
    req.set_password("password-" + email);
    v1::SessionResponse resp;
    grpc::ClientContext c;
    if (!forwarded_for.empty()) c.AddMetadata("x-forwarded-for", forwarded_for);
    return accounts_->SignUp(&c, req, &resp);
  }
  grpc::Status login_as(const std::string& email, const std::string& password,
                        std::string* role = nullptr) {
    v1::LoginRequest req;
    req.set_email(email);
    req.set_password(password);
    v1::SessionResponse resp;
    grpc::ClientContext c;
    auto s = accounts_->Login(&c, req, &resp);
    if (role) *role = resp.account().role();
    return s;
  }
};

TEST_F(ApiLimits, SignUpAndLoginAreRateLimitedPerAddressAndPerEmail) {
  restart([](api::ApiOptions& o) {
    o.auth_rate_per_address = 4;
    o.auth_rate_per_email = 100;
  });
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(signup_as("a" + std::to_string(i) + "@example.com").ok()) << i;
  // An untrusted peer's x-forwarded-for changes nothing.
  expect_code(signup_as("a9@example.com", "198.51.100.1"), StatusCode::RESOURCE_EXHAUSTED,
              "address");
  expect_code(login_as("a0@example.com", "password-a0@example.com"),
              StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(metric("supaplane_api_refused_total{reason=\"rate_per_address\"}"), 2);

  // Behind a trusted proxy (the console), each browser has its own budget.
  restart([](api::ApiOptions& o) {
    o.auth_rate_per_address = 2;
    o.auth_rate_per_email = 3;
    o.trusted_proxies = "10.0.0.0/8, 127.0.0.1";
  });
  EXPECT_TRUE(signup_as("b1@example.com", "203.0.113.7").ok());
  EXPECT_TRUE(signup_as("b2@example.com", "203.0.113.7").ok());
  expect_code(signup_as("b3@example.com", "203.0.113.7"), StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(signup_as("b3@example.com", "203.0.113.8").ok());
  // Per e-mail, from many addresses: guessing one account's password.
  std::vector<std::string> seen;
  for (int i = 0; i < 4; ++i) {
    grpc::ClientContext c;
    c.AddMetadata("x-forwarded-for", "192.0.2." + std::to_string(i));
    v1::LoginRequest req;
    req.set_email("b1@example.com");
    req.set_password("wrong-password");
    v1::SessionResponse resp;
    seen.push_back(std::to_string(static_cast<int>(accounts_->Login(&c, req, &resp).error_code())));
  }
  // b1 signed up once (1 of 3), two wrong guesses, then refused.
  EXPECT_EQ(seen, (std::vector<std::string>{"16", "16", "8", "8"}));
  EXPECT_GE(metric("supaplane_api_refused_total{reason=\"rate_per_email\"}"), 2);
}

TEST_F(ApiLimits, LoginDoesTheSameWorkForAnUnknownEmailAsForAWrongPassword) {
  const std::string known = "known@example.com";
  signup(known);
  const double before = metric("supaplane_api_password_checks_total");
  expect_code(login_as("nobody@example.com", "whatever-1"), StatusCode::UNAUTHENTICATED,
              "invalid email or password");
  expect_code(login_as(known, "wrong-password"), StatusCode::UNAUTHENTICATED,
              "invalid email or password");
  // Both ran an argon2id verification (an unknown e-mail against a decoy hash).
  EXPECT_EQ(metric("supaplane_api_password_checks_total"), before + 2);
}

TEST_F(ApiLimits, ALoginReplacesAHashMadeWithTheFormerParameters) {
  const std::string email = "older@example.com";
  const std::string password = "password-" + email;
  signup(email);
  // The account as it was stored before the parameters changed: libsodium's
  // INTERACTIVE limits (64 MiB).
  char old_hash[crypto_pwhash_STRBYTES];
  ASSERT_GE(sodium_init(), 0);
  ASSERT_EQ(crypto_pwhash_str_alg(old_hash, password.data(), password.size(),
                                  crypto_pwhash_OPSLIMIT_INTERACTIVE,
                                  crypto_pwhash_MEMLIMIT_INTERACTIVE, crypto_pwhash_ALG_ARGON2ID13),
            0);
  auto stored = [&] {
    pqxx::connection c(db_);
    pqxx::work tx(c);
    return tx.exec_params1("SELECT password_hash FROM accounts WHERE email = $1", email)[0]
        .as<std::string>();
  };
  {
    pqxx::connection c(db_);
    pqxx::work tx(c);
    tx.exec_params("UPDATE accounts SET password_hash = $2 WHERE email = $1", email,
                   std::string(old_hash));
    tx.commit();
  }
  const std::string upgraded = "supaplane_api_password_rehashes_total{result=\"upgraded\"}";
  // A wrong password changes nothing.
  expect_code(login_as(email, "wrong-password"), StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(stored(), old_hash);
  EXPECT_EQ(metric(upgraded), 0);
  // The right one logs in with the old hash and leaves a current one behind.
  ASSERT_TRUE(login_as(email, password).ok());
  const std::string now = stored();
  EXPECT_EQ(now.rfind("$argon2id$v=19$m=19456,t=2,p=1$", 0), 0u) << now;
  EXPECT_FALSE(auth::password_needs_rehash(now));
  EXPECT_EQ(metric(upgraded), 1);
  ASSERT_TRUE(login_as(email, password).ok());
  EXPECT_EQ(stored(), now);  // current hashes are left alone
  EXPECT_EQ(metric(upgraded), 1);
}

std::size_t resident_bytes() {
  std::ifstream f("/proc/self/statm");
  std::size_t pages = 0, rss = 0;
  f >> pages >> rss;
  return rss * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

TEST_F(ApiLimits, AFloodOfSignUpsIsTurnedAwayWithBoundedMemoryAndReadsGoOn) {
  restart([](api::ApiOptions& o) {
    o.auth_concurrency = 2;
    o.auth_max_waiting = 4;
    o.auth_wait_ms = 2000;
  });
  const std::string alice = signup("alice@example.com");
  v1::TenantMutation m;
  ASSERT_TRUE(create(alice, "steady", &m).ok());
  const std::size_t base = resident_bytes();
  std::atomic<std::size_t> peak{base};
  std::atomic<bool> sampling{true};
  std::thread sampler([&] {
    while (sampling) {
      peak = std::max(peak.load(), resident_bytes());
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  constexpr int kFlood = 500;
  struct Call {
    grpc::ClientContext ctx;
    v1::SignUpRequest req;
    v1::SessionResponse resp;
  };
  std::vector<std::unique_ptr<Call>> calls;
  std::mutex mu;
  std::condition_variable cv;
  int finished = 0;
  std::map<StatusCode, int> codes;
  std::map<std::string, int> messages;
  for (int i = 0; i < kFlood; ++i) {
    auto c = std::make_unique<Call>();
    c->req.set_email("flood" + std::to_string(i) + "@example.com");
    c->req.set_password("flood-password");
    c->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    accounts_->async()->SignUp(&c->ctx, &c->req, &c->resp, [&](grpc::Status s) {
      std::lock_guard lk(mu);
      ++codes[s.error_code()];
      ++messages[s.error_message()];
      ++finished;
      cv.notify_all();
    });
    calls.push_back(std::move(c));
  }
  // While the flood is in flight, reads answer.
  v1::Tenant t;
  // (EXPECT, not ASSERT: the flood's callbacks use this frame until all
  // have finished.)
  for (int i = 0; i < 5; ++i) {
    const auto s = get(alice, m.tenant().ref(), &t);
    EXPECT_TRUE(s.ok()) << s.error_code() << " " << s.error_message();
  }
  {
    std::unique_lock lk(mu);
    cv.wait(lk, [&] { return finished == kFlood; });  // each call has a 60 s deadline
  }
  sampling = false;
  sampler.join();
  EXPECT_EQ(codes[StatusCode::OK] + codes[StatusCode::RESOURCE_EXHAUSTED], kFlood)
      << "other codes: " << codes.size();
  EXPECT_GT(codes[StatusCode::RESOURCE_EXHAUSTED], 0);
  EXPECT_GT(codes[StatusCode::OK], 0);
  EXPECT_EQ(metric("supaplane_api_refused_total{reason=\"auth_busy\"}"),
            codes[StatusCode::RESOURCE_EXHAUSTED])
      << [&] {
           std::string all;
           for (const auto& [text, n] : messages) all += std::to_string(n) + "× " + text + "; ";
           return all;
         }();
  // Two argon2id hashes (64 MiB each) at a time, not hundreds.
  const double grew_mib = static_cast<double>(peak.load() - base) / (1 << 20);
  std::cout << "flood: " << codes[StatusCode::OK] << " signed up, "
            << codes[StatusCode::RESOURCE_EXHAUSTED] << " turned away, resident +" << grew_mib
            << " MiB\n";
  EXPECT_LT(grew_mib, 512);
}

TEST_F(ApiLimits, MinSequenceBeyondTheLogIsRefusedAtOnce) {
  const std::string alice = signup("alice@example.com");
  v1::TenantMutation m;
  ASSERT_TRUE(create(alice, "seq", &m).ok());
  v1::Tenant t;
  expect_code(get(alice, m.tenant().ref(), &t, std::uint64_t{1} << 62), StatusCode::OUT_OF_RANGE,
              "beyond the log's last sequence");
  v1::ListTenantsRequest lr;
  lr.set_min_sequence(std::uint64_t{1} << 62);
  v1::ListTenantsResponse resp;
  expect_code(tenants_->ListTenants(ctx(alice).get(), lr, &resp), StatusCode::OUT_OF_RANGE);
  EXPECT_EQ(metric("supaplane_api_refused_total{reason=\"min_sequence\"}"), 2);
  // A sequence the log has is still waited for and served.
  EXPECT_TRUE(get(alice, m.tenant().ref(), &t, m.sequence()).ok());
}

TEST_F(ApiLimits, CallersRefusedAtTheEdgeAreCountedByReason) {
  const std::string alice = signup("alice@example.com");
  const std::string bob = signup("bob@example.com");
  v1::TenantMutation m;
  ASSERT_TRUE(create(alice, "mine", &m).ok());
  // No token, and a token that does not verify.
  expect_code(create("", "x", &m), StatusCode::UNAUTHENTICATED);
  expect_code(create("garbage", "x", &m), StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(metric("supaplane_api_refused_total{reason=\"unauthenticated\"}"), 2);
  // A customer on an admin call.
  v1::ListTenantsRequest lr;
  v1::ListTenantsResponse lresp;
  expect_code(admin_->ListAllTenants(ctx(bob).get(), lr, &lresp), StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(metric("supaplane_api_refused_total{reason=\"not_admin\"}"), 1);
  // Another customer's tenant is NOT_FOUND, on a read and on its history.
  v1::Tenant t;
  expect_code(get(bob, m.tenant().ref(), &t), StatusCode::NOT_FOUND);
  v1::ListTenantEventsRequest er;
  er.set_ref(m.tenant().ref());
  v1::ListTenantEventsResponse eresp;
  expect_code(tenants_->ListTenantEvents(ctx(bob).get(), er, &eresp), StatusCode::NOT_FOUND);
  EXPECT_EQ(metric("supaplane_api_refused_total{reason=\"not_owner\"}"), 2);
  // The owner is not refused.
  EXPECT_TRUE(get(alice, m.tenant().ref(), &t).ok());
  EXPECT_EQ(metric("supaplane_api_refused_total{reason=\"not_owner\"}"), 2);
}

TEST_F(ApiLimits, TenantsPerAccountAreLimitedByPlanEvenUnderABurst) {
  restart([](api::ApiOptions& o) {
    o.quota_free_tenants = 2;
    o.quota_tenants = 3;
  });
  const std::string alice = signup("alice@example.com");
  // Ten FREE creates at once: exactly two get through.
  std::vector<std::thread> threads;
  std::atomic<int> ok{0}, refused{0};
  std::vector<std::string> refs(10);
  for (int i = 0; i < 10; ++i)
    threads.emplace_back([&, i] {
      v1::TenantMutation m;
      auto s = create(alice, "burst" + std::to_string(i), &m);
      if (s.ok()) {
        ++ok;
        refs[i] = m.tenant().ref();
      } else if (s.error_code() == StatusCode::RESOURCE_EXHAUSTED) {
        ++refused;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), 2);
  EXPECT_EQ(refused.load(), 8);
  v1::TenantMutation m;
  expect_code(create(alice, "one-more", &m), StatusCode::RESOURCE_EXHAUSTED, "FREE tenants");
  // A paid one fits (3 in all), then nothing does.
  ASSERT_TRUE(create(alice, "paid", &m, "", v1::PLAN_PRO).ok());
  expect_code(create(alice, "paid2", &m, "", v1::PLAN_PRO), StatusCode::RESOURCE_EXHAUSTED,
              "3 tenants");
  // Deleting one frees its place.
  std::string gone;
  for (const auto& r : refs)
    if (!r.empty()) gone = r;
  ASSERT_TRUE(op(alice, Op::remove, gone, &m).ok());
  v1::Tenant t;
  ASSERT_TRUE(get(alice, gone, &t, m.sequence()).ok());
  EXPECT_TRUE(create(alice, "again", &m).ok());
  // Admins are not held to customer quotas.
  const std::string admin = admin_token();
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(create(admin, "ops" + std::to_string(i), &m).ok()) << i;
  EXPECT_EQ(metric("supaplane_api_refused_total{reason=\"quota_free_tenants\"}"), 9);
  EXPECT_EQ(metric("supaplane_api_refused_total{reason=\"quota_tenants\"}"), 1);
}

TEST_F(ApiLimits, WatchStreamsPerAccountAreLimited) {
  restart([](api::ApiOptions& o) { o.watch_streams_per_account = 2; });
  const std::string alice = signup("alice@example.com");
  const std::string bob = signup("bob@example.com");
  auto open = [&](const std::string& token, grpc::ClientContext* c) {
    c->AddMetadata("authorization", "Bearer " + token);
    return tenants_->WatchTenants(c, v1::WatchTenantsRequest{});
  };
  grpc::ClientContext c1, c2, c3, c4;
  auto r1 = open(alice, &c1);
  auto r2 = open(alice, &c2);
  ASSERT_TRUE(testenv::eventually([&] { return metric("supaplane_api_watchers") == 2; }));
  auto r3 = open(alice, &c3);
  v1::TenantChange ch;
  EXPECT_FALSE(r3->Read(&ch));
  expect_code(r3->Finish(), StatusCode::RESOURCE_EXHAUSTED, "watch streams");
  // Another account is not affected.
  auto r4 = open(bob, &c4);
  ASSERT_TRUE(testenv::eventually([&] { return metric("supaplane_api_watchers") == 3; }));
  c1.TryCancel();
  while (r1->Read(&ch)) {
  }
  ASSERT_TRUE(testenv::eventually([&] { return metric("supaplane_api_watchers") == 2; }));
  grpc::ClientContext c5;
  auto r5 = open(alice, &c5);
  ASSERT_TRUE(testenv::eventually([&] { return metric("supaplane_api_watchers") == 3; }));
  for (auto* c : {&c2, &c4, &c5}) c->TryCancel();
  for (auto* r : {&r2, &r4, &r5})
    while ((*r)->Read(&ch)) {
    }
}

TEST_F(ApiLimits, TheAdminAddressNeverTakesOverACustomerAccount) {
  const std::string taken = "taken@example.com";
  signup(taken);
  auto o = options();
  o.admin_email = taken;
  o.admin_password = "operator-password-1";
  o.grpc_addr = "127.0.0.1:0";
  o.metrics_addr = "127.0.0.1:0";
  api::ApiApp second(o);
  ASSERT_TRUE(second.start().ok());
  ASSERT_TRUE(testenv::eventually([&] {
    return second.readiness().find("belongs to a customer account") != std::string::npos;
  })) << second.readiness();
  second.stop();
  std::string role;
  ASSERT_TRUE(login_as(taken, "password-" + taken, &role).ok());
  EXPECT_EQ(role, "customer");
  expect_code(login_as(taken, "operator-password-1"), StatusCode::UNAUTHENTICATED);
}

TEST_F(ApiLimits, ASecondProcessCannotShareTheGrpcOrMetricsPort) {
  for (bool grpc_port : {true, false}) {
    auto o = options();
    o.grpc_addr = "127.0.0.1:" + std::to_string(grpc_port ? app_->grpc_port() : 0);
    o.metrics_addr = "127.0.0.1:" + std::to_string(grpc_port ? 0 : app_->metrics_port());
    const std::string taken = grpc_port ? o.grpc_addr : o.metrics_addr;
    api::ApiApp second(o);
    auto st = second.start();
    ASSERT_FALSE(st.ok()) << taken << " was shared";
    EXPECT_NE(st.error().message.find(taken), std::string::npos) << st.error().message;
  }
}

TEST_F(ApiLimits, TenantHistoryComesAPageAtATime) {
  const std::string alice = signup("alice@example.com");
  v1::TenantMutation m;
  ASSERT_TRUE(create(alice, "pages", &m).ok());
  const std::string ref = m.tenant().ref();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(op(alice, Op::pause, ref, &m).ok());
    ASSERT_TRUE(op(alice, Op::resume, ref, &m).ok());
  }
  v1::ListTenantEventsRequest req;
  req.set_ref(ref);
  req.set_page_size(3);
  std::vector<std::uint64_t> seqs;
  int pages = 0;
  do {
    v1::ListTenantEventsResponse resp;
    ASSERT_TRUE(tenants_->ListTenantEvents(ctx(alice).get(), req, &resp).ok());
    ASSERT_LE(resp.events_size(), 3);
    for (const auto& e : resp.events()) seqs.push_back(e.sequence());
    // Documented: the token is the last event's sequence (clients follow a
    // history by passing the sequence of the last event they hold).
    if (!resp.next_page_token().empty()) {
      EXPECT_EQ(resp.next_page_token(), std::to_string(resp.events().rbegin()->sequence()));
    }
    req.set_page_token(resp.next_page_token());
    ++pages;
  } while (!req.page_token().empty() && pages < 10);
  EXPECT_EQ(seqs.size(), 7u);  // created + 3 × (pause, resume)
  EXPECT_EQ(pages, 3);
  EXPECT_TRUE(std::is_sorted(seqs.begin(), seqs.end()));
  for (const char* bad : {"x", "-1", "99999999999999999999999"}) {
    req.set_page_token(bad);
    v1::ListTenantEventsResponse resp;
    expect_code(tenants_->ListTenantEvents(ctx(alice).get(), req, &resp),
                StatusCode::INVALID_ARGUMENT, "page_token");
  }
  req.set_page_token("");
  req.set_page_size(1001);
  v1::ListTenantEventsResponse resp;
  expect_code(tenants_->ListTenantEvents(ctx(alice).get(), req, &resp),
              StatusCode::INVALID_ARGUMENT, "page_size");
}

// deploy/prometheus/alerts.yml must only name metrics the api exports.
TEST_F(ApiTest, DeployAlertRulesAndDashboardUseOnlyMetricsTheApiExports) {
  const std::string alice = signup("alice@example.com");
  v1::TenantMutation m;
  ASSERT_TRUE(create(alice, "metrics", &m).ok());
  wait_applied(m.sequence());
  httplib::Client http("127.0.0.1", app_->metrics_port());
  auto res = http.Get("/metrics");
  ASSERT_TRUE(res);
  // Its alert group and the Grafana dashboard's panels, against one scrape.
  const auto mon = testenv::check_monitoring("supaplane-api", "supaplane_api_", res->body);
  EXPECT_GE(mon.alert_uses, 5u);
  EXPECT_GT(mon.panel_uses, 0u);
  EXPECT_EQ(mon.missing, std::vector<std::string>{});
  // Every group is checked by its service's test (see alerts.yml's header).
  EXPECT_EQ(testenv::alert_groups(),
            (std::vector<std::string>{"supaplane-api", "supaplane-provisioner", "supaplane-billing",
                                      "supaplane-router-sync"}));
  // ... and so is every metric of the dashboard: each belongs to one of them.
  for (const auto& use : testenv::dashboard_metric_uses()) {
    const bool checked = use.metric.rfind("supaplane_api_", 0) == 0 ||
                         use.metric.rfind("supaplane_billing_", 0) == 0 ||
                         use.metric.rfind("supaplane_provisioner_", 0) == 0 ||
                         use.metric.rfind("supaplane_router_", 0) == 0;
    EXPECT_TRUE(checked) << use.where << " uses " << use.metric << ", which no test scrapes";
  }
}

grpc::Status signup_over(const std::string& addr,
                         const std::shared_ptr<grpc::ChannelCredentials>& creds,
                         const std::string& email) {
  auto stub = v1::AccountService::NewStub(grpc::CreateChannel(addr, creds));
  grpc::ClientContext c;
  c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::SignUpRequest req;
  req.set_email(email);
  req.set_password("password-" + email);
  v1::SessionResponse resp;
  auto st = stub->SignUp(&c, req, &resp);
  if (st.ok()) {
    EXPECT_FALSE(resp.token().empty());
  }
  return st;
}

/// supaplanectl's exit code for `args` (its output goes to `log`).
int supaplanectl(const std::vector<std::string>& args, const std::string& log) {
  std::vector<std::string> argv{SUPAPLANECTL};
  argv.insert(argv.end(), args.begin(), args.end());
  testenv::Process p;
  p.start(argv, log);
  return p.wait();
}

TEST_F(ApiTest, GrpcOverTlsServesOnlyClientsThatTrustItsCertificate) {
  testenv::TempDir dir("supaplane-tls");
  const auto cert = testenv::self_signed_cert(dir.path(), "api");
  const auto stranger = testenv::self_signed_cert(dir.path(), "stranger");
  app_.reset();
  auto o = options();
  o.tls_cert = cert.cert;
  o.tls_key = cert.key;
  start_api(o);
  const std::string addr = "127.0.0.1:" + std::to_string(app_->grpc_port());

  auto trusting = [](const std::string& ca) {
    return tls::channel_credentials({true, ca}).value();
  };
  EXPECT_TRUE(signup_over(addr, trusting(cert.cert), "tls@example.com").ok());
  // Plaintext, or TLS that trusts another certificate: no connection at all.
  EXPECT_EQ(signup_over(addr, grpc::InsecureChannelCredentials(), "plain@example.com").error_code(),
            StatusCode::UNAVAILABLE);
  EXPECT_EQ(signup_over(addr, trusting(stranger.cert), "mitm@example.com").error_code(),
            StatusCode::UNAVAILABLE);

  // The CLI: --ca-file speaks TLS and trusts that file; without it, plaintext fails.
  const std::string log = dir.path() + "/cli.log";
  const std::string tokens = dir.path() + "/token";
  EXPECT_EQ(supaplanectl({"--api", addr, "--ca-file", cert.cert, "--token-file", tokens, "signup",
                          "--email", "cli@example.com", "--password", "password-cli-1"},
                         log),
            0);
  EXPECT_EQ(supaplanectl({"--api", addr, "--token-file", tokens, "--timeout", "5", "me"}, log), 6);
  EXPECT_EQ(
      supaplanectl({"--api", addr, "--ca-file", cert.cert, "--token-file", tokens, "me"}, log), 0);
  EXPECT_EQ(supaplanectl({"--api", addr, "--ca-file", dir.path() + "/missing.pem", "--token-file",
                          tokens, "me"},
                         log),
            2);
}

TEST(ApiStart, TlsNeedsBothFilesAndRealPem) {
  testenv::TempDir dir("supaplane-tls");
  const auto cert = testenv::self_signed_cert(dir.path(), "api");
  const std::string not_pem = dir.path() + "/not.pem";
  {
    std::FILE* f = std::fopen(not_pem.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("hello\n", f);
    std::fclose(f);
  }
  struct Case {
    std::string cert, key, field;
  };
  for (const auto& c : std::vector<Case>{{cert.cert, "", "tls_key"},
                                         {"", cert.key, "tls_cert"},
                                         {dir.path() + "/missing.crt", cert.key, "tls_cert"},
                                         {not_pem, cert.key, "tls_cert"},
                                         {cert.cert, not_pem, "tls_key"},
                                         {cert.key, cert.key, "tls_cert"},
                                         {cert.cert, cert.cert, "tls_key"}}) {
    api::ApiOptions o;
    o.jwt_secret = kSecret;
    o.tls_cert = c.cert;
    o.tls_key = c.key;
    api::ApiApp app(o);
    auto st = app.start();
    ASSERT_FALSE(st.ok()) << c.cert << " / " << c.key;
    EXPECT_EQ(st.error().field, c.field) << st.error().message;
    // The message names files, never their contents.
    EXPECT_EQ(st.error().message.find("PRIVATE KEY"), std::string::npos);
  }
}

TEST(ApiStart, RefusesABadAdminPassword) {
  api::ApiOptions o;
  o.jwt_secret = kSecret;
  o.admin_email = "admin@example.com";
  o.admin_password = "short";
  api::ApiApp app(o);
  auto st = app.start();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().field, "admin_password");
}

TEST_F(ApiTest, StandardHealthServiceAnswersServing) {
  grpc::GenericStub generic(channel_);
  grpc::ClientContext c;
  grpc::ByteBuffer request;  // HealthCheckRequest{service: ""} is empty
  grpc::Slice empty("", 0);
  request = grpc::ByteBuffer(&empty, 1);
  grpc::ByteBuffer reply;
  grpc::Status status;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  generic.UnaryCall(&c, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &reply,
                    [&](grpc::Status s) {
                      std::lock_guard lk(mu);
                      status = s;
                      done = true;
                      cv.notify_one();
                    });
  std::unique_lock lk(mu);
  ASSERT_TRUE(cv.wait_for(lk, std::chrono::seconds(10), [&] { return done; }));
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(reply.Dump(&slices).ok());
  std::string bytes;
  for (const auto& sl : slices) bytes.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));  // status: SERVING
}

TEST(ApiStart, RefusesWithoutJwtSecret) {
  api::ApiOptions o;
  o.jwt_secret = "short";
  api::ApiApp app(o);
  auto st = app.start();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("SUPAPLANE_JWT_SECRET"), std::string::npos);
}

}  // namespace

namespace {

// A dead dependency at start: the api starts, says why it is not ready, and
// becomes ready once NATS appears.
TEST(ApiStart, StartsWithNatsDownAndBecomesReadyWhenItAppears) {
  supaplane::testenv::NatsServer nats;  // not started yet
  supaplane::testenv::RedisServer redis;
  redis.start();
  const std::string db = supaplane::testenv::shared_postgres().create_database(
      "api_nats_down_" + std::to_string(::getpid()));
  supaplane::api::ApiApp app(supaplane::testenv::api_options(nats, redis, db, kSecret));
  const auto t0 = Clock::now();
  ASSERT_TRUE(app.start().ok());
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(10));
  EXPECT_NE(app.readiness().find("NATS"), std::string::npos) << app.readiness();
  httplib::Client http("127.0.0.1", app.metrics_port());
  EXPECT_EQ(http.Get("/readyz")->status, 503);
  nats.start();
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (!app.readiness().empty() && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(app.readiness(), "");
  EXPECT_EQ(http.Get("/readyz")->status, 200);
}

}  // namespace
