// The api projector against real nats-server and redis-server: a Redis
// outage blocks it in place (no event lost or applied out of order), and a
// rebuild can switch generations while events keep arriving.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <thread>

#include "eventually.hpp"
#include "servers.hpp"
#include "supaplane/domain/tenant.hpp"
#include "supaplane/event_store/consumer.hpp"
#include "supaplane/events/tenant_events.hpp"
#include "supaplane/projection/guard.hpp"
#include "supaplane/projection/projector.hpp"
#include "tenant_commands.hpp"

namespace {

using namespace supaplane;
namespace v1 = supaplane::v1;

class ProjectionTest : public ::testing::Test, public projection::ProjectorObserver {
 protected:
  void SetUp() override {
    nats_.start();
    redis_.start();
    event_store::ConnectOptions o;
    o.url = nats_.url();
    store_ = event_store::EventStore::connect(o).value();
    ASSERT_TRUE(store_->verify_stream().ok());
    addr_ = projection::parse_redis_url(redis_.url()).value();
    conn_ = std::make_unique<projection::RedisConnection>(addr_, proj_.scripts().all());
    ASSERT_TRUE(proj_.init(*conn_).ok());
    projector_ = std::make_unique<projection::TenantProjector>(proj_, addr_, waiter_, *this);
    event_store::ConsumerOptions co;
    co.durable = "projection-test";
    co.fetch_timeout_ms = 50;
    runner_ = std::make_unique<event_store::ConsumerRunner>(*store_, co, *projector_);
    runner_->start();
  }
  void TearDown() override {
    projector_->request_stop();
    runner_->stop();
  }

  /// Appends `n` alternating pause/resume events to a new tenant; returns the last sequence.
  std::uint64_t append_history(const std::string& ref, int n) {
    v1::Actor actor;
    actor.set_kind(v1::ACTOR_KIND_SYSTEM);
    actor.set_id("test");
    std::uint64_t last = 0;
    for (int k = 0; k < n; ++k) {
      v1::TenantEvent e;
      if (k == 0) {
        auto* c = e.mutable_created();
        c->set_name("t");
        c->set_plan(v1::PLAN_FREE);
        c->set_owner_account_id("acct_cccccccccccccccccccc");
        c->set_generation(1);
      } else if (k % 2) {
        e.mutable_pause_requested()->set_generation(k + 1);
      } else {
        e.mutable_resume_requested()->set_generation(k + 1);
      }
      auto out = events::make_tenant_event(ref, e, actor, "", event_store::Expected::at(last), "",
                                           "", 1000 + k);
      auto r = store_->append(out);
      EXPECT_TRUE(r.ok()) << r.error().message;
      last = r->sequence.value();
    }
    return last;
  }

  v1::TenantState read(const std::string& ref) {
    auto s = proj_.get(*conn_, ref);
    EXPECT_TRUE(s.ok());
    return s.ok() && s->has_value() ? **s : v1::TenantState{};
  }

