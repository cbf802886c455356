// The provisioner's leader lease against a fake key (our LeaseStore
// interface) and a fake monotonic clock: who leads when, and never two
// replicas at once whatever the outages, pauses and slow requests.
#include "lease.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <vector>

namespace {

using namespace supaplane;
using provisioner::Lease;
using provisioner::LeaseOptions;
using provisioner::LeaseRecord;

class FakeClock final : public provisioner::MonotonicClock {
 public:
  std::int64_t now_ms() const override { return t_; }
  void advance(std::int64_t ms) { t_ += ms; }

 private:
  std::int64_t t_{1'000'000};
};

/// The server side: one key with revisions that disappears `ttl` after its
/// last write (a JetStream bucket's MaxAge).
struct FakeKey {
  const FakeClock& clock;
  std::int64_t ttl_ms;
  std::string holder{};
  std::uint64_t revision{0};
  std::int64_t written_at{0};
  std::uint64_t sequence{0};  ///< the stream's last sequence (revisions grow)
  int writes{0};
  void expire() {
    if (revision != 0 && clock.now_ms() >= written_at + ttl_ms) {
      holder.clear();
      revision = 0;
    }
  }
  void put(const std::string& h) {
    holder = h;
    revision = ++sequence;
    written_at = clock.now_ms();
    ++writes;
  }
};

/// One replica's connection to the key: it can be cut off, slow (the clock
/// moves while a request travels), or lose the reply to a write that
/// happened.
class FakeStore final : public provisioner::LeaseStore {
 public:
  FakeStore(FakeKey& key, FakeClock& clock) : key_(key), clock_(clock) {}
  Result<LeaseRecord> read() override {
    if (down) return make_error(errc::unavailable, "cut off");
    key_.expire();
    return LeaseRecord{key_.holder, key_.revision};
  }
  Result<std::uint64_t> write(const std::string& holder, std::uint64_t expected) override {
    if (down) return make_error(errc::unavailable, "cut off");
    clock_.advance(delay_to_server_ms);
    key_.expire();
    if (key_.revision != expected) return make_error(errc::conflict, "wrong last sequence");
    key_.put(holder);
    const std::uint64_t rev = key_.revision;
    clock_.advance(delay_back_ms);
    if (lose_reply) return make_error(errc::unavailable, "timeout");
    return rev;
  }
  bool down{false};
  bool lose_reply{false};
  std::int64_t delay_to_server_ms{0};
  std::int64_t delay_back_ms{0};

 private:
  FakeKey& key_;
  FakeClock& clock_;
};

constexpr std::int64_t kTtl = 15'000;

struct Replica {
  Replica(FakeKey& key, FakeClock& clock, const std::string& id)
      : store(key, clock), lease(store, clock, LeaseOptions{id, kTtl}) {}
  FakeStore store;
  Lease lease;
};

class LeaseTest : public ::testing::Test {
 protected:
  FakeClock clock_;
  FakeKey key_{clock_, kTtl};
  Replica a_{key_, clock_, "a"};
  Replica b_{key_, clock_, "b"};

