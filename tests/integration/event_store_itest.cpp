// EventStore and ConsumerRunner against a real nats-server (JetStream).
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <mutex>
#include <thread>

#include "servers.hpp"
#include "supaplane/event_store/consumer.hpp"
#include "supaplane/event_store/event_store.hpp"

namespace {

using namespace supaplane;
using namespace supaplane::event_store;

class EventStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    nats_.start();
    ConnectOptions o;
    o.url = nats_.url();
    o.request_timeout_ms = 1000;
    store_ = EventStore::connect(o).value();
    ASSERT_TRUE(store_->ensure_stream().ok());
  }
  OutgoingEvent ev(const std::string& subject, const std::string& body,
                   Expected e = Expected::any(), const std::string& msg_id = "") {
    OutgoingEvent out;
    out.subject = subject;
    out.body = body;
    out.expected = e;
    out.msg_id = msg_id;
    out.event_type = "test.event";
    out.schema = "test";
    out.correlation_id = "corr-1";
    return out;
  }
  testenv::NatsServer nats_;
  std::unique_ptr<EventStore> store_;
};

TEST_F(EventStoreTest, StreamIsCreatedImmutable) {
  ASSERT_TRUE(store_->append(ev("platform.tenant.aaaaaaaaaaaaaaaaaaaa", "x")).ok());
  jsStreamInfo* si = nullptr;
  ASSERT_EQ(js_GetStreamInfo(&si, store_->jetstream(), "PLATFORM", nullptr, nullptr), NATS_OK);
  EXPECT_EQ(si->Config->Storage, js_FileStorage);
  EXPECT_TRUE(si->Config->DenyDelete);
  EXPECT_TRUE(si->Config->DenyPurge);
  EXPECT_GE(si->Config->Duplicates, 120LL * 1000 * 1000 * 1000);
  jsStreamInfo_Destroy(si);
  EXPECT_NE(js_DeleteMsg(store_->jetstream(), "PLATFORM", 1, nullptr, nullptr), NATS_OK);
  EXPECT_NE(js_PurgeStream(store_->jetstream(), "PLATFORM", nullptr, nullptr), NATS_OK);
  EXPECT_EQ(store_->last_sequence().value(), 1u);
  // Ensuring again is a no-op.
  EXPECT_TRUE(store_->ensure_stream().ok());
}

TEST(EventStoreStream, IncompatibleExistingStreamIsRefused) {
  testenv::NatsServer nats;
  nats.start();
  ConnectOptions o;
  o.url = nats.url();
  auto store = EventStore::connect(o).value();
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  cfg.Name = "PLATFORM";
  const char* subjects[] = {"platform.>"};
  cfg.Subjects = subjects;
  cfg.SubjectsLen = 1;
  cfg.Storage = js_MemoryStorage;
  ASSERT_EQ(js_AddStream(nullptr, store->jetstream(), &cfg, nullptr, nullptr), NATS_OK);
  auto st = store->ensure_stream();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, errc::incompatible);
  EXPECT_NE(st.error().message.find("storage is not file"), std::string::npos)
      << st.error().message;
  EXPECT_NE(st.error().message.find("deny_delete"), std::string::npos);
}

TEST_F(EventStoreTest, ExpectedSubjectSequence) {
  const std::string subj = "platform.tenant.bbbbbbbbbbbbbbbbbbbb";
  auto first = store_->append(ev(subj, "1", Expected::no_message()));
  ASSERT_TRUE(first.ok()) << first.error().message;
  auto again = store_->append(ev(subj, "1b", Expected::no_message()));
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, errc::conflict);
  // Another subject does not move this subject's sequence.
  ASSERT_TRUE(store_->append(ev("platform.tenant.cccccccccccccccccccc", "o")).ok());
  auto second = store_->append(ev(subj, "2", Expected::at(first->sequence.value())));
  ASSERT_TRUE(second.ok()) << second.error().message;
  auto stale = store_->append(ev(subj, "3", Expected::at(first->sequence.value())));
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.error().code, errc::conflict);
  auto hist = store_->read_subject(subj).value();
  ASSERT_EQ(hist.size(), 2u);
  EXPECT_EQ(hist[0].data, "1");
  EXPECT_EQ(hist[1].data, "2");
  EXPECT_EQ(hist[1].event_type, "test.event");
  EXPECT_EQ(hist[1].correlation_id, "corr-1");
}

TEST_F(EventStoreTest, RepeatedMsgIdIsOneMessage) {
  const std::string subj = "platform.tenant.dddddddddddddddddddd";
  auto a = store_->append(ev(subj, "a", Expected::any(), "req-1"));
  auto b = store_->append(ev(subj, "b", Expected::any(), "req-1"));
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  EXPECT_FALSE(a->duplicate);
  EXPECT_TRUE(b->duplicate);
  EXPECT_EQ(a->sequence, b->sequence);
  EXPECT_EQ(store_->read_subject(subj)->size(), 1u);
}

TEST_F(EventStoreTest, ReadSubjectOfUnknownSubjectIsEmpty) {
  auto r = store_->read_subject("platform.tenant.zzzzzzzzzzzzzzzzzzzz");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty());
}