  testenv::NatsServer nats_;
  testenv::RedisServer redis_;
  std::unique_ptr<event_store::EventStore> store_;
  projection::RedisAddress addr_;
  projection::TenantProjection proj_;
  std::unique_ptr<projection::RedisConnection> conn_;
  projection::SequenceWaiter waiter_;
  std::unique_ptr<projection::TenantProjector> projector_;
  std::unique_ptr<event_store::ConsumerRunner> runner_;
};

TEST_F(ProjectionTest, RedisOutageBlocksInPlaceAndLosesNothing) {
  const std::string a = "aaaaaaaaaaaaaaaaaaaa", b = "bbbbbbbbbbbbbbbbbbbb";
  const auto s1 = append_history(a, 21);
  ASSERT_TRUE(waiter_.wait_for(s1, 10000));
  redis_.freeze();
  const auto s2 = append_history(b, 30);
  // While Redis hangs nothing can be applied.
  EXPECT_FALSE(waiter_.wait_for(s2, 500));
  // Hold the outage until a write has timed out (hiredis: 5 s), so the
  // retry path runs, not only a slow call.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (projector_->counters().redis_errors.load() == 0 &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_LT(waiter_.current(), s2);
  redis_.thaw();
  ASSERT_TRUE(waiter_.wait_for(s2, 30000)) << "projector did not recover after Redis came back";
  const auto sb = read(b);
  EXPECT_EQ(sb.generation(), 30);
  EXPECT_EQ(sb.version(), s2);
  EXPECT_EQ(sb.desired_state(), v1::DESIRED_STATE_PAUSED);  // last event: k=29 → pause
  EXPECT_EQ(read(a).generation(), 21);
  EXPECT_GE(projector_->counters().redis_errors.load(), 1u);
  EXPECT_EQ(proj_.checkpoint(*conn_, proj_.active_generation(*conn_).value()).value(), s2);
}

// A write whose predecessor did not land must not move the checkpoint past
// it (else the retry would skip the predecessor).
TEST_F(ProjectionTest, ApplyRefusesToOvertakeAMissingPredecessor) {
  projection::RedisConnection rc(addr_, proj_.scripts().all());
  ASSERT_TRUE(rc.ensure().ok());
  const std::string gen = proj_.active_generation(rc).value();
  const auto base = proj_.checkpoint(rc, gen).value();
  auto apply = [&](std::uint64_t seq, std::uint64_t after) {
    projection::TenantWrite w;
    w.sequence = seq;
    w.after = after;
    proj_.queue_apply(rc, gen, std::span(&w, 1), true);
    auto r = rc.get_reply();
    if (!r) return -100LL;
    auto v = projection::TenantProjection::apply_results(r->get(), 1);
    return v ? v->front() : -101LL;
  };
  EXPECT_EQ(apply(base + 2, base + 1), -2);  // base+1 never applied
  EXPECT_EQ(proj_.checkpoint(rc, gen).value(), base);
  EXPECT_EQ(apply(base + 1, 0), 1);
  EXPECT_EQ(apply(base + 2, base + 1), 1);
  EXPECT_EQ(apply(base + 2, base + 1), 0);  // redelivery: already applied
  EXPECT_EQ(proj_.checkpoint(rc, gen).value(), base + 2);
}

// One apply call takes a run of writes: each is judged in order against the
// checkpoint as the run moves it, and a refused write stops the rest.
TEST_F(ProjectionTest, OneApplyCallTakesAWholeRunInOrder) {
  projection::RedisConnection rc(addr_, proj_.scripts().all());
  ASSERT_TRUE(rc.ensure().ok());
  const std::string gen = proj_.active_generation(rc).value();
  const auto base = proj_.checkpoint(rc, gen).value();
  auto run = [&](std::vector<projection::TenantWrite> ws, bool check_pointer = true,
                 const std::string& g = "") {
    proj_.queue_apply(rc, g.empty() ? gen : g, ws, check_pointer);
    auto r = rc.get_reply();
    EXPECT_TRUE(r.ok());
    if (!r) return std::vector<long long>{};
    auto v = projection::TenantProjection::apply_results(r->get(), ws.size());
    EXPECT_TRUE(v.ok());
    return v ? *v : std::vector<long long>{};
  };
  auto w = [](std::uint64_t seq, std::uint64_t after = 0) {
    projection::TenantWrite x;
    x.sequence = seq;
    x.after = after;
    return x;
  };
  // A gap at the head: the head and everything after it are refused.
  EXPECT_EQ(run({w(base + 2, base + 1), w(base + 3, base + 2)}), (std::vector<long long>{-2, -2}));
  EXPECT_EQ(proj_.checkpoint(rc, gen).value(), base);
  // In order: applied; a redelivered one inside the run is skipped.
  EXPECT_EQ(run({w(base + 1), w(base + 2, base + 1), w(base + 2), w(base + 3, base + 2)}),
            (std::vector<long long>{1, 1, 0, 1}));
  EXPECT_EQ(proj_.checkpoint(rc, gen).value(), base + 3);
  // A generation that is not live refuses the whole run when asked to check.
  EXPECT_EQ(run({w(base + 4), w(base + 5, base + 4)}, true, "gnotlive"),
            (std::vector<long long>{-1, -1}));
  EXPECT_EQ(proj_.checkpoint(rc, gen).value(), base + 3);
}

TEST_F(ProjectionTest, RebuildSwitchesWhileEventsKeepArriving) {
  const auto s1 = append_history("cccccccccccccccccccc", 200);
  ASSERT_TRUE(waiter_.wait_for(s1, 10000));
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    int i = 0;
    while (!stop) {
      std::string ref(20, 'd');
      ref[19] = static_cast<char>('a' + (i % 26));
      ref[18] = static_cast<char>('a' + (i / 26) % 26);
      append_history(ref, 3);
      ++i;
      if (i >= 26 * 26) break;
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  projection::RedisConnection rc(addr_, proj_.scripts().all());
  const std::string old_gen = proj_.active_generation(rc).value();
  auto r = projection::rebuild_tenants(*store_, rc, proj_, "g2", true);
  stop = true;
  writer.join();
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->switched);
  EXPECT_EQ(proj_.active_generation(rc).value(), "g2");
  EXPECT_TRUE(proj_.dump(rc, old_gen)->empty());
  // After the switch the live projector continues in g2: it ends equal to a
  // fresh rebuild of the whole log.
  const auto last = store_->last_sequence().value();
  ASSERT_TRUE(waiter_.wait_for(last, 20000));
  auto check = projection::rebuild_tenants(*store_, rc, proj_, "g3", false);
  ASSERT_TRUE(check.ok());
  EXPECT_EQ(proj_.dump(rc, "g2").value(), proj_.dump(rc, "g3").value());
}

}  // namespace