  /// Advances time in 10 ms steps, ticking the replicas in `live`; fails the
  /// test if two replicas ever lead at once.
  void run(std::int64_t ms, std::vector<Replica*> live) {
    for (std::int64_t t = 0; t < ms; t += 10) {
      for (auto* r : live) r->lease.tick();
      ASSERT_FALSE(a_.lease.leading() && b_.lease.leading())
          << "two leaders at " << clock_.now_ms();
      clock_.advance(10);
    }
  }
};

TEST_F(LeaseTest, FirstReplicaTakesTheFreeKeyTheSecondStandsByNamingIt) {
  a_.lease.tick();
  b_.lease.tick();
  EXPECT_TRUE(a_.lease.leading());
  EXPECT_FALSE(b_.lease.leading());
  EXPECT_EQ(key_.holder, "a");
  EXPECT_EQ(b_.lease.seen_holder(), "a");
  EXPECT_TRUE(b_.lease.known());
  EXPECT_EQ(a_.lease.counters().acquired.load(), 1u);
  EXPECT_EQ(b_.lease.counters().acquired.load(), 0u);
}

TEST_F(LeaseTest, LeaderRenewsEveryThirdOfTheTtlAndKeepsLeading) {
  run(10 * kTtl, {&a_, &b_});
  EXPECT_TRUE(a_.lease.leading());
  EXPECT_FALSE(b_.lease.leading());
  // One write to take it, then one every TTL/3.
  EXPECT_GE(key_.writes, 30);
  EXPECT_LE(key_.writes, 32);
  EXPECT_EQ(a_.lease.counters().lost.load(), 0u);
}

TEST_F(LeaseTest, StandbyTakesOverOnlyOnceTheDeadLeadersKeyExpired) {
  run(1000, {&a_, &b_});
  ASSERT_TRUE(a_.lease.leading());
  const std::int64_t last_write = key_.written_at;
  // `a` dies: it never ticks again (and its validity runs out by the clock).
  while (!b_.lease.leading()) {
    ASSERT_LT(clock_.now_ms(), last_write + kTtl + kTtl / 5 + 20) << "no takeover";
    run(10, {&b_});
  }
  EXPECT_GE(clock_.now_ms(), last_write + kTtl) << "took over before the key expired";
  EXPECT_FALSE(a_.lease.leading());
  EXPECT_EQ(b_.lease.counters().acquired.load(), 1u);
}

TEST_F(LeaseTest, LeaderCutOffFromNatsStopsLeadingAtHalfTheTtlLongBeforeATakeover) {
  run(kTtl, {&a_, &b_});  // past a few renewals
  ASSERT_TRUE(a_.lease.leading());
  a_.store.down = true;
  const std::int64_t last_write = key_.written_at;
  std::int64_t a_stopped = 0, b_started = 0;
  while (b_started == 0) {
    ASSERT_LT(clock_.now_ms(), last_write + 2 * kTtl) << "no takeover";
    run(10, {&a_, &b_});
    if (a_stopped == 0 && !a_.lease.leading()) a_stopped = clock_.now_ms();
    if (b_.lease.leading()) b_started = clock_.now_ms();
  }
  EXPECT_LE(a_stopped, last_write + kTtl / 2 + 10);
  EXPECT_GE(b_started - a_stopped, kTtl / 2 - 10);
  EXPECT_EQ(a_.lease.counters().lost.load(), 1u);
  EXPECT_GT(a_.lease.counters().renew_failures.load(), 0u);
  EXPECT_NE(a_.lease.last_error(), "");
  // Back on the network, `a` finds `b` holding it and stands by.
  a_.store.down = false;
  run(kTtl, {&a_, &b_});
  EXPECT_FALSE(a_.lease.leading());
  EXPECT_TRUE(b_.lease.leading());
  EXPECT_EQ(a_.lease.seen_holder(), "b");
}

TEST_F(LeaseTest, ARenewalThatLostTheRaceStepsDownAtOnce) {
  run(1000, {&a_});
  ASSERT_TRUE(a_.lease.leading());
  key_.put("intruder");  // e.g. written by hand
  run(kTtl / 3 + 20, {&a_});
  EXPECT_FALSE(a_.lease.leading());
  EXPECT_EQ(a_.lease.counters().lost.load(), 1u);
  EXPECT_EQ(a_.lease.seen_holder(), "intruder");
}

TEST_F(LeaseTest, ValidityCountsFromBeforeTheRequestNotFromItsAnswer) {
  a_.store.delay_to_server_ms = 2000;
  a_.store.delay_back_ms = 3000;
  const std::int64_t sent = clock_.now_ms();
  a_.lease.tick();
  ASSERT_EQ(key_.holder, "a");
  // The answer came 5 s after the request; the lease ends TTL/2 after it was sent.
  EXPECT_TRUE(a_.lease.leading());
  clock_.advance(sent + kTtl / 2 - clock_.now_ms() - 1);
  EXPECT_TRUE(a_.lease.leading());
  clock_.advance(1);
  EXPECT_FALSE(a_.lease.leading());
}

TEST_F(LeaseTest, ASlowRenewalCountsFromBeforeItWasSent) {
  run(kTtl, {&a_});
  ASSERT_TRUE(a_.lease.leading());
  // The next renewal takes 6 s to arrive and 1 s to answer; then NATS is gone.
  a_.store.delay_to_server_ms = 6000;
  a_.store.delay_back_ms = 1000;
  const int writes = key_.writes;
  std::int64_t sent = 0;
  for (int i = 0; i < 1000 && key_.writes == writes; ++i) {
    sent = clock_.now_ms();
    a_.lease.tick();
    if (key_.writes == writes) clock_.advance(10);
  }
  ASSERT_GT(key_.writes, writes) << "no renewal";
  a_.store.down = true;
  EXPECT_EQ(clock_.now_ms(), sent + 7000);
  EXPECT_TRUE(a_.lease.leading());
  // Valid until the request's start + TTL/2, not the answer's.
  clock_.advance(sent + kTtl / 2 - clock_.now_ms());
  EXPECT_FALSE(a_.lease.leading());
}

TEST_F(LeaseTest, TwoReplicasWithTheSameIdNeverLeadTogether) {
  Replica twin(key_, clock_, "a");
  run(1000, {&a_});
  ASSERT_TRUE(a_.lease.leading());
  for (int i = 0; i < 1000; ++i) {
    a_.lease.tick();
    twin.lease.tick();
    ASSERT_FALSE(a_.lease.leading() && twin.lease.leading()) << "step " << i;
    clock_.advance(10 + (i % 7) * 50);
    if (i == 300) a_.store.down = true;   // the first loses NATS; the twin takes over
    if (i == 600) a_.store.down = false;  // and back: the key holds "a", but not its write
  }
  EXPECT_TRUE(twin.lease.leading());
  EXPECT_EQ(twin.lease.counters().acquired.load(), 1u);
}

TEST_F(LeaseTest, ARenewalWhoseAnswerWasLostEndsWithOneLeaderAfterTheTtl) {
  run(1000, {&a_});
  a_.store.lose_reply = true;
  run(kTtl / 3 + 20, {&a_});
  a_.store.lose_reply = false;
  // Its revision is stale now: the next renewal conflicts and it stands by
  // until the key (holding its own id at a revision it never saw) expires.
  run(2 * kTtl, {&a_, &b_});
  EXPECT_TRUE(a_.lease.leading() || b_.lease.leading());
}

TEST_F(LeaseTest, ReleaseLetsTheStandbyTakeOverAtItsNextLook) {
  run(1000, {&a_, &b_});
  ASSERT_TRUE(a_.lease.leading());
  a_.lease.release();
  EXPECT_FALSE(a_.lease.leading());
  EXPECT_EQ(key_.holder, "");
  run(kTtl / 5 + 20, {&b_});
  EXPECT_TRUE(b_.lease.leading());
  EXPECT_EQ(a_.lease.counters().lost.load(), 0u) << "a release is not a loss";
}

TEST_F(LeaseTest, ALeaderBackInTimeTakesBackTheKeyItStillHolds) {
  run(1000, {&a_, &b_});
  // A pause shorter than the TTL but longer than TTL/2: `a` stops leading,
  // the key is still its own at the revision it knows.
  a_.store.down = true;
  run(kTtl / 2 + 100, {&a_});
  ASSERT_FALSE(a_.lease.leading());
  a_.store.down = false;
  run(kTtl / 5 + 20, {&a_, &b_});
  EXPECT_TRUE(a_.lease.leading());
  EXPECT_FALSE(b_.lease.leading());
}

// Three replicas, random outages, frozen processes, slow requests and lost
// answers: at no 10 ms step do two lead; once all is calm, one leads.
TEST(LeaseRandom, NeverTwoLeadersAndOneLeaderOnceAllIsCalm) {
  for (unsigned seed = 1; seed <= 20; ++seed) {
    std::mt19937 rng(seed);
    FakeClock clock;
    FakeKey key{clock, kTtl};
    std::vector<std::unique_ptr<Replica>> rs;
    for (const char* id : {"r0", "r1", "r2"})
      rs.push_back(std::make_unique<Replica>(key, clock, id));
    std::vector<std::int64_t> frozen_until(rs.size(), 0);
    auto leaders = [&] {
      int n = 0;
      for (auto& r : rs) n += r->lease.leading() ? 1 : 0;
      return n;
    };
    for (int step = 0; step < 30'000; ++step) {
      const bool calm = step >= 25'000;
      for (std::size_t i = 0; i < rs.size(); ++i) {
        auto& st = rs[i]->store;
        if (calm) {
          st.down = st.lose_reply = false;
          st.delay_to_server_ms = st.delay_back_ms = 0;
          frozen_until[i] = 0;
        } else if (rng() % 500 == 0) {
          st.down = !st.down;
        } else if (rng() % 700 == 0) {
          frozen_until[i] = clock.now_ms() + static_cast<std::int64_t>(rng() % (2 * kTtl));
        } else if (rng() % 300 == 0) {
          st.delay_to_server_ms = static_cast<std::int64_t>(rng() % 3000);
          st.delay_back_ms = static_cast<std::int64_t>(rng() % 3000);
          st.lose_reply = rng() % 4 == 0;
        }
        if (clock.now_ms() >= frozen_until[i]) rs[i]->lease.tick();
        st.delay_to_server_ms = st.delay_back_ms = 0;
        st.lose_reply = false;
        ASSERT_LE(leaders(), 1) << "seed " << seed << " step " << step;
      }
      clock.advance(10);
      ASSERT_LE(leaders(), 1) << "seed " << seed << " step " << step;
    }
    EXPECT_EQ(leaders(), 1) << "seed " << seed;
  }
}

}  // namespace
