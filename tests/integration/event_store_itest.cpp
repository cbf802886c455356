// EventStore and ConsumerRunner against a real nats-server (JetStream).
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "eventually.hpp"
#include "servers.hpp"
#include "supaplane/config/config.hpp"
#include "supaplane/event_store/consumer.hpp"
#include "supaplane/event_store/event_store.hpp"
#include "supaplane/logging/logging.hpp"

namespace {

using namespace supaplane;
using namespace supaplane::event_store;
using testenv::eventually;

class EventStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    nats_.start();
    ConnectOptions o;
    o.url = nats_.url();
    o.request_timeout_ms = 1000;
    store_ = EventStore::connect(o).value();
    ASSERT_TRUE(eventually([&] { return store_->connected(); }));
    ASSERT_TRUE(store_->verify_stream().ok());
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
  // The admin step again is a check, not a change.
  bool created = true;
  EXPECT_TRUE(store_->create_or_verify_stream(&created).ok());
  EXPECT_FALSE(created);
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
        delivered_at_ack[d] = in.message.delivered;
      }
    }
  }
  std::map<std::string, int> snapshot() {
    std::lock_guard lk(mu_);
    return deliveries;
  }
  std::mutex mu_;
  std::map<std::string, int> deliveries;
  std::map<std::string, std::uint64_t> delivered_at_ack;
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
  // The services' pull expiry (ConsumerOptions' default): a delivery can go
  // to a pull request that expired client-side (at the instant of expiry),
  // which wastes one of the three deliveries; a 50 ms expiry made that race
  // common enough to lose flaky's third try in about 1 run of 30 here.
  ConsumerRunner runner(*store_, co, h);
  runner.start();
  // Done when the handler has acked ok-1, ok-2 and flaky (its third try) and
  // both others are terminated. Delivery is at least once: nats-server 2.9
  // can hand a message to a pull request that expired client-side and then
  // again (nats-io/nats-server#4460), so counting acks alone could stop
  // before flaky's third try.
  auto all_acked = [&h] {
    std::lock_guard lk(h.mu_);
    return h.delivered_at_ack.count("ok-1") && h.delivered_at_ack.count("ok-2") &&
           h.delivered_at_ack.count("flaky");
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (std::chrono::steady_clock::now() < deadline &&
         (runner.stats().terminated < 2 || !all_acked()))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  runner.stop();
  auto d = h.snapshot();
  EXPECT_EQ(runner.stats().terminated.load(), 2u);  // poison + always-fails
  EXPECT_GE(runner.stats().acked.load(), 3u);       // ok-1, flaky (3rd try), ok-2
  {
    std::lock_guard lk(h.mu_);
    std::string seen;
    for (const auto& a : h.acked) seen += a + " ";
    EXPECT_TRUE(std::all_of(
        h.acked.begin(), h.acked.end(),
        [](const std::string& a) { return a == "ok-1" || a == "ok-2" || a == "flaky"; }))
        << "acked: " << seen;
  }
  EXPECT_EQ(d["poison"], 1);
  // The server counts deliveries; under load a delivery can go to a pull
  // request that already expired client-side and come back after the ack
  // wait, so the handler may see fewer than the server counted. What must
  // hold: "flaky" is acked on its third delivery, "always-fails" is
  // terminated after at most three, and neither is seen more often.
  {
    std::lock_guard lk(h.mu_);
    EXPECT_EQ(h.delivered_at_ack["flaky"], 3u);
  }
  EXPECT_GE(d["flaky"], 1);
  EXPECT_LE(d["flaky"], 3);
  EXPECT_GE(d["always-fails"], 1);
  EXPECT_LE(d["always-fails"], 3);
  EXPECT_GE(runner.stats().retried.load(), 2u);

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

// ---- The stream check: services verify PLATFORM, only an admin creates it.

/// A stream that protects the log (what `create_or_verify_stream` makes);
/// each case below changes one setting of it.
struct GoodStream {
  const char* subjects[1] = {"platform.>"};
  jsStreamConfig cfg;
  GoodStream() {
    jsStreamConfig_Init(&cfg);
    cfg.Name = "PLATFORM";
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.Retention = js_LimitsPolicy;
    cfg.Discard = js_DiscardNew;
    cfg.Duplicates = 120LL * 1000 * 1000 * 1000;
    cfg.DenyDelete = true;
    cfg.DenyPurge = true;
  }
};

struct BadSetting {
  const char* name;
  std::function<void(jsStreamConfig&)> mutate;
  const char* named;         ///< what the refusal must say
  bool after_create{false};  ///< applied by an update (a stream cannot be created sealed)
  bool admin_fixes{false};   ///< the admin step tightens it in place
};

std::unique_ptr<EventStore> admin_store(const std::string& url) {
  ConnectOptions o;
  o.url = url;
  o.request_timeout_ms = 2000;
  o.fail_fast = true;
  auto es = EventStore::connect(o);
  if (!es) ADD_FAILURE() << es.error().message;
  return es ? std::move(*es) : nullptr;
}

bool stream_exists(EventStore& admin, const char* name) {
  jsStreamInfo* si = nullptr;
  const natsStatus s = js_GetStreamInfo(&si, admin.jetstream(), name, nullptr, nullptr);
  if (si) jsStreamInfo_Destroy(si);
  EXPECT_TRUE(s == NATS_OK || s == NATS_NOT_FOUND) << natsStatus_GetText(s);
  return s == NATS_OK;
}

TEST(StreamCheck, EverySettingThatWouldLoseEventsRefusesTheServiceStartNamingIt) {
  testenv::NatsServer nats({.users = true, .create_stream = false});
  nats.start();
  auto admin = admin_store(nats.url());
  ASSERT_TRUE(admin);
  const std::vector<BadSetting> cases = {
      {"memory storage", [](auto& c) { c.Storage = js_MemoryStorage; }, "storage is memory"},
      {"work queue", [](auto& c) { c.Retention = js_WorkQueuePolicy; }, "retention is workqueue"},
      {"interest", [](auto& c) { c.Retention = js_InterestPolicy; }, "retention is interest"},
      {"max msgs", [](auto& c) { c.MaxMsgs = 1000; }, "max_msgs is 1000"},
      {"max bytes", [](auto& c) { c.MaxBytes = 1 << 20; }, "max_bytes"},
      {"max age", [](auto& c) { c.MaxAge = 3600LL * 1000 * 1000 * 1000; }, "max_age"},
      {"per subject", [](auto& c) { c.MaxMsgsPerSubject = 1; }, "max_msgs_per_subject"},
      {"discard old", [](auto& c) { c.Discard = js_DiscardOld; }, "discard is old", false, true},
      {"delete allowed", [](auto& c) { c.DenyDelete = false; }, "deny_delete is off"},
      {"purge allowed", [](auto& c) { c.DenyPurge = false; }, "deny_purge is off"},
      // nats-server allows roll-ups only where purge is allowed too.
      {"rollup allowed",
       [](auto& c) {
         c.AllowRollup = true;
         c.DenyPurge = false;
       },
       "allow_rollup is on"},
      {"short duplicate window", [](auto& c) { c.Duplicates = 1000LL * 1000 * 1000; },
       "duplicate window 1000 ms is shorter than 120000 ms", false, true},
      {"sealed", [](auto& c) { c.Sealed = true; }, "sealed is on", true},
  };
  for (const auto& bad : cases) {
    SCOPED_TRACE(bad.name);
    GoodStream g;
    if (!bad.after_create) bad.mutate(g.cfg);
    jsErrCode jerr = static_cast<jsErrCode>(0);
    ASSERT_EQ(js_AddStream(nullptr, admin->jetstream(), &g.cfg, nullptr, &jerr), NATS_OK) << jerr;
    if (bad.after_create) {
      bad.mutate(g.cfg);
      ASSERT_EQ(js_UpdateStream(nullptr, admin->jetstream(), &g.cfg, nullptr, &jerr), NATS_OK)
          << jerr;
    }
    // What every service does at start, with its own user.
    bool ready = true;
    auto svc = open_for_service(nats.url_for("api"), "supaplane-api", 1, &ready);
    ASSERT_FALSE(svc.ok());
    EXPECT_EQ(svc.error().code, errc::incompatible);
    EXPECT_NE(svc.error().message.find(bad.named), std::string::npos) << svc.error().message;
    // The admin step refuses it too, or tightens it in place when an
    // update can (and the service then starts).
    std::vector<std::string> changed;
    auto init = admin->create_or_verify_stream(nullptr, &changed);
    if (bad.admin_fixes) {
      ASSERT_TRUE(init.ok()) << init.error().message;
      EXPECT_EQ(changed.size(), 1u);
      auto now = open_for_service(nats.url_for("api"), "supaplane-api", 1, &ready);
      ASSERT_TRUE(now.ok()) << now.error().message;
      EXPECT_TRUE(ready);
    } else {
      ASSERT_FALSE(init.ok());
      EXPECT_NE(init.error().message.find(bad.named), std::string::npos) << init.error().message;
      EXPECT_TRUE(changed.empty());
    }
    ASSERT_EQ(js_DeleteStream(admin->jetstream(), "PLATFORM", nullptr, &jerr), NATS_OK) << jerr;
  }
  // The same stream with none of those changes is accepted: each refusal
  // above was for its one setting.
  GoodStream g;
  ASSERT_EQ(js_AddStream(nullptr, admin->jetstream(), &g.cfg, nullptr, nullptr), NATS_OK);
  bool ready = false;
  auto svc = open_for_service(nats.url_for("api"), "supaplane-api", 1, &ready);
  ASSERT_TRUE(svc.ok()) << svc.error().message;
  EXPECT_TRUE(ready);
}

TEST(Replay, AWholeStreamReplayWithAHoleIsRefusedNotFolded) {
  // A replica catching up after a restart serves its copy with holes; the
  // same holes are made here by deleting a message from a stream that allows
  // it (PLATFORM itself denies deletes, so a hole is never legitimate).
  testenv::NatsServer nats({.users = false, .create_stream = false});
  nats.start();
  auto admin = admin_store(nats.url());
  ASSERT_TRUE(admin);
  GoodStream g;
  g.cfg.DenyDelete = false;
  ASSERT_EQ(js_AddStream(nullptr, admin->jetstream(), &g.cfg, nullptr, nullptr), NATS_OK);
  for (int i = 0; i < 5; ++i) {
    OutgoingEvent e;
    e.subject = "platform.tenant.r" + std::to_string(i % 2);
    e.body = "{}";
    ASSERT_TRUE(admin->append(e).ok());
  }
  for (auto read : {ReplayRead::ordered_push, ReplayRead::pull_batches}) {
    SCOPED_TRACE(read == ReplayRead::pull_batches ? "pull batches" : "ordered push");
    auto count = [&](const std::string& filter, std::uint64_t from) -> Result<int> {
      int n = 0;
      auto st = admin->replay(
          filter, from,
          [&](const StoredMessage&) {
            ++n;
            return true;
          },
          read);
      if (!st) return st.error();
      return n;
    };
    if (read == ReplayRead::ordered_push) {
      ASSERT_EQ(count("platform.>", 1).value(), 5);
      ASSERT_EQ(js_DeleteMsg(admin->jetstream(), "PLATFORM", 3, nullptr, nullptr), NATS_OK);
    }
    auto whole = count("platform.>", 1);
    ASSERT_FALSE(whole.ok()) << "a replay with a hole at 3 was accepted";
    EXPECT_EQ(whole.error().code, errc::unavailable);
    EXPECT_NE(whole.error().message.find("skipped sequences 3..3"), std::string::npos)
        << whole.error().message;
    // A hole before the start is no hole: the replay from 4 is whole.
    EXPECT_EQ(count("platform.>", 4).value(), 2);
    // One subject's replay has gaps by nature (sequences 1, 5 here).
    EXPECT_EQ(count("platform.tenant.r0", 1).value(), 2);
    // A subject with no message is an empty replay, not an error (the
    // ordered read finds that out only when its wait ends: not repeated here).
    if (read == ReplayRead::pull_batches) {
      EXPECT_EQ(count("platform.tenant.none", 1).value(), 0);
    }
  }
}

TEST(StreamCheck, ServicesNeverCreateTheStreamAndBecomeReadyOnceTheAdminStepHasRun) {
  testenv::NatsServer nats({.users = true, .create_stream = false});
  nats.start();
  bool ready = true;
  auto svc = open_for_service(nats.url_for("api"), "supaplane-api", 1, &ready);
  ASSERT_TRUE(svc.ok()) << svc.error().message;  // starts, not ready
  EXPECT_FALSE(ready);
  auto st = (*svc)->verify_stream();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, errc::not_found);
  EXPECT_NE(st.error().message.find("init-stream"), std::string::npos) << st.error().message;
  // Its user could not create it even if it tried.
  auto own = (*svc)->create_or_verify_stream();
  EXPECT_FALSE(own.ok());
  auto admin = admin_store(nats.url());
  ASSERT_TRUE(admin);
  EXPECT_FALSE(stream_exists(*admin, "PLATFORM"));
  bool created = false;
  ASSERT_TRUE(admin->create_or_verify_stream(&created).ok());
  EXPECT_TRUE(created);
  EXPECT_TRUE((*svc)->verify_stream().ok());
}