namespace {
/// A valid tenant ref (20 lowercase letters) numbered `i` in base 26.
std::string nth_ref(char c, int i) {
  std::string ref(20, c);
  for (int k = 19; k >= 16; --k, i /= 26) ref[k] = static_cast<char>('a' + i % 26);
  return ref;
}
}  // namespace

// A failover to a replica that had not caught up (or a restore from an old
// dump): Redis holds an older checkpoint than this process applied.
TEST_F(ProjectionTest, ACheckpointBehindWhatWasAppliedIsRebuilt) {
  const std::string a = "aaaaaaaaaaaaaaaaaaaa", b = "bbbbbbbbbbbbbbbbbbbb";
  append_history(a, 5);
  const auto last = append_history(b, 6);
  ASSERT_TRUE(waiter_.wait_for(last, 10000));
  projection::ProjectionGuard guard(proj_, addr_, *store_, waiter_);
  ASSERT_TRUE(guard.check().ok());
  EXPECT_EQ(guard.rebuilds(projection::RebuildReason::checkpoint_behind), 0u) << "nothing lost yet";
  const std::string gen = proj_.active_generation(*conn_).value();
  ASSERT_TRUE(conn_->command({"SET", proj_.base() + gen + ":checkpoint", "5"}).ok());
  ASSERT_TRUE(conn_->command({"DEL", proj_.base() + gen + ":t:" + b}).ok());
  ASSERT_TRUE(guard.check().ok());
  EXPECT_EQ(guard.rebuilds(projection::RebuildReason::checkpoint_behind), 1u);
  EXPECT_EQ(read(b).version(), last);
  EXPECT_EQ(proj_.checkpoint(*conn_, proj_.active_generation(*conn_).value()).value(), last);
}

// The stream was lost and recreated: its last sequence is below the
// projection's checkpoint. Left alone, the checkpoint rule would skip every
// new event up to the old checkpoint (a frozen projection).
TEST_F(ProjectionTest, AStreamRecreatedBelowTheCheckpointIsDetectedAndRebuilt) {
  const std::string a = "aaaaaaaaaaaaaaaaaaaa", b = "bbbbbbbbbbbbbbbbbbbb";
  const auto old_last = append_history(a, 30);
  ASSERT_TRUE(waiter_.wait_for(old_last, 10000));
  projector_->request_stop();
  runner_->stop();
  jsErrCode jerr = static_cast<jsErrCode>(0);
  ASSERT_EQ(js_DeleteStream(store_->jetstream(), store_->stream().name.c_str(), nullptr, &jerr),
            NATS_OK);
  ASSERT_TRUE(store_->create_or_verify_stream().ok());
  const auto new_last = append_history(b, 3);
  ASSERT_LT(new_last, old_last);
  projection::ProjectionGuard guard(proj_, addr_, *store_, waiter_);
  ASSERT_TRUE(guard.check().ok());
  EXPECT_EQ(guard.rebuilds(projection::RebuildReason::stream_behind), 1u);
  EXPECT_EQ(read(b).version(), new_last);
  auto gone = proj_.get(*conn_, a);
  ASSERT_TRUE(gone.ok());
  EXPECT_FALSE(gone->has_value()) << "a tenant of the lost stream is still served";
  EXPECT_EQ(waiter_.current(), new_last);
  EXPECT_EQ(proj_.checkpoint(*conn_, proj_.active_generation(*conn_).value()).value(), new_last);
  ASSERT_TRUE(guard.check().ok());
  EXPECT_EQ(guard.rebuilds(projection::RebuildReason::stream_behind), 1u) << "rebuilt twice";
}

// FLUSHALL under 5,000 tenants: the guard notices without any new event and
// rebuilds; the time is reported (rebuild_seconds), not asserted.
TEST_F(ProjectionTest, FlushallUnderFiveThousandTenantsIsRebuiltByTheGuard) {
  constexpr int kTenants = 5000;
  std::uint64_t last = 0;
  for (int i = 0; i < kTenants; ++i) last = append_history(nth_ref('c', i), 1);
  ASSERT_TRUE(waiter_.wait_for(last, 60000));
  projection::GuardOptions go;
  go.interval = std::chrono::milliseconds(100);
  projection::ProjectionGuard guard(proj_, addr_, *store_, waiter_, go);
  double seconds = 0;
  std::atomic<int> rebuilt{0};
  guard.on_rebuilt([&](projection::RebuildReason, const projection::RebuildResult& r) {
    seconds = r.seconds;
    rebuilt++;
  });
  ASSERT_TRUE(guard.check().ok());
  guard.start();
  ASSERT_TRUE(conn_->command({"FLUSHALL"}).ok());
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(testenv::eventually([&] { return rebuilt.load() == 1; }, std::chrono::seconds(60)));
  const double until_readable =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  guard.stop();
  RecordProperty("rebuild_seconds", std::to_string(seconds));
  RecordProperty("flushall_to_readable_seconds", std::to_string(until_readable));
  std::printf("rebuild of %d tenants after FLUSHALL: %.3f s (FLUSHALL to readable %.3f s)\n",
              kTenants, seconds, until_readable);
  EXPECT_EQ(guard.rebuilds(projection::RebuildReason::pointer_missing), 1u);
  for (int i = 0; i < kTenants; i += 97) EXPECT_EQ(read(nth_ref('c', i)).version() > 0, true);
  projection::ListQuery q;
  q.limit = kTenants + 1;
  auto page = proj_.list(*conn_, q);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->tenants.size(), static_cast<std::size_t>(kTenants));
}

