// Two in-process api replicas over one nats-server, redis-server and
// PostgreSQL sharing one Redis projection: random commands spread over both
// leave each replica's reads and watch streams equal to the log's fold, and
// a Redis that loses its data at run time (killed and restarted empty,
// FLUSHALL) is rebuilt from the log while the replicas run, reads answering
// UNAVAILABLE in between and never NOT_FOUND for a tenant that exists.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "api_options.hpp"
#include "app.hpp"
#include "eventually.hpp"
#include "servers.hpp"
#include "supaplane/domain/tenant.hpp"
#include "supaplane/events/history.hpp"
#include "supaplane/projection/guard.hpp"
#include "supaplane/v1/api.grpc.pb.h"

namespace {

using namespace supaplane;
namespace v1 = supaplane::v1;
using grpc::StatusCode;
using namespace std::chrono_literals;

const std::string kSecret = "test-secret-0123456789-0123456789-abcdef";

struct Replica {
  std::unique_ptr<api::ApiApp> app;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::AccountService::Stub> accounts;
  std::unique_ptr<v1::TenantService::Stub> tenants;
};

/// Everything a WatchTenants stream delivered, read on its own thread.
struct Watch {
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReader<v1::TenantChange>> reader;
  std::thread thread;
  std::mutex mu;
  std::map<std::string, v1::TenantChange> last;  ///< ref → latest change seen
  std::uint64_t max_sequence{0};
  void stop() {
    ctx.TryCancel();
    if (thread.joinable()) thread.join();
  }
};

class ReplicasTest : public ::testing::Test {
 protected:
  void five_tenants_seen_by_both(const std::string& token, std::vector<std::string>* refs);
  void SetUp() override {
    nats_.start();
    redis_.start();
    static int n = 0;
    db_ = testenv::shared_postgres().create_database("replicas_" + std::to_string(::getpid()) +
                                                     "_" + std::to_string(++n));
    for (int i = 0; i < 2; ++i) start_replica("r" + std::to_string(i));
  }
  void TearDown() override {
    for (auto& w : watches_) w->stop();
    for (auto& r : replicas_) r.app.reset();
  }

  void start_replica(const std::string& id) {
    api::ApiOptions o = testenv::api_options(nats_, redis_, db_, kSecret);
    o.replica_id = id;
    Replica r;
    r.app = std::make_unique<api::ApiApp>(o);
    auto st = r.app->start();
    ASSERT_TRUE(st.ok()) << st.error().message;
    std::string why;
    ASSERT_TRUE(testenv::eventually([&] { return (why = r.app->readiness()).empty(); }, 20s))
        << "replica " << id << " never ready: " << why;
    r.channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(r.app->grpc_port()),
                                    grpc::InsecureChannelCredentials());
    r.accounts = v1::AccountService::NewStub(r.channel);
    r.tenants = v1::TenantService::NewStub(r.channel);
    replicas_.push_back(std::move(r));
  }