// ---- Credentials, and no password in any message.

/// Everything the event store logs while alive.
class CapturedLog {
 public:
  CapturedLog() : sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(out_)) {
    logging::get("event_store")->sinks().push_back(sink_);
  }
  ~CapturedLog() {
    auto& sinks = logging::get("event_store")->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }
  std::string text() {
    sink_->flush();
    return out_.str();
  }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
};

TEST(NatsCredentials, UserPasswordInTheUrlConnectsAndNoPasswordIsEverPrinted) {
  CapturedLog captured;
  testenv::NatsServer nats({.users = true});
  nats.start();
  const std::string pw = nats.password("api");
  // Right password: connected, the stream checks out.
  bool ready = false;
  auto svc = open_for_service(nats.url_for("api"), "supaplane-api", 1, &ready);
  ASSERT_TRUE(svc.ok()) << svc.error().message;
  EXPECT_TRUE(ready);
  // Wrong password (the real one with a suffix): refused, and the message
  // names the user and the server but not the password.
  ConnectOptions bad;
  bad.url = "nats://api:" + pw + "x@127.0.0.1:" + std::to_string(nats.port());
  bad.fail_fast = true;
  auto refused = EventStore::connect(bad);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().message.find(pw), std::string::npos) << refused.error().message;
  EXPECT_NE(refused.error().message.find("api:***@127.0.0.1"), std::string::npos)
      << refused.error().message;
  // A cluster list with passwords, nobody listening: the retrying start
  // logs the (redacted) list.
  testenv::PortLease p1, p2;
  ConnectOptions down;
  down.url = "nats://api:" + pw + "@127.0.0.1:" + std::to_string(p1.port()) +
             ", nats://s3cr3t-token-value@127.0.0.1:" + std::to_string(p2.port());
  auto waiting = EventStore::connect(down);
  ASSERT_TRUE(waiting.ok()) << waiting.error().message;
  auto st = (*waiting)->verify_stream();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().message.find(pw), std::string::npos);
  waiting->reset();
  nats.stop();  // the connected service logs its disconnect
  ASSERT_TRUE(eventually([&] { return !(*svc)->connected(); }));
  const std::string log = captured.text();
  EXPECT_NE(log.find("api:***@127.0.0.1:" + std::to_string(p1.port())), std::string::npos) << log;
  EXPECT_NE(log.find("nats://***@127.0.0.1"), std::string::npos) << log;
  EXPECT_EQ(log.find(pw), std::string::npos) << log;
  EXPECT_EQ(log.find("s3cr3t-token-value"), std::string::npos) << log;
}

