// The event store on a 3-node JetStream cluster (real nats-server processes
// on loopback): an R3 PLATFORM stream, the client given all three URLs, the
// stream leader SIGKILLed during a burst of appends, then a lost quorum.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "eventually.hpp"
#include "servers.hpp"
#include "supaplane/event_store/event_store.hpp"

namespace {

using namespace supaplane;
using namespace supaplane::event_store;
using testenv::eventually;
using Clock = std::chrono::steady_clock;

constexpr int kRequestTimeoutMs = 2000;

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_.start();
    cluster_.create_stream(3);
    ConnectOptions o;
    o.url = cluster_.urls();  // "nats://127.0.0.1:A,nats://127.0.0.1:B,nats://127.0.0.1:C"
    o.name = "cluster-itest";
    o.reconnect_wait_ms = 100;
    o.request_timeout_ms = kRequestTimeoutMs;
    StreamSettings ss;
    ss.replicas = 3;
    store_ = EventStore::connect(o, ss).value();
    // A comma-separated list handed to natsOptions_SetURL never connects:
    // this is where the store would wait forever.
    ASSERT_TRUE(eventually([&] { return store_->connected(); }, std::chrono::seconds(10)))
        << "never connected to " << o.url;
    ASSERT_TRUE(eventually([&] { return store_->verify_stream().ok(); }));
  }

  static OutgoingEvent event(int i) {
    OutgoingEvent ev;
    ev.subject = "platform.tenant.burst" + std::to_string(i % 7);
    ev.msg_id = "burst-" + std::to_string(i);
    ev.event_type = "test.burst";
    ev.body = "burst-" + std::to_string(i);
    return ev;
  }

  /// Every message of the stream: body -> sequences it is stored at.
  std::map<std::string, std::vector<std::uint64_t>> read_all() {
    std::map<std::string, std::vector<std::uint64_t>> out;
    Status st = make_error(errc::unavailable, "not read");
    EXPECT_TRUE(eventually(
        [&] {
          out.clear();
          st = store_->replay("platform.>", 1, [&](const StoredMessage& m) {
            out[m.data].push_back(m.sequence);
            return true;
          });
          return st.ok();
        },
        std::chrono::seconds(30), std::chrono::milliseconds(100)))
        << st.error().message;
    return out;
  }

  testenv::NatsCluster cluster_;
  std::unique_ptr<EventStore> store_;
};

TEST_F(ClusterTest, AcknowledgedAppendsSurviveTheLeaderBeingKilledExactlyOnce) {
  constexpr int kAppends = 300;
  constexpr int kKillAt = 100;
  const int leader = cluster_.stream_leader();
  ASSERT_GE(leader, 0);
  std::map<int, std::uint64_t> acked;  // append -> the sequence it was acknowledged at
  int failures = 0;
  auto deadline = Clock::now() + std::chrono::seconds(60);
  for (int i = 0; i < kAppends; ++i) {
    if (i == kKillAt) cluster_.kill(leader);
    // A client retries an unacknowledged append with the same message id;
    // the duplicate window makes the retry harmless if the first one landed.
    for (;;) {
      auto r = store_->append(event(i));
      if (r.ok()) {
        acked[i] = r->sequence.value();
        break;
      }
      ASSERT_EQ(r.error().code, errc::unavailable) << r.error().message;
      ++failures;
      ASSERT_LT(Clock::now(), deadline) << "append " << i << " never acknowledged";
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ASSERT_EQ(acked.size(), static_cast<std::size_t>(kAppends));
  // A new leader among the two left, and the store is still connected.
  EXPECT_TRUE(eventually([&] {
    const int l = cluster_.stream_leader();
    return l >= 0 && l != leader;
  }));
  EXPECT_TRUE(store_->connected());

  const auto stored = read_all();
  for (const auto& [i, seq] : acked) {
    const auto it = stored.find("burst-" + std::to_string(i));
    ASSERT_NE(it, stored.end()) << "acknowledged append " << i << " is not in the stream";
    ASSERT_EQ(it->second.size(), 1u) << "append " << i << " is stored " << it->second.size()
                                     << " times";
    EXPECT_EQ(it->second[0], seq) << "append " << i;
  }
  EXPECT_EQ(stored.size(), static_cast<std::size_t>(kAppends));
  std::printf("[ cluster ] %d appends, leader %s killed at %d, %d failed attempts retried\n",
              kAppends, testenv::NatsCluster::node_name(leader).c_str(), kKillAt, failures);
}

TEST_F(ClusterTest, WithoutAQuorumAppendsAnswerUnavailableWithinTheTimeoutAndRecover) {
  ASSERT_TRUE(store_->append(event(0)).ok());
  const int leader = cluster_.stream_leader();
  ASSERT_GE(leader, 0);
  const int other = (leader + 1) % testenv::NatsCluster::kNodes;
  cluster_.kill(leader);
  cluster_.kill(other);
  // Whatever node the client reaches now, no append can be acknowledged:
  // each one answers `unavailable`, bounded by the request timeout.
  for (int i = 1; i <= 3; ++i) {
    const auto t0 = Clock::now();
    auto r = store_->append(event(i));
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
    ASSERT_FALSE(r.ok()) << "append acknowledged by a single node of three";
    EXPECT_EQ(r.error().code, errc::unavailable) << r.error().message;
    // The bound (request timeout plus scheduling slack on a loaded machine),
    // not a measurement: a hang would blow through it.
    EXPECT_LT(took.count(), 3 * kRequestTimeoutMs) << r.error().message;
  }
  cluster_.start_node(other);
  Result<AppendResult> back = make_error(errc::unavailable, "not tried");
  ASSERT_TRUE(eventually(
      [&] {
        back = store_->append(event(100));
        return back.ok();
      },
      std::chrono::seconds(60), std::chrono::milliseconds(100)))
      << back.error().message;
  // The appends refused above may or may not have been stored (a timeout
  // is ambiguous); none of them was acknowledged, and the recovered cluster
  // holds the first append once.
  const auto stored = read_all();
  ASSERT_EQ(stored.count("burst-0"), 1u);
  EXPECT_EQ(stored.at("burst-0").size(), 1u);
  EXPECT_EQ(stored.at("burst-100").size(), 1u);
}

}  // namespace