TEST_F(EventStoreTest, ReplayFromASequence) {
  for (int i = 1; i <= 10; ++i)
    ASSERT_TRUE(store_->append(ev("platform.tenant.eeeeeeeeeeeeeeeeeeee", std::to_string(i))).ok());
  std::vector<std::uint64_t> seqs;
  ASSERT_TRUE(store_
                  ->replay("platform.>", 4,
                           [&](const StoredMessage& m) {
                             seqs.push_back(m.sequence);
                             return true;
                           })
                  .ok());
  ASSERT_EQ(seqs.size(), 7u);
  EXPECT_EQ(seqs.front(), 4u);
  EXPECT_EQ(seqs.back(), 10u);
  auto m = store_->get(5).value();
  EXPECT_EQ(m.data, "5");
  EXPECT_EQ(m.sequence, 5u);
}

TEST_F(EventStoreTest, AppendWhileServerIsDownIsUnavailable) {
  nats_.stop();
  auto r = store_->append(ev("platform.tenant.ffffffffffffffffffff", "x"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::unavailable);
  nats_.start();
  // Reconnects by itself; the stream survived (file storage).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  Result<AppendResult> ok = make_error(errc::unavailable, "not yet");
  while (!ok && std::chrono::steady_clock::now() < deadline) {
    ok = store_->append(ev("platform.tenant.ffffffffffffffffffff", "y"));
    if (!ok) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(ok.ok()) << ok.error().message;
}

TEST_F(EventStoreTest, EveryCallIsRefusedAtOnceWhileTheConnectionIsDown) {
  nats_.stop();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (store_->connected() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_FALSE(store_->connected());
  // Refused before anything is sent: not a request that timed out.
  auto refused = [](const Error& e) {
    EXPECT_EQ(e.code, errc::unavailable);
    EXPECT_NE(e.message.find("not attempted"), std::string::npos) << e.message;
  };
  const std::string subject = "platform.tenant.eeeeeeeeeeeeeeeeeeee";
  auto a = store_->append(ev(subject, "x"));
  ASSERT_FALSE(a.ok());
  refused(a.error());
  bool called = false;
  store_->append_async(ev(subject, "x"), [&](Result<AppendResult> r) {
    called = true;
    ASSERT_FALSE(r.ok());
    refused(r.error());
  });
  EXPECT_TRUE(called);  // inline: nothing was queued
  auto g = store_->get(1);
  ASSERT_FALSE(g.ok());
  refused(g.error());
  auto l = store_->last_sequence();
  ASSERT_FALSE(l.ok());
  refused(l.error());
  auto sj = store_->subjects("platform.>");
  ASSERT_FALSE(sj.ok());
  refused(sj.error());
  auto rs = store_->read_subject(subject);
  ASSERT_FALSE(rs.ok());
  refused(rs.error());
  nats_.start();
  const auto back = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!store_->connected() && std::chrono::steady_clock::now() < back)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(store_->connected());
  // Nothing refused was stored.
  auto history = store_->read_subject(subject);
  ASSERT_TRUE(history.ok()) << history.error().message;
  EXPECT_TRUE(history->empty());
}

/// Poison is terminated, a flaky message is retried with backoff until it
/// succeeds, a message that always fails is terminated after max_deliveries.
class ScriptedHandler : public BatchHandler {
 public:
  void handle(std::vector<InboundMessage>& batch) override {
    std::lock_guard lk(mu_);
    for (auto& in : batch) {
      const auto& d = in.message.data;
      deliveries[d]++;
      if (d == "poison")
        in.disposition = Disposition::poison;
      else if (d == "flaky" && in.message.delivered < 3)
        in.disposition = Disposition::retry;
      else if (d == "always-fails")
        in.disposition = Disposition::retry;
      else {
        in.disposition = Disposition::ack;
        acked.push_back(d);
      }
    }
  }
  std::map<std::string, int> snapshot() {
    std::lock_guard lk(mu_);
    return deliveries;
  }
  std::mutex mu_;
  std::map<std::string, int> deliveries;
  std::vector<std::string> acked;
};

TEST_F(EventStoreTest, ConsumerAcksRetriesAndTerminates) {
  for (const char* body : {"ok-1", "poison", "flaky", "always-fails", "ok-2"})
    ASSERT_TRUE(store_->append(ev("platform.tenant.gggggggggggggggggggg", body)).ok());
  ScriptedHandler h;
  ConsumerOptions co;
  co.durable = "test-runner";
  co.max_deliveries = 3;
  co.backoff_base_ms = 20;
  co.fetch_timeout_ms = 50;
  ConsumerRunner runner(*store_, co, h);
  runner.start();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (std::chrono::steady_clock::now() < deadline &&
         (runner.stats().terminated < 2 || runner.stats().acked < 3))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  runner.stop();
  auto d = h.snapshot();
  EXPECT_EQ(runner.stats().terminated.load(), 2u);  // poison + always-fails
  EXPECT_EQ(runner.stats().acked.load(), 3u);       // ok-1, flaky (3rd try), ok-2
  EXPECT_EQ(d["poison"], 1);
  EXPECT_EQ(d["flaky"], 3);
  EXPECT_EQ(d["always-fails"], 3);
  EXPECT_GE(runner.stats().retried.load(), 4u);

  // The durable survives the runner: a new runner sees only new messages.
  ASSERT_TRUE(store_->append(ev("platform.tenant.gggggggggggggggggggg", "ok-3")).ok());
  ScriptedHandler h2;
  ConsumerRunner again(*store_, co, h2);
  again.start();
  const auto d2 = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < d2 && again.stats().acked < 1)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  again.stop();
  ASSERT_EQ(h2.acked.size(), 1u);
  EXPECT_EQ(h2.acked[0], "ok-3");
}

}  // namespace