TEST(NatsCredentials, TokenInTheUrlConnects) {
  testenv::TempDir dir("supaplane-nats-token");
  testenv::PortLease port;
  testenv::Process server;
  server.start({"nats-server", "-js", "-a", "127.0.0.1", "-p", std::to_string(port.port()), "-sd",
                dir.path() + "/store", "--auth", "tok-3f9a2c71e5"},
               dir.path() + "/nats.log");
  ASSERT_TRUE(testenv::wait_port(port.port(), 10000));
  const std::string base = "127.0.0.1:" + std::to_string(port.port());
  auto admin = admin_store("nats://tok-3f9a2c71e5@" + base);
  ASSERT_TRUE(admin);
  ASSERT_TRUE(admin->create_or_verify_stream().ok());
  ConnectOptions none;
  none.url = "nats://" + base;
  none.fail_fast = true;
  EXPECT_FALSE(EventStore::connect(none).ok());
  ConnectOptions wrong;
  wrong.url = "nats://tok-wrong-value@" + base;
  wrong.fail_fast = true;
  auto r = EventStore::connect(wrong);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message.find("tok-wrong-value"), std::string::npos) << r.error().message;
}

TEST(NatsCredentials, AMissingCredsFileIsAClearErrorNamingIt) {
  testenv::NatsServer nats;
  nats.start();
  ConnectOptions o;
  o.url = nats.url();
  o.creds_file = "/nonexistent/supaplane-api.creds";
  auto r = EventStore::connect(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::invalid_argument);
  EXPECT_NE(r.error().message.find("/nonexistent/supaplane-api.creds"), std::string::npos)
      << r.error().message;
}