namespace {
/// What a second process's observer holds: the latest state told per ref.
struct Recorder : projection::ProjectorObserver {
  std::map<std::string, v1::TenantState> last;
  std::uint64_t told{0};
  void on_applied(const v1::TenantState& s, std::uint64_t, const std::string&) override {
    ++told;
    auto& slot = last[s.ref()];
    EXPECT_GE(s.version(), slot.version()) << s.ref() << ": told an older state after a newer one";
    slot = s;
  }
};
}  // namespace

// A second process sharing the projection, behind the shared checkpoint (the
// first one applied everything): its observer (its in-memory routes, caches,
// watchers) must still move with the stream it reads, message by message,
// including for a tenant whose last message is a kind this build cannot apply
// (it moves only the tenant's version, so no event of it is "the state right
// after" the projection holds).
TEST_F(ProjectionTest, AProjectorBehindTheSharedCheckpointStillTellsItsObserver) {
  const std::string a = "aaaaaaaaaaaaaaaaaaaa", b = "bbbbbbbbbbbbbbbbbbbb",
                    c = "cccccccccccccccccccc";
  append_history(a, 4);
  append_history(b, 7);
  // c: created, paused, then a message of a kind from a newer build.
  const auto c_paused = append_history(c, 2);
  v1::Actor actor;
  actor.set_kind(v1::ACTOR_KIND_SYSTEM);
  actor.set_id("test");
  auto unknown = events::make_tenant_event(c, v1::TenantEvent{}, actor, "",
                                           event_store::Expected::at(c_paused), "", "", 5000);
  auto u = store_->append(unknown);
  ASSERT_TRUE(u.ok()) << u.error().message;
  const auto last = u->sequence.value();
  ASSERT_TRUE(waiter_.wait_for(last, 10000));  // the first process applied it all

  std::vector<event_store::StoredMessage> log;
  ASSERT_TRUE(store_
                  ->replay("platform.tenant.>", 1,
                           [&](const event_store::StoredMessage& m) {
                             log.push_back(m);
                             return true;
                           })
                  .ok());
  ASSERT_EQ(log.back().sequence, last);
  // The second process reads the same stream one message per batch.
  Recorder seen;
  projection::SequenceWaiter waiter;
  projection::TenantProjector behind(proj_, addr_, waiter, seen);
  for (const auto& m : log) {
    std::vector<event_store::InboundMessage> batch{{m, event_store::Disposition::release}};
    behind.handle(batch);
    EXPECT_EQ(batch[0].disposition, event_store::Disposition::ack) << m.sequence;
    const std::string ref = m.subject.substr(std::string("platform.tenant.").size());
    ASSERT_TRUE(seen.last.count(ref)) << "seq " << m.sequence << ": " << ref << " never told";
    EXPECT_GE(seen.last[ref].version(), m.sequence)
        << "seq " << m.sequence << ": the observer of " << ref << " lags the stream it read";
  }
  EXPECT_EQ(behind.counters().applied.load(), 0u) << "the first process had applied everything";
  for (const auto& ref : {a, b, c}) {
    const auto want = read(ref);
    EXPECT_EQ(seen.last[ref].SerializeAsString(), want.SerializeAsString()) << ref;
  }
  EXPECT_EQ(seen.last[c].desired_state(), v1::DESIRED_STATE_PAUSED);
  EXPECT_EQ(seen.last[c].version(), last);
  // The whole log in one batch: a tenant that moved on is told its newer
  // state once (and its own last event once more), not once per event.
  Recorder once;
  projection::TenantProjector behind_once(proj_, addr_, waiter, once);
  std::vector<event_store::InboundMessage> all;
  for (const auto& m : log) all.push_back({m, event_store::Disposition::release});
  behind_once.handle(all);
  EXPECT_LE(once.told, 2u * 3u);
  for (const auto& ref : {a, b, c})
    EXPECT_EQ(once.last[ref].SerializeAsString(), read(ref).SerializeAsString()) << ref;
}