  std::unique_ptr<grpc::ClientContext> ctx(const std::string& token) {
    auto c = std::make_unique<grpc::ClientContext>();
    c->AddMetadata("authorization", "Bearer " + token);
    c->set_deadline(std::chrono::system_clock::now() + 20s);
    return c;
  }
  std::string signup(Replica& r, const std::string& email) {
    v1::SignUpRequest req;
    req.set_email(email);
    req.set_password("password-" + email);
    v1::SessionResponse resp;
    grpc::ClientContext c;
    auto s = r.accounts->SignUp(&c, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.token();
  }
  grpc::Status create(Replica& r, const std::string& token, const std::string& name,
                      v1::TenantMutation* out) {
    v1::CreateTenantRequest req;
    req.set_name(name);
    req.set_plan(v1::PLAN_FREE);
    return r.tenants->CreateTenant(ctx(token).get(), req, out);
  }
  grpc::Status get(Replica& r, const std::string& token, const std::string& ref, v1::Tenant* out,
                   std::uint64_t min_seq = 0) {
    v1::GetTenantRequest req;
    req.set_ref(ref);
    req.set_min_sequence(min_seq);
    return r.tenants->GetTenant(ctx(token).get(), req, out);
  }
  Watch& watch(Replica& r, const std::string& token) {
    auto w = std::make_unique<Watch>();
    w->ctx.AddMetadata("authorization", "Bearer " + token);
    w->reader = r.tenants->WatchTenants(&w->ctx, v1::WatchTenantsRequest{});
    Watch* p = w.get();
    w->thread = std::thread([p] {
      v1::TenantChange c;
      while (p->reader->Read(&c)) {
        std::lock_guard lk(p->mu);
        p->max_sequence = std::max<std::uint64_t>(p->max_sequence, c.sequence());
        auto& slot = p->last[c.tenant().ref()];
        if (c.sequence() >= slot.sequence()) slot = c;
      }
    });
    watches_.push_back(std::move(w));
    return *watches_.back();
  }

  std::unique_ptr<event_store::EventStore> connect_store() {
    event_store::ConnectOptions o;
    o.url = nats_.url();
    return event_store::EventStore::connect(o).value();
  }

  /// The tenant as the log alone says.
  v1::TenantState fold(event_store::EventStore& es, const std::string& ref) {
    auto msgs = es.read_subject("platform.tenant." + ref);
    EXPECT_TRUE(msgs.ok());
    return events::fold_history(ref, *msgs);
  }

  testenv::NatsServer nats_;
  testenv::RedisServer redis_;
  std::string db_;
  std::vector<Replica> replicas_;
  std::vector<std::unique_ptr<Watch>> watches_;
};

void expect_same(const v1::Tenant& t, const v1::TenantState& s, const std::string& where) {
  EXPECT_EQ(t.version(), s.version()) << where << " " << s.ref();
  EXPECT_EQ(t.phase(), s.phase()) << where << " " << s.ref();
  EXPECT_EQ(t.generation(), s.generation()) << where << " " << s.ref();
  EXPECT_EQ(t.suspended(), s.suspended()) << where << " " << s.ref();
  EXPECT_EQ(t.name(), s.name()) << where << " " << s.ref();
}

TEST_F(ReplicasTest, RandomCommandsOverTwoReplicasEqualTheLogsFoldOnEach) {
  std::vector<std::string> users;
  for (int i = 0; i < 4; ++i)
    users.push_back(signup(replicas_[i % 2], "u" + std::to_string(i) + "@example.com"));
  // A watch on each replica, for the first user's tenants.
  Watch& w0 = watch(replicas_[0], users[0]);
  Watch& w1 = watch(replicas_[1], users[0]);
  std::vector<std::pair<int, std::string>> tenants;  // (user, ref)
  std::mt19937 rng(11);
  std::uint64_t last = 0;
  int ok = 0;
  for (int i = 0; i < 2000; ++i) {
    Replica& r = replicas_[rng() % 2];
    const int pick = static_cast<int>(rng() % 100);
    v1::TenantMutation m;
    grpc::Status s;
    if (tenants.size() < 40 && (tenants.size() < 4 || pick < 10)) {
      const int u = static_cast<int>(rng() % users.size());
      s = create(r, users[u], "t" + std::to_string(i), &m);
      if (s.ok()) tenants.emplace_back(u, m.tenant().ref());
    } else {
      const auto& [u, ref] = tenants[rng() % tenants.size()];
      v1::TenantRequest req;
      req.set_ref(ref);
      auto c = ctx(users[u]);
      if (pick < 40)
        s = r.tenants->PauseTenant(c.get(), req, &m);
      else if (pick < 80)
        s = r.tenants->ResumeTenant(c.get(), req, &m);
      else
        s = r.tenants->RotateTenantKeys(c.get(), req, &m);
    }
    if (s.ok()) {
      ++ok;
      last = std::max<std::uint64_t>(last, m.sequence());
    } else {
      ASSERT_EQ(s.error_code(), StatusCode::FAILED_PRECONDITION) << s.error_message();
    }
  }
  ASSERT_GT(ok, 1000);
  auto es = connect_store();
  std::set<std::string> owned_by_first;
  for (const auto& [u, ref] : tenants) {
    const v1::TenantState want = fold(*es, ref);
    if (u == 0) owned_by_first.insert(ref);
    for (std::size_t k = 0; k < replicas_.size(); ++k) {
      v1::Tenant t;
      auto s = get(replicas_[k], users[u], ref, &t, last);
      ASSERT_TRUE(s.ok()) << s.error_message();
      expect_same(t, want, "replica " + std::to_string(k));
    }
  }
  // Each replica's watch stream ends at each tenant's folded state, whichever
  // replica applied the event.
  for (Watch* w : {&w0, &w1}) {
    ASSERT_TRUE(testenv::eventually([&] {
      std::lock_guard lk(w->mu);
      for (const auto& ref : owned_by_first) {
        auto it = w->last.find(ref);
        if (it == w->last.end() || it->second.tenant().version() != fold(*es, ref).version())
          return false;
      }
      return true;
    })) << "a watch did not see every tenant's last change";
    std::lock_guard lk(w->mu);
    for (const auto& ref : owned_by_first)
      expect_same(w->last.at(ref).tenant(), fold(*es, ref), "watch");
  }
  // Both replicas applied to one projection: a rebuild equals it key for key.
  projection::TenantProjection proj;
  projection::RedisConnection conn(projection::parse_redis_url(redis_.url()).value(),
                                   proj.scripts().all());
  const std::string live = proj.active_generation(conn).value();
  auto live_dump = proj.dump(conn, live).value();
  auto rebuilt = projection::rebuild_tenants(*es, conn, proj, "gcheck", false);
  ASSERT_TRUE(rebuilt.ok()) << rebuilt.error().message;
  auto rebuilt_dump = proj.dump(conn, "gcheck").value();
  ASSERT_GT(live_dump.size(), tenants.size());
  EXPECT_EQ(rebuilt_dump.size(), live_dump.size());
  for (const auto& [k, v] : live_dump) {
    auto it = rebuilt_dump.find(k);
    ASSERT_NE(it, rebuilt_dump.end()) << "rebuild lacks key " << k;
    EXPECT_EQ(it->second, v) << "key " << k << " differs";
  }
}

/// Polls GetTenant of every ref on every replica until all answer OK; any
/// answer other than OK or UNAVAILABLE fails the test.
void expect_back_without_not_found(
    ReplicasTest* t, std::vector<Replica>& replicas, const std::string& token,
    const std::vector<std::string>& refs,
    const std::function<grpc::Status(Replica&, const std::string&, v1::Tenant*)>& get) {
  (void)t;
  int unavailable = 0;
  std::string unexpected;
  const bool back = testenv::eventually(
      [&] {
        for (auto& r : replicas) {
          for (const auto& ref : refs) {
            v1::Tenant out;
            auto s = get(r, ref, &out);
            if (s.ok()) continue;
            if (s.error_code() == StatusCode::UNAVAILABLE) {
              ++unavailable;
              return false;
            }
            unexpected = std::to_string(s.error_code()) + " " + s.error_message();
            return true;
          }
        }
        return true;
      },
      30s, 20ms);
  EXPECT_TRUE(back) << "tenants not readable again within 30 s";
  EXPECT_EQ(unexpected, "") << "a read answered neither OK nor UNAVAILABLE";
  (void)token;
}

/// Five tenants created over both replicas, applied by both.
void ReplicasTest::five_tenants_seen_by_both(const std::string& token,
                                             std::vector<std::string>* refs) {
  std::uint64_t last = 0;
  for (int i = 0; i < 5; ++i) {
    v1::TenantMutation m;
    ASSERT_TRUE(create(replicas_[i % 2], token, "t" + std::to_string(i), &m).ok());
    refs->push_back(m.tenant().ref());
    last = m.sequence();
  }
  for (auto& r : replicas_) ASSERT_TRUE(r.app->waiter().wait_for(last, 20000));
}

TEST_F(ReplicasTest, RedisKilledAndRestartedEmptyIsRebuiltWhileTheReplicasRun) {
  const std::string alice = signup(replicas_[0], "alice@example.com");
  std::vector<std::string> refs;
  ASSERT_NO_FATAL_FAILURE(five_tenants_seen_by_both(alice, &refs));
  redis_.stop(9);  // SIGKILL: no persistence, it comes back empty
  redis_.start();
  auto getter = [&](Replica& r, const std::string& ref, v1::Tenant* out) {
    return get(r, alice, ref, out);
  };
  expect_back_without_not_found(this, replicas_, alice, refs, getter);
  // And the projection goes on: a tenant created afterwards is read on both.
  v1::TenantMutation m;
  ASSERT_TRUE(create(replicas_[1], alice, "after", &m).ok());
  for (auto& r : replicas_) {
    v1::Tenant t;
    auto s = get(r, alice, m.tenant().ref(), &t, m.sequence());
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(t.name(), "after");
  }
  // Counted just after the new generation goes live.
  EXPECT_TRUE(testenv::eventually([&] {
    std::uint64_t rebuilds = 0;
    for (auto& r : replicas_)
      for (auto why : projection::kRebuildReasons) rebuilds += r.app->guard().rebuilds(why);
    return rebuilds >= 1;
  }));
}

TEST_F(ReplicasTest, FlushallWithNoNewEventIsNoticedAndRebuilt) {
  const std::string alice = signup(replicas_[0], "alice@example.com");
  std::vector<std::string> refs;
  ASSERT_NO_FATAL_FAILURE(five_tenants_seen_by_both(alice, &refs));
  {
    projection::RedisConnection c(projection::parse_redis_url(redis_.url()).value(), {});
    ASSERT_TRUE(c.command({"FLUSHALL"}).ok());
  }
  auto getter = [&](Replica& r, const std::string& ref, v1::Tenant* out) {
    return get(r, alice, ref, out);
  };
  // No command follows: only the guard can notice.
  expect_back_without_not_found(this, replicas_, alice, refs, getter);
  EXPECT_TRUE(testenv::eventually([&] {
    std::uint64_t rebuilds = 0;
    for (auto& r : replicas_)
      rebuilds += r.app->guard().rebuilds(projection::RebuildReason::pointer_missing);
    return rebuilds == 1;
  })) << "not exactly one rebuild across both replicas";
  // A list answers again too.
  v1::ListTenantsRequest lr;
  v1::ListTenantsResponse resp;
  ASSERT_TRUE(replicas_[1].tenants->ListTenants(ctx(alice).get(), lr, &resp).ok());
  EXPECT_EQ(resp.tenants_size(), 5);
}

}  // namespace