TEST(NatsUrls, InboxPrefixOfTheUrlsUser) {
  EXPECT_EQ(inbox_prefix_for_url("nats://api:pw@h:4222"), "_INBOX_api");
  EXPECT_EQ(inbox_prefix_for_url("nats://router-sync:p@ss@h:1,nats://x:y@h2:2"),
            "_INBOX_router-sync");
  EXPECT_EQ(inbox_prefix_for_url("nats://tok@h:1"), "");
  EXPECT_EQ(inbox_prefix_for_url("nats://127.0.0.1:4222"), "");
  EXPECT_EQ(inbox_prefix_for("supaplane-billing"), "_INBOX_billing");
}

TEST(NatsUrls, RedactionAndLists) {
  EXPECT_EQ(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
  EXPECT_EQ(redact_url("nats://api:pw@h:4222"), "nats://api:***@h:4222");
  EXPECT_EQ(redact_url("nats://tok@h:1, nats://u:p@a@h2:2"), "nats://***@h:1,nats://u:***@h2:2");
  EXPECT_EQ(split_urls(" nats://a:1 ,nats://b:2,,"),
            (std::vector<std::string>{"nats://a:1", "nats://b:2"}));
  EXPECT_EQ(scrub_secrets("bad pw p@ss and tok", "nats://u:p@ss@h:1,nats://tok@h:2"),
            "bad pw *** and ***");
}

// ---- The users of deploy/compose/nats/nats.conf (the same block as k8s).

class AckAll : public BatchHandler {
 public:
  void handle(std::vector<InboundMessage>& batch) override {
    for (auto& in : batch) in.disposition = Disposition::ack;
  }
};

/// A connection as the service of NATS user `user` makes it (its own reply inbox).
std::unique_ptr<EventStore> user_store(const testenv::NatsServer& nats, const std::string& user) {
  ConnectOptions o;
  o.url = nats.url_for(user);
  o.inbox_prefix = inbox_prefix_for("supaplane-" + user);
  o.fail_fast = true;
  o.request_timeout_ms = 1000;  // a refused request is answered by silence
  auto es = EventStore::connect(o);
  if (!es) ADD_FAILURE() << es.error().message;
  return es ? std::move(*es) : nullptr;
}

struct ServiceUser {
  std::string user;
  std::string durable;  ///< its --durable flag's default (with the replica id of pod 0)
  std::vector<std::string> appends;
};

TEST(NatsUsers, EachServiceWorksWithItsOwnUserAndNothingMore) {
  testenv::NatsServer nats({.users = true});
  nats.start();
  auto admin = admin_store(nats.url());
  ASSERT_TRUE(admin);
  const std::vector<ServiceUser> services = {
      {"api",
       config::replica_durable("api-projector", "api-0"),
       {"platform.tenant.aaaaaaaaaaaaaaaaaaaa", "platform.account.a1"}},
      {"provisioner", "provisioner", {"platform.tenant.aaaaaaaaaaaaaaaaaaaa"}},
      {"router-sync", config::replica_durable("router-sync", "router-sync-0"), {}},
      {"billing",
       "billing-projector",
       {"platform.billing.customer.c1", "platform.tenant.aaaaaaaaaaaaaaaaaaaa"}},
  };
  std::uint64_t appended = 0;
  std::size_t tenant_events = 0;
  for (const auto& svc : services) {
    SCOPED_TRACE(svc.user);
    // The start every service makes: connected, the stream checks out.
    bool ready = false;
    auto opened = open_for_service(nats.url_for(svc.user), "supaplane-" + svc.user, 1, &ready);
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    EXPECT_TRUE(ready);
    auto& store = **opened;
    for (const auto& subject : svc.appends) {
      OutgoingEvent e;
      e.subject = subject;
      e.msg_id = svc.user + "-" + subject;
      e.body = svc.user;
      auto r = store.append(e);
      ASSERT_TRUE(r.ok()) << subject << ": " << r.error().message;
      ++appended;
      if (subject == "platform.tenant.aaaaaaaaaaaaaaaaaaaa") ++tenant_events;
    }
    // Its durable consumer: created, fed, kept.
    AckAll handler;
    ConsumerOptions co;
    co.durable = svc.durable;
    co.fetch_timeout_ms = 50;
    ConsumerRunner runner(store, co, handler);
    runner.start();
    EXPECT_TRUE(eventually([&] { return runner.stats().acked.load() >= appended; }))
        << runner.stats().acked.load() << " of " << appended;
    runner.stop();
    EXPECT_EQ(runner.stats().fetch_errors.load(), 0u);
    // Ordered replays, point reads and a subject's history.
    std::uint64_t replayed = 0;
    ASSERT_TRUE(store
                    .replay("platform.>", 1,
                            [&](const StoredMessage&) {
                              ++replayed;
                              return true;
                            })
                    .ok());
    EXPECT_EQ(replayed, appended);
    ASSERT_TRUE(store.get(1).ok());
    EXPECT_EQ(store.read_subject("platform.tenant.aaaaaaaaaaaaaaaaaaaa")->size(), tenant_events);
  }
  for (const auto& svc : services) {
    SCOPED_TRACE(svc.user);
    jsConsumerInfo* ci = nullptr;
    ASSERT_EQ(js_GetConsumerInfo(&ci, admin->jetstream(), "PLATFORM", svc.durable.c_str(), nullptr,
                                 nullptr),
              NATS_OK)
        << "the durable " << svc.durable << " did not survive its runner";
    jsConsumerInfo_Destroy(ci);
  }
  const std::uint64_t before = admin->last_sequence().value();
  ASSERT_EQ(before, appended);

  // router-sync appends nothing, anywhere.
  auto router = user_store(nats, "router-sync");
  ASSERT_TRUE(router);
  for (const char* subject :
       {"platform.tenant.aaaaaaaaaaaaaaaaaaaa", "platform.account.a1", "platform.billing.x"}) {
    OutgoingEvent e;
    e.subject = subject;
    e.body = "forged";
    EXPECT_FALSE(router->append(e).ok()) << subject;
  }
  // The api appends no billing event.
  auto api = user_store(nats, "api");
  ASSERT_TRUE(api);
  OutgoingEvent forged;
  forged.subject = "platform.billing.customer.c1";
  forged.body = "forged";
  EXPECT_FALSE(api->append(forged).ok());
  EXPECT_EQ(admin->last_sequence().value(), before);

  // billing can neither delete the api's durable nor take its name.
  const std::string api_durable = services[0].durable;
  auto billing = user_store(nats, "billing");
  ASSERT_TRUE(billing);
  EXPECT_NE(
      js_DeleteConsumer(billing->jetstream(), "PLATFORM", api_durable.c_str(), nullptr, nullptr),
      NATS_OK);
  natsSubscription* stolen = nullptr;
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = "PLATFORM";
  EXPECT_NE(js_PullSubscribe(&stolen, billing->jetstream(), "platform.>", api_durable.c_str(),
                             nullptr, &so, nullptr),
            NATS_OK);
  if (stolen) natsSubscription_Destroy(stolen);
  jsConsumerInfo* ci = nullptr;
  ASSERT_EQ(js_GetConsumerInfo(&ci, admin->jetstream(), "PLATFORM", api_durable.c_str(), nullptr,
                               nullptr),
            NATS_OK);
  jsConsumerInfo_Destroy(ci);

  // router-sync's replicas use the durables of their replica ids, never
  // another service's, nor a name outside its list; provisioner and billing
  // never reach a router-sync replica's durable.
  auto try_pull = [](EventStore& as, const char* durable) {
    natsSubscription* sub = nullptr;
    jsSubOptions o;
    jsSubOptions_Init(&o);
    o.Stream = "PLATFORM";
    const natsStatus st =
        js_PullSubscribe(&sub, as.jetstream(), "platform.>", durable, nullptr, &o, nullptr);
    if (sub) natsSubscription_Destroy(sub);
    return st;
  };
  EXPECT_EQ(try_pull(*router, "router-sync-router-sync-3"), NATS_OK);
  for (const char* other : {"provisioner", "billing-projector", "api-projector",
                            "api-projector-api-1", "router-sync-r1"})
    EXPECT_NE(try_pull(*router, other), NATS_OK) << "router-sync took " << other;
  for (const char* other : {"router-sync-router-sync-0", "router-sync-router-sync-2"})
    EXPECT_NE(try_pull(*api, other), NATS_OK) << "the api took " << other;
  auto provisioner = user_store(nats, "provisioner");
  ASSERT_TRUE(provisioner);
  for (EventStore* user : {provisioner.get(), billing.get()})
    EXPECT_NE(try_pull(*user, services[2].durable.c_str()), NATS_OK);

  // The api can neither create a stream nor delete PLATFORM.
  GoodStream other;
  other.cfg.Name = "OTHER";
  const char* other_subjects[] = {"other.>"};
  other.cfg.Subjects = other_subjects;
  EXPECT_NE(js_AddStream(nullptr, api->jetstream(), &other.cfg, nullptr, nullptr), NATS_OK);
  EXPECT_NE(js_DeleteStream(api->jetstream(), "PLATFORM", nullptr, nullptr), NATS_OK);
  EXPECT_FALSE(stream_exists(*admin, "OTHER"));
  EXPECT_EQ(admin->last_sequence().value(), before);

  // Default inboxes (_INBOX.*) are nobody's: a client without its prefix
  // gets no answers at all.
  ConnectOptions plain;
  plain.url = nats.url_for("api");
  plain.fail_fast = true;
  plain.request_timeout_ms = 1000;
  auto no_prefix = EventStore::connect(plain);
  ASSERT_TRUE(no_prefix.ok());
  EXPECT_FALSE((*no_prefix)->last_sequence().ok());

  // No credentials, no connection.
  ConnectOptions anon;
  anon.url = nats.anonymous_url();
  anon.fail_fast = true;
  auto refused = EventStore::connect(anon);
  EXPECT_FALSE(refused.ok());
}

/// A plain cnats connection (no event store around it), closed with the scope.
struct RawConnection {
  natsConnection* nc{nullptr};
  ~RawConnection() {
    if (nc) natsConnection_Destroy(nc);
  }
};

/// The server answered the connection's last publish with a permissions
/// violation for `subject` (a refused publish is dropped, nothing else).
bool publish_refused(const RawConnection& c, const std::string& subject) {
  const char* text = nullptr;
  return natsConnection_GetLastError(c.nc, &text) == NATS_NOT_PERMITTED && text &&
         std::string(text).find("Publish to \"" + subject + "\"") != std::string::npos;
}

/// What the admin sees of one durable: messages handed out, acks pending,
/// the ack floor.
struct DurableState {
  std::uint64_t delivered{0};
  std::int64_t ack_pending{0};
  std::uint64_t ack_floor{0};
};

DurableState durable_state(EventStore& admin, const std::string& durable) {
  jsConsumerInfo* ci = nullptr;
  DurableState s;
  if (js_GetConsumerInfo(&ci, admin.jetstream(), "PLATFORM", durable.c_str(), nullptr, nullptr) !=
      NATS_OK) {
    ADD_FAILURE() << "no durable " << durable;
    return s;
  }
  s = {ci->Delivered.Consumer, ci->NumAckPending, ci->AckFloor.Consumer};
  jsConsumerInfo_Destroy(ci);
  return s;
}

// The api and router-sync each run one durable per replica
// (config::replica_durable: api-projector-<pod>, router-sync-<pod>; pods
// api-0…, router-sync-0… of their StatefulSets). Each user pulls from and
// acks on its own durables only: a pull request or an ack on the other's
// is refused by the server and moves nothing.
TEST(NatsUsers, ApiAndRouterSyncPullAndAckOnlyTheirOwnReplicaDurables) {
  testenv::NatsServer nats({.users = true});
  nats.start();
  auto admin = admin_store(nats.url());
  ASSERT_TRUE(admin);
  OutgoingEvent e;
  e.subject = "platform.tenant.aaaaaaaaaaaaaaaaaaaa";
  e.body = "x";
  ASSERT_TRUE(admin->append(e).ok());

  struct Case {
    std::string owner, durable, intruder;
  };
  const std::vector<Case> cases = {
      {"api", config::replica_durable("api-projector", "api-0"), "router-sync"},
      {"router-sync", config::replica_durable("router-sync", "router-sync-1"), "api"},
  };
  for (const auto& c : cases) {
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = c.durable.c_str();
    cc.AckPolicy = js_AckExplicit;
    jsConsumerInfo* ci = nullptr;
    ASSERT_EQ(js_AddConsumer(&ci, admin->jetstream(), "PLATFORM", &cc, nullptr, nullptr), NATS_OK)
        << c.durable;
    jsConsumerInfo_Destroy(ci);
  }
  auto connect_as = [&](RawConnection& raw, const std::string& user) {
    ASSERT_EQ(natsConnection_ConnectTo(&raw.nc, nats.url_for(user).c_str()), NATS_OK);
  };
  const std::string next = "$JS.API.CONSUMER.MSG.NEXT.PLATFORM.";

  for (const auto& c : cases) {
    SCOPED_TRACE(c.intruder + " on " + c.durable);
    // The intruder asks for the owner's next message (and for a name of
    // the owner's kind that no replica has yet): refused, nothing handed out.
    const std::string other_kind = c.owner == "api" ? "api-projector-x" : "router-sync-x";
    for (const std::string& durable : {c.durable, other_kind}) {
      RawConnection intruder;
      connect_as(intruder, c.intruder);
      const std::string reply = inbox_prefix_for("supaplane-" + c.intruder) + ".pull";
      natsSubscription* sub = nullptr;
      ASSERT_EQ(natsConnection_SubscribeSync(&sub, intruder.nc, reply.c_str()), NATS_OK);
      ASSERT_EQ(natsConnection_PublishRequestString(intruder.nc, (next + durable).c_str(),
                                                    reply.c_str(), "1"),
                NATS_OK);
      natsConnection_Flush(intruder.nc);
      EXPECT_TRUE(eventually([&] { return publish_refused(intruder, next + durable); })) << durable;
      natsSubscription_Destroy(sub);
    }
    EXPECT_EQ(durable_state(*admin, c.durable).delivered, 0u);

    // The owner pulls its own: the message comes, with its ack subject.
    RawConnection owner;
    connect_as(owner, c.owner);
    const std::string reply = inbox_prefix_for("supaplane-" + c.owner) + ".pull";
    natsSubscription* sub = nullptr;
    ASSERT_EQ(natsConnection_SubscribeSync(&sub, owner.nc, reply.c_str()), NATS_OK);
    ASSERT_EQ(natsConnection_PublishRequestString(owner.nc, (next + c.durable).c_str(),
                                                  reply.c_str(), "1"),
              NATS_OK);
    natsMsg* msg = nullptr;
    ASSERT_EQ(natsSubscription_NextMsg(&msg, sub, 5000), NATS_OK)
        << c.owner << " could not pull from its own " << c.durable;
    const std::string ack = natsMsg_GetReply(msg) ? natsMsg_GetReply(msg) : "";
    natsMsg_Destroy(msg);
    natsSubscription_Destroy(sub);
    ASSERT_EQ(ack.rfind("$JS.ACK.PLATFORM." + c.durable + ".", 0), 0u) << ack;

    // The intruder acks the owner's message: refused, still pending.
    {
      RawConnection intruder;
      connect_as(intruder, c.intruder);
      ASSERT_EQ(natsConnection_PublishString(intruder.nc, ack.c_str(), "+ACK"), NATS_OK);
      natsConnection_Flush(intruder.nc);
      EXPECT_TRUE(eventually([&] { return publish_refused(intruder, ack); })) << ack;
    }
    EXPECT_EQ(durable_state(*admin, c.durable).ack_pending, 1);

    // The owner acks it.
    ASSERT_EQ(natsConnection_PublishString(owner.nc, ack.c_str(), "+ACK"), NATS_OK);
    ASSERT_EQ(natsConnection_Flush(owner.nc), NATS_OK);
    EXPECT_TRUE(eventually([&] { return durable_state(*admin, c.durable).ack_floor == 1; }));
    EXPECT_EQ(durable_state(*admin, c.durable).ack_pending, 0);
  }
}

TEST(NatsUsers, EachServiceSubscribesOnlyToItsOwnReplyInbox) {
  testenv::NatsServer nats({.users = true});
  nats.start();
  auto admin = admin_store(nats.url());
  ASSERT_TRUE(admin);
  const std::vector<std::string> users = {"api", "provisioner", "router-sync", "billing"};
  for (const auto& user : users) {
    SCOPED_TRACE(user);
    const std::string own = inbox_prefix_for("supaplane-" + user);
    // Its own inbox: subscribed, and a reply sent there arrives.
    RawConnection mine;
    ASSERT_EQ(natsConnection_ConnectTo(&mine.nc, nats.url_for(user).c_str()), NATS_OK);
    natsSubscription* sub = nullptr;
    ASSERT_EQ(natsConnection_SubscribeSync(&sub, mine.nc, (own + ".>").c_str()), NATS_OK);
    ASSERT_EQ(natsConnection_Flush(mine.nc), NATS_OK);
    ASSERT_EQ(natsConnection_PublishString(admin->connection(), (own + ".reply").c_str(), "r"),
              NATS_OK);
    natsMsg* got = nullptr;
    EXPECT_EQ(natsSubscription_NextMsg(&got, sub, 5000), NATS_OK);
    if (got) natsMsg_Destroy(got);
    natsSubscription_Destroy(sub);
    // Every other inbox, and the default one that covers them all: the
    // server refuses the subscription (a permissions violation).
    std::vector<std::string> forbidden = {"_INBOX.>", "_INBOX.*", ">"};
    for (const auto& other : users)
      if (other != user) forbidden.push_back(inbox_prefix_for("supaplane-" + other) + ".>");
    for (const auto& subject : forbidden) {
      RawConnection c;
      ASSERT_EQ(natsConnection_ConnectTo(&c.nc, nats.url_for(user).c_str()), NATS_OK);
      natsSubscription* s = nullptr;
      ASSERT_EQ(natsConnection_SubscribeSync(&s, c.nc, subject.c_str()), NATS_OK);
      natsConnection_Flush(c.nc);
      EXPECT_TRUE(eventually([&] {
        const char* text = nullptr;
        return natsConnection_GetLastError(c.nc, &text) == NATS_NOT_PERMITTED && text &&
               std::string(text).find("Subscription to \"" + subject + "\"") != std::string::npos;
      })) << subject;
      natsSubscription_Destroy(s);
    }
  }
}

}  // namespace
