// supaplane-billing against real nats-server, redis-server and PostgreSQL:
// signed webhooks over HTTP, the billing and tenant subjects on the log, the
// provisioner pausing / resuming a tenant's database, Checkout against a
// local stand-in of Stripe's HTTP API.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iterator>
#include <random>
#include <thread>

#include "alert_rules.hpp"
#include "billing_app.hpp"
#include "eventually.hpp"
#include "provisioner_app.hpp"
#include "provisioner_options.hpp"
#include "router_app.hpp"
#include "servers.hpp"
#include "signature.hpp"
#include "supaplane/auth/token.hpp"
#include "supaplane/core/ids.hpp"
#include "supaplane/domain/tenant.hpp"
#include "supaplane/driver/postgres_driver.hpp"
#include "supaplane/events/history.hpp"
#include "supaplane/events/tenant_events.hpp"
#include "supaplane/projection/redis.hpp"
#include "supaplane/v1/api.grpc.pb.h"

namespace {

using namespace supaplane;
namespace v1 = supaplane::v1;
using SteadyClock = std::chrono::steady_clock;

const char* kMasterKey = testenv::kTestMasterKey;
const std::string kSecret = "whsec_itest_0123456789abcdef";
const std::string kJwtSecret(40, 'j');
const std::string kOwner = "acct_owner";

std::int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string checkout_body(const std::string& evt, const std::string& customer,
                          const std::string& ref, const std::string& plan, std::int64_t created) {
  return R"({"id":")" + evt +
         R"(","object":"event","type":"checkout.session.completed","created":)" +
         std::to_string(created) + R"(,"data":{"object":{"id":"cs_)" + evt +
         R"(","object":"checkout.session","customer":")" + customer + R"(","subscription":"sub_)" +
         customer + R"(","client_reference_id":")" + ref + R"(","metadata":{"tenant_ref":")" + ref +
         R"(","plan":")" + plan + R"("}}}})";
}

std::string subscription_body(const std::string& evt, const std::string& type,
                              const std::string& customer, const std::string& price,
                              const std::string& status, std::int64_t created) {
  return R"({"id":")" + evt + R"(","object":"event","type":")" + type + R"(","created":)" +
         std::to_string(created) + R"(,"data":{"object":{"id":"sub_)" + customer +
         R"(","object":"subscription","customer":")" + customer + R"(","status":")" + status +
         R"(","items":{"object":"list","data":[{"price":{"id":")" + price + R"("}}]}}}})";
}

std::string invoice_body(const std::string& evt, const std::string& type,
                         const std::string& customer, const std::string& invoice, int attempts,
                         std::int64_t created) {
  return R"({"id":")" + evt + R"(","object":"event","type":")" + type + R"(","created":)" +
         std::to_string(created) + R"(,"data":{"object":{"id":")" + invoice +
         R"(","object":"invoice","customer":")" + customer + R"(","subscription":"sub_)" +
         customer + R"(","attempt_count":)" + std::to_string(attempts) + "}}}";
}

class BillingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    nats_.start();
    redis_.start();
    auto es = event_store::EventStore::connect({nats_.url(), "billing-itest"});
    ASSERT_TRUE(es.ok());
    store_ = std::move(*es);
    ASSERT_TRUE(store_->verify_stream().ok());
  }
  void TearDown() override {
    prov_.reset();
    billing_.reset();
  }

  billing::AppOptions options() {
    billing::AppOptions o;
    o.nats_url = nats_.url();
    o.redis_url = redis_.url();
    o.http_addr = "127.0.0.1:0";
    o.metrics_addr = "127.0.0.1:0";
    o.grpc_addr = "127.0.0.1:0";
    o.webhook_secrets = "whsec_old_one," + kSecret;
    o.grace_failed_attempts = 2;
    o.price_starter = "price_starter";
    o.price_pro = "price_pro";
    return o;
  }

  void start_billing(billing::AppOptions o) {
    billing_ = std::make_unique<billing::App>(std::move(o));
    ASSERT_TRUE(billing_->start().ok());
    const auto deadline = SteadyClock::now() + std::chrono::seconds(30);
    while (SteadyClock::now() < deadline && !billing_->readiness().empty())
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ASSERT_EQ(billing_->readiness(), "");
    http_ = std::make_unique<httplib::Client>("127.0.0.1", billing_->http_port());
  }
  void start_billing() { start_billing(options()); }

  /// A tenant as the api would have created it (owned by kOwner).
  std::string create_tenant(v1::Plan plan = v1::PLAN_FREE) {
    const std::string ref = ids::random_tenant_ref().str();
    v1::TenantEvent ev;
    ev.mutable_created()->set_name("shop-" + ref.substr(0, 6));
    ev.mutable_created()->set_plan(plan);
    ev.mutable_created()->set_owner_account_id(kOwner);
    ev.mutable_created()->set_generation(1);
    v1::Actor actor;
    actor.set_kind(v1::ACTOR_KIND_ACCOUNT);
    actor.set_id(kOwner);
    auto out = events::make_tenant_event(ref, ev, actor, "", event_store::Expected::no_message(),
                                         "c", "", 1);
    EXPECT_TRUE(store_->append(out).ok());
    return ref;
  }

  void admin_suspend(const std::string& ref) {
    const auto s = tenant(ref);
    auto evs = domain::decide(s, {domain::CommandKind::suspend, "", {}, "", "abuse report"});
    ASSERT_TRUE(evs.ok());
    ASSERT_EQ(evs->size(), 1u);
    v1::Actor actor;
    actor.set_kind(v1::ACTOR_KIND_ADMIN);
    actor.set_id("acct_admin");
    auto out = events::make_tenant_event(ref, evs->front(), actor, "",
                                         event_store::Expected::at(s.version()), "c", "", 2);
    ASSERT_TRUE(store_->append(out).ok());
  }

  v1::TenantState tenant(const std::string& ref) {
    auto msgs = store_->read_subject("platform.tenant." + ref);
    EXPECT_TRUE(msgs.ok());
    return events::fold_history(ref, msgs.ok() ? *msgs : std::vector<event_store::StoredMessage>{});
  }

  std::vector<std::string> tenant_types(const std::string& ref) {
    std::vector<std::string> out;
    auto msgs = store_->read_subject("platform.tenant." + ref);
    if (msgs)
      for (const auto& m : *msgs) out.push_back(m.event_type);
    return out;
  }

  std::size_t billing_count(const std::string& customer) {
    auto msgs = store_->read_subject("platform.billing." + customer);
    EXPECT_TRUE(msgs.ok());
    return msgs.ok() ? msgs->size() : 0;
  }

  int post(const std::string& body, const std::string& signature) {
    httplib::Headers h;
    if (!signature.empty()) h.emplace("Stripe-Signature", signature);
    auto r = http_->Post("/stripe/webhook", h, body, "application/json");
    return r ? r->status : -1;
  }
  /// The status line's code for a POST with these extra header lines and no
  /// body sent (the server must answer without waiting for one).
  int raw_status(const std::string& extra_headers) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(billing_->http_port()));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      return -1;
    }
    const std::string req =
        "POST /stripe/webhook HTTP/1.1\r\nHost: x\r\nStripe-Signature: t=1,v1=00\r\n" +
        extra_headers + "\r\n";
    if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
      ::close(fd);
      return -1;
    }
    char buf[64] = {};
    const ssize_t n = ::recv(fd, buf, sizeof buf - 1, 0);
    ::close(fd);
    if (n < 12) return -1;  // timed out: the server was waiting for the body
    return std::atoi(buf + 9);
  }

  int send(const std::string& body) {
    return post(body, billing::SignatureVerifier::sign(kSecret, now_s(), body));
  }

  /// The whole signed webhook request as it goes on the wire.
  static std::string signed_request(const std::string& body) {
    return "POST /stripe/webhook HTTP/1.1\r\nHost: x\r\nStripe-Signature: " +
           billing::SignatureVerifier::sign(kSecret, now_s(), body) +
           "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\n\r\n" + body;
  }

  std::string scrape() {
    httplib::Client ops("127.0.0.1", billing_->metrics_port());
    ops.set_read_timeout(std::chrono::milliseconds(500));
    auto m = ops.Get("/metrics");
    return m ? m->body : std::string();
  }
  /// True once one /metrics line reads exactly `line`.
  bool scraped(const std::string& line) {
    return testenv::eventually(
        [&] { return scrape().find("\n" + line + "\n") != std::string::npos; });
  }

  /// Waits (bounded) until `pred` holds on the tenant's folded state.
  template <typename Pred>
  v1::TenantState wait_tenant(const std::string& ref, Pred pred) {
    v1::TenantState s;
    const auto deadline = SteadyClock::now() + std::chrono::seconds(60);
    while (SteadyClock::now() < deadline) {
      s = tenant(ref);
      if (pred(s)) return s;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ADD_FAILURE() << "tenant " << ref << " never reached the expected state; phase "
                  << domain::phase_name(domain::derive_phase(s));
    return s;
  }

  testenv::NatsServer nats_;
  testenv::RedisServer redis_;
  std::unique_ptr<event_store::EventStore> store_;
  std::unique_ptr<billing::App> billing_;
  std::unique_ptr<provisioner::App> prov_;
  std::unique_ptr<httplib::Client> http_;
};

TEST_F(BillingTest, BadSignaturesAreRefusedAndAppendNothing) {
  start_billing();
  const std::string ref = create_tenant();
  const std::string body = checkout_body("evt_sig", "cus_sig", ref, "pro", now_s());
  const std::int64_t t = now_s();
  const std::string good = billing::SignatureVerifier::sign(kSecret, t, body);
  const std::string wrong = billing::SignatureVerifier::sign("whsec_wrong", t, body);
  const std::string good_v1 = good.substr(good.find("v1="));
  const std::string wrong_v1 = wrong.substr(wrong.find("v1="));
  EXPECT_EQ(post(body, ""), 400) << "missing header";
  EXPECT_EQ(post(body, "not a signature"), 400) << "garbage header";
  EXPECT_EQ(post(body, wrong), 400) << "wrong secret";
  EXPECT_EQ(post(body + " ", good), 400) << "tampered body";
  EXPECT_EQ(post(body, billing::SignatureVerifier::sign(kSecret, t - 301, body)), 400) << "stale";
  EXPECT_EQ(post(body, billing::SignatureVerifier::sign(kSecret, t + 400, body)), 400) << "future";
  EXPECT_EQ(billing_count("cus_sig"), 0u);
  EXPECT_EQ(tenant(ref).plan(), v1::PLAN_FREE);
  // The alert rules of billing name only metrics it exports (the refusals
  // above made the labelled ones appear).
  httplib::Client ops("127.0.0.1", billing_->metrics_port());
  auto m = ops.Get("/metrics");
  ASSERT_TRUE(m);
  // Its alert group and the Grafana dashboard's panels, against one scrape.
  const auto mon = testenv::check_monitoring("supaplane-billing", "supaplane_billing_", m->body);
  EXPECT_GE(mon.alert_uses, 2u);
  EXPECT_GT(mon.panel_uses, 0u);
  EXPECT_EQ(mon.missing, std::vector<std::string>{});
  // Two v1 signatures, one valid; the old secret of a roll also verifies.
  EXPECT_EQ(post(body, "t=" + std::to_string(t) + "," + wrong_v1 + "," + good_v1), 200);
  EXPECT_EQ(post(body, billing::SignatureVerifier::sign("whsec_old_one", t, body)), 200);
  EXPECT_EQ(billing_count("cus_sig"), 1u);
  EXPECT_EQ(tenant(ref).plan(), v1::PLAN_PRO);
}

TEST_F(BillingTest, OversizedBodyIs413AndUnknownTypeIsCountedAndIgnored) {
  start_billing();
  const std::string big(1024 * 1024 + 1, 'x');
  EXPECT_EQ(send(big), 413);
  // Bodies the limit cannot see are refused on their headers, before a byte
  // of them is read: chunked (no Content-Length) and compressed (a small
  // bomb inflates). Raw requests: headers only, the body never comes.
  EXPECT_EQ(raw_status("Transfer-Encoding: chunked\r\n"), 411);
  EXPECT_EQ(raw_status("Content-Length: 64\r\nContent-Encoding: gzip\r\n"), 415);
  EXPECT_EQ(raw_status(""), 411);  // neither length nor chunks: read until close
  // Over the limit by its Content-Length: 413 before a byte of the body.
  EXPECT_EQ(raw_status("Content-Length: 2000000\r\n"), 413);
  const std::string unknown =
      R"({"id":"evt_unknown","object":"event","type":"charge.refunded","created":1,"data":{"object":{"id":"ch_1","customer":"cus_u"}}})";
  EXPECT_EQ(send(unknown), 200);
  EXPECT_EQ(billing_->processor().counters().ignored.load(), 1u);
  EXPECT_EQ(billing_count("cus_u"), 0u);
  // A signed body that is not a Stripe event: refused, nothing appended.
  EXPECT_EQ(send("{\"hello\":1}"), 400);
  httplib::Client ops("127.0.0.1", billing_->metrics_port());
  auto m = ops.Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("supaplane_billing_ignored_events_total 1\n"), std::string::npos);
  EXPECT_NE(m->body.find("supaplane_billing_webhooks_total{code=\"413\"} 2\n"), std::string::npos);
  EXPECT_NE(m->body.find("supaplane_billing_webhooks_total{code=\"411\"} 2\n"), std::string::npos);
  EXPECT_NE(m->body.find("supaplane_billing_webhooks_total{code=\"415\"} 1\n"), std::string::npos);
}

/// A connection that sent `head` and nothing more (or -1).
int open_slow(int port, const std::string& head) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::send(fd, head.data(), head.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(head.size())) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool closed_by_peer(int fd) {
  char b;
  const ssize_t n = ::recv(fd, &b, 1, MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

/// Reads what the server sends until it closes (or 5 s pass).
std::string read_to_close(int fd) {
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string got;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  return got;
}

TEST_F(BillingTest, AWebhookDrippedAByteEvery200msIsCutAtTheDeadlineWith408AndAppendsNothing) {
  auto o = options();
  o.http_request_timeout_ms = 1000;
  start_billing(o);
  const std::string ref = create_tenant();
  const std::string req =
      signed_request(checkout_body("evt_drip", "cus_drip", ref, "pro", now_s()));
  const int fd = open_slow(billing_->http_port(), req.substr(0, 1));
  ASSERT_GE(fd, 0);
  // Each byte comes well within any per-read timeout; the request as a
  // whole does not come within the deadline.
  std::size_t sent = 1;
  for (; sent < req.size(); ++sent) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 200) == 1) break;  // answered (or closed)
    if (::send(fd, req.data() + sent, 1, MSG_NOSIGNAL) != 1) break;
  }
  EXPECT_LT(sent, req.size()) << "the whole request went through";
  const std::string answer = read_to_close(fd);
  ::close(fd);
  EXPECT_EQ(answer.rfind("HTTP/1.1 408", 0), 0u) << answer;
  EXPECT_TRUE(scraped("supaplane_billing_http_header_timeouts_total{server=\"webhook\"} 1"))
      << scrape();
  EXPECT_TRUE(scraped("supaplane_billing_webhooks_total{code=\"408\"} 1"));
  EXPECT_EQ(billing_count("cus_drip"), 0u);
  EXPECT_EQ(tenant(ref).plan(), v1::PLAN_FREE);
}

TEST_F(BillingTest, FiftySlowClientsDoNotHoldUpASignedWebhook) {
  auto o = options();
  // Long enough that none of the slow clients is cut while the webhook goes.
  o.http_request_timeout_ms = 120000;
  start_billing(o);
  std::vector<int> slow;
  for (int i = 0; i < 50; ++i) {
    slow.push_back(
        open_slow(billing_->http_port(), "POST /stripe/webhook HTTP/1.1\r\nHost: x\r\n"));
    ASSERT_GE(slow.back(), 0);
  }
  std::atomic<bool> dripping{true};
  std::thread drip([&] {
    while (dripping) {
      for (int fd : slow) ::send(fd, "X-Slow: 1\r\n", 11, MSG_NOSIGNAL);
      for (int i = 0; i < 10 && dripping; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  const std::string ref = create_tenant();
  const std::string body = checkout_body("evt_among_slow", "cus_slow", ref, "pro", now_s());
  http_->set_read_timeout(std::chrono::seconds(5));
  EXPECT_EQ(send(body), 200);
  EXPECT_EQ(billing_count("cus_slow"), 1u);
  dripping = false;
  drip.join();
  // ...while every slow client is still connected (the one event loop took
  // them in the order they connected, all before the webhook's).
  EXPECT_TRUE(std::none_of(slow.begin(), slow.end(), [](int fd) { return closed_by_peer(fd); }));
  for (int fd : slow) ::close(fd);
}

TEST_F(BillingTest, AFullWorkerQueueIsAnswered503WithRetryAfter) {
  auto o = options();
  o.http_threads = 1;
  o.http_queue = 1;
  start_billing(o);
  // The log stops answering: the one worker waits for its ack.
  nats_.freeze();
  auto post_in_thread = [&](const std::string& body, int& code) {
    return std::thread([this, body, &code] {
      httplib::Client c("127.0.0.1", billing_->http_port());
      c.set_read_timeout(std::chrono::seconds(30));
      httplib::Headers h{
          {"Stripe-Signature", billing::SignatureVerifier::sign(kSecret, now_s(), body)}};
      auto r = c.Post("/stripe/webhook", h, body, "application/json");
      code = r ? r->status : -1;
    });
  };
  int first = 0, second = 0;
  auto a = post_in_thread(subscription_body("evt_q1", "customer.subscription.updated", "cus_q",
                                            "price_pro", "active", 1),
                          first);
  const bool busy = scraped("supaplane_billing_http_busy_workers{server=\"webhook\"} 1");
  auto b = post_in_thread(subscription_body("evt_q2", "customer.subscription.updated", "cus_q",
                                            "price_pro", "active", 2),
                          second);
  const bool queued = scraped("supaplane_billing_http_queued_requests{server=\"webhook\"} 1");
  // One more: answered at once, not queued.
  const int fd =
      open_slow(billing_->http_port(),
                signed_request(subscription_body("evt_q3", "customer.subscription.updated", "cus_q",
                                                 "price_pro", "active", 3)));
  const std::string answer = fd >= 0 ? read_to_close(fd) : std::string();
  if (fd >= 0) ::close(fd);
  nats_.thaw();
  a.join();
  b.join();
  EXPECT_TRUE(busy) << scrape();
  EXPECT_TRUE(queued) << scrape();
  EXPECT_EQ(answer.rfind("HTTP/1.1 503", 0), 0u) << answer;
  EXPECT_NE(answer.find("Retry-After: 1\r\n"), std::string::npos) << answer;
  EXPECT_TRUE(scraped("supaplane_billing_http_queue_full_total{server=\"webhook\"} 1")) << scrape();
  // The two that waited were answered (200, or 503 if the log's ack timed out).
  EXPECT_TRUE(first == 200 || first == 503) << first;
  EXPECT_TRUE(second == 200 || second == 503) << second;
  const std::string unknown =
      R"({"id":"evt_after_queue","object":"event","type":"charge.refunded","created":1,"data":{"object":{"id":"ch_1","customer":"cus_f"}}})";
  EXPECT_EQ(send(unknown), 200);
}

TEST_F(BillingTest, AWebhookPortHeldByAnotherProcessIsRefused) {
  // Another listener with SO_REUSEPORT, as httplib's defaults would set it.
  const int other = ::socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  ::setsockopt(other, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  ::setsockopt(other, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(other, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(other, 16), 0);
  socklen_t len = sizeof a;
  ::getsockname(other, reinterpret_cast<sockaddr*>(&a), &len);
  auto o = options();
  o.http_addr = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
  billing::App app(o);
  auto st = app.start();
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message.find(o.http_addr), std::string::npos) << st.error().message;
  ::close(other);
}

TEST_F(BillingTest, SameEventFiveTimesIsOneEvent) {
  start_billing();
  const std::string ref = create_tenant();
  const std::string body = checkout_body("evt_dup", "cus_dup", ref, "starter", now_s());
  for (int i = 0; i < 5; ++i) EXPECT_EQ(send(body), 200);
  EXPECT_EQ(billing_count("cus_dup"), 1u);
  EXPECT_EQ(tenant_types(ref), (std::vector<std::string>{"tenant.created", "tenant.plan_changed"}));
  EXPECT_EQ(tenant(ref).plan(), v1::PLAN_STARTER);
  EXPECT_EQ(billing_->processor().counters().duplicates.load(), 4u);
}

TEST_F(BillingTest, SameEventFiveTimesAtOnceIsOneEvent) {
  start_billing();
  const std::string ref = create_tenant();
  const std::string body = checkout_body("evt_par", "cus_par", ref, "pro", now_s());
  const std::string sig = billing::SignatureVerifier::sign(kSecret, now_s(), body);
  std::vector<int> codes(5, 0);
  std::vector<std::thread> senders;
  for (int i = 0; i < 5; ++i) {
    senders.emplace_back([&, i] {
      httplib::Client c("127.0.0.1", billing_->http_port());
      auto r = c.Post("/stripe/webhook", {{"Stripe-Signature", sig}}, body, "application/json");
      codes[static_cast<std::size_t>(i)] = r ? r->status : -1;
    });
  }
  for (auto& t : senders) t.join();
  EXPECT_EQ(codes, std::vector<int>(5, 200));
  EXPECT_EQ(billing_count("cus_par"), 1u);
  EXPECT_EQ(tenant_types(ref), (std::vector<std::string>{"tenant.created", "tenant.plan_changed"}));
}

TEST_F(BillingTest, ShuffledSubscriptionUpdatesEndOnTheNewestPlan) {
  start_billing();
  const std::string ref = create_tenant();
  const std::int64_t t0 = now_s() - 1000;
  ASSERT_EQ(send(checkout_body("evt_co", "cus_shuf", ref, "starter", t0)), 200);
  std::vector<std::string> bodies;
  const char* prices[] = {"price_pro", "price_starter", "price_pro", "price_starter",
                          "price_pro", "price_starter", "price_pro"};
  for (int i = 0; i < 7; ++i)
    bodies.push_back(subscription_body(
        "evt_up" + std::to_string(i),
        i == 0 ? "customer.subscription.created" : "customer.subscription.updated", "cus_shuf",
        prices[i], "active", t0 + 10 * (i + 1)));
  std::mt19937 rng(7);
  std::shuffle(bodies.begin(), bodies.end(), rng);
  // The point of the test: the newest update is not the last one delivered.
  ASSERT_EQ(bodies.back().find("\"evt_up6\""), std::string::npos);
  for (const auto& b : bodies) EXPECT_EQ(send(b), 200);
  EXPECT_EQ(tenant(ref).plan(), v1::PLAN_PRO);  // evt_up6, the newest, says pro
  EXPECT_EQ(billing_count("cus_shuf"), 8u);
  // A straggler older than everything changes nothing.
  EXPECT_EQ(send(subscription_body("evt_old", "customer.subscription.updated", "cus_shuf",
                                   "price_starter", "active", t0 + 1)),
            200);
  EXPECT_EQ(tenant(ref).plan(), v1::PLAN_PRO);
}

TEST_F(BillingTest, SubscriptionDeletedSuspendsAndMovesToFree) {
  start_billing();
  const std::string ref = create_tenant();
  const std::int64_t t0 = now_s() - 100;
  ASSERT_EQ(send(checkout_body("evt_c", "cus_del", ref, "pro", t0)), 200);
  ASSERT_EQ(send(subscription_body("evt_d", "customer.subscription.deleted", "cus_del", "price_pro",
                                   "canceled", t0 + 20)),
            200);
  // An update from before the deletion arrives late: ignored.
  ASSERT_EQ(send(subscription_body("evt_u", "customer.subscription.updated", "cus_del", "price_pro",
                                   "active", t0 + 10)),
            200);
  const auto s = tenant(ref);
  EXPECT_EQ(s.plan(), v1::PLAN_FREE);
  EXPECT_TRUE(s.suspended());
  EXPECT_EQ(s.suspend_reason(), billing::kReasonCanceled);
}

TEST_F(BillingTest, AnAdminSuspensionIsNotLiftedByAPayment) {
  start_billing();
  const std::string ref = create_tenant();
  const std::int64_t t0 = now_s() - 100;
  ASSERT_EQ(send(checkout_body("evt_c", "cus_adm", ref, "pro", t0)), 200);
  admin_suspend(ref);
  ASSERT_EQ(send(invoice_body("evt_f1", "invoice.payment_failed", "cus_adm", "in_1", 2, t0 + 10)),
            200);
  ASSERT_EQ(send(invoice_body("evt_p1", "invoice.paid", "cus_adm", "in_1", 2, t0 + 20)), 200);
  const auto s = tenant(ref);
  EXPECT_TRUE(s.suspended());
  EXPECT_EQ(s.suspend_reason(), "abuse report");
}

TEST_F(BillingTest, VoidingTheOverdueInvoiceLiftsTheSuspensionAndUncollectibleDoesNot) {
  start_billing();  // grace: 2 failed attempts
  const std::string ref = create_tenant();
  const std::int64_t t0 = now_s() - 100;
  ASSERT_EQ(send(checkout_body("evt_c", "cus_void", ref, "pro", t0)), 200);
  ASSERT_EQ(send(invoice_body("evt_f", "invoice.payment_failed", "cus_void", "in_v", 2, t0 + 10)),
            200);
  auto s = tenant(ref);
  ASSERT_TRUE(s.suspended());
  EXPECT_EQ(s.suspend_reason(), billing::kReasonOverdue);
  // Written off: still unpaid, so still suspended (and nothing recorded).
  const auto before = billing_count("cus_void");
  ASSERT_EQ(
      send(invoice_body("evt_u", "invoice.marked_uncollectible", "cus_void", "in_v", 2, t0 + 20)),
      200);
  EXPECT_EQ(billing_count("cus_void"), before);
  EXPECT_TRUE(tenant(ref).suspended());
  ASSERT_EQ(send(invoice_body("evt_v", "invoice.voided", "cus_void", "in_v", 2, t0 + 30)), 200);
  s = tenant(ref);
  EXPECT_FALSE(s.suspended());
  EXPECT_EQ(s.plan(), v1::PLAN_PRO);
  const auto types = tenant_types(ref);
  EXPECT_EQ(std::count(types.begin(), types.end(), "tenant.unsuspended"), 1) << types.size();
}

TEST_F(BillingTest, LogDownIsAnswered503AndTheRetryIsRecorded) {
  start_billing();
  const std::string ref = create_tenant();
  const std::string body = checkout_body("evt_down", "cus_down", ref, "pro", now_s());
  nats_.stop();
  // Once the service has seen the log go, it answers 503 at once rather than
  // after its request timeout (which is as long as this client's).
  auto deadline = SteadyClock::now() + std::chrono::seconds(30);
  while (SteadyClock::now() < deadline && billing_->readiness().empty())
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_FALSE(billing_->readiness().empty());
  EXPECT_EQ(send(body), 503);
  nats_.restart();
  deadline = SteadyClock::now() + std::chrono::seconds(30);
  int code = 0;
  // Stripe's own retry, sent once the log answers again (the test reads the
  // log through its own connection, which must be back too).
  while (SteadyClock::now() < deadline && !(billing_->readiness().empty() && store_->connected()))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  code = send(body);
  EXPECT_EQ(code, 200);
  EXPECT_EQ(billing_count("cus_down"), 1u);
  EXPECT_EQ(tenant(ref).plan(), v1::PLAN_PRO);
}

TEST_F(BillingTest, ProjectionLinksCustomerAndTenant) {
  start_billing();
  const std::string ref = create_tenant();
  ASSERT_EQ(send(checkout_body("evt_p", "cus_proj", ref, "pro", now_s())), 200);
  auto addr = projection::parse_redis_url(redis_.url());
  ASSERT_TRUE(addr.ok());
  projection::RedisConnection redis(*addr, {});
  ASSERT_TRUE(redis.ensure().ok());
  std::string got;
  const auto deadline = SteadyClock::now() + std::chrono::seconds(30);
  while (SteadyClock::now() < deadline) {
    auto r = redis.command({"GET", "sp:billing:tenant:" + ref});
    ASSERT_TRUE(r.ok());
    if ((*r)->type == REDIS_REPLY_STRING) {
      got.assign((*r)->str, (*r)->len);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(got, "cus_proj");
  auto state = redis.command({"HGET", "sp:billing:customer:cus_proj", "state"});
  ASSERT_TRUE(state.ok());
  ASSERT_EQ((*state)->type, REDIS_REPLY_STRING);
  v1::BillingState s;
  ASSERT_TRUE(s.ParseFromString(std::string((*state)->str, (*state)->len)));
  ASSERT_EQ(s.subscriptions_size(), 1);
  EXPECT_EQ(s.subscriptions(0).tenant_ref(), ref);
  EXPECT_EQ(s.subscriptions(0).plan(), v1::PLAN_PRO);
}

// With the provisioner: overdue → SUSPENDED and the database refuses
// connections (paused); paid → ACTIVE and it accepts them again.
TEST_F(BillingTest, PaymentFailurePastGracePausesTheTenantAndPaymentResumesIt) {
  auto& pg = testenv::shared_postgres_with_passwords();
  static int n = 0;
  const std::string db = "billing_" + std::to_string(::getpid()) + "_" + std::to_string(++n);
  pg.create_database(db);
  prov_ = std::make_unique<provisioner::App>(testenv::provisioner_options(nats_, pg, db));
  ASSERT_TRUE(prov_->start().ok());
  // router-sync too: a billing suspension must reach the edge.
  testenv::TempDir traefik("supaplane-billing-traefik");
  router::AppOptions ro;
  ro.nats_url = nats_.url();
  ro.redis_url = redis_.url();
  ro.database_url = pg.admin_dsn(db);
  ro.master_key = kMasterKey;
  ro.http_addr = "127.0.0.1:0";
  ro.metrics_addr = "127.0.0.1:0";
  ro.traefik_dir = traefik.path();
  router::App edge(ro);
  ASSERT_TRUE(edge.start().ok());
  httplib::Client edge_http("127.0.0.1", edge.http_port());
  const std::string host_suffix = "." + ro.render.base_domain;
  auto forward = [&](const std::string& r, const std::string& key) {
    auto res =
        edge_http.Get("/auth/forward", {{"X-Forwarded-Host", r + host_suffix}, {"apikey", key}});
    return res ? res->status : -1;
  };
  start_billing();
  driver::PostgresDriver driver({pg.admin_dsn("postgres")});

  const std::string ref = create_tenant();
  wait_tenant(ref,
              [](const v1::TenantState& s) { return domain::derive_phase(s) == v1::PHASE_ACTIVE; });
  const std::int64_t t0 = now_s() - 1000;
  ASSERT_EQ(send(checkout_body("evt_c", "cus_late", ref, "pro", t0)), 200);
  ASSERT_EQ(send(invoice_body("evt_f1", "invoice.payment_failed", "cus_late", "in_7", 1, t0 + 10)),
            200);
  EXPECT_FALSE(tenant(ref).suspended()) << "within grace";
  ASSERT_EQ(send(invoice_body("evt_f2", "invoice.payment_failed", "cus_late", "in_7", 2, t0 + 20)),
            200);
  auto s = tenant(ref);
  EXPECT_TRUE(s.suspended());
  EXPECT_EQ(s.suspend_reason(), billing::kReasonOverdue);
  s = wait_tenant(ref, [](const v1::TenantState& st) {
    return st.observed_state() == v1::OBSERVED_STATE_PAUSED;
  });
  EXPECT_EQ(domain::derive_phase(s), v1::PHASE_SUSPENDED);
  auto seen = driver.observe(ref, true);
  ASSERT_TRUE(seen.ok());
  EXPECT_TRUE(seen->exists);
  EXPECT_FALSE(seen->accepting_connections);
  // ...and at the edge: its keys answer 503, and its hosts the maintenance 503.
  auto keys = prov_->keys().load(ref);
  ASSERT_TRUE(keys.ok() && keys->has_value());
  const std::string key = (*keys)->keys.publishable_key;
  auto eventually = [](auto pred) {
    const auto deadline = SteadyClock::now() + std::chrono::seconds(30);
    while (SteadyClock::now() < deadline) {
      if (pred()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  };
  EXPECT_TRUE(eventually([&] { return forward(ref, key) == 503; }));
  auto maintenance = edge_http.Get("/rest/v1/todos", {{"Host", ref + host_suffix}});
  ASSERT_TRUE(maintenance);
  EXPECT_EQ(maintenance->status, 503);
  EXPECT_NE(maintenance->body.find("suspended"), std::string::npos) << maintenance->body;

  ASSERT_EQ(send(invoice_body("evt_p", "invoice.paid", "cus_late", "in_7", 2, t0 + 30)), 200);
  s = wait_tenant(
      ref, [](const v1::TenantState& st) { return domain::derive_phase(st) == v1::PHASE_ACTIVE; });
  EXPECT_FALSE(s.suspended());
  EXPECT_EQ(s.plan(), v1::PLAN_PRO);
  seen = driver.observe(ref, true);
  ASSERT_TRUE(seen.ok());
  EXPECT_TRUE(seen->accepting_connections);
  EXPECT_TRUE(eventually([&] { return forward(ref, key) == 200; })) << "the edge still refuses";
  // Billing's commands carry the Stripe actor.
  auto msgs = store_->read_subject("platform.tenant." + ref);
  ASSERT_TRUE(msgs.ok());
  int by_stripe = 0;
  for (const auto& m : *msgs) {
    v1::EventEnvelope env;
    ASSERT_TRUE(env.ParseFromString(m.data));
    if (env.actor().kind() == v1::ACTOR_KIND_STRIPE) ++by_stripe;
  }
  EXPECT_EQ(by_stripe, 3);  // plan_changed, suspended, unsuspended
}

// ---- Checkout against a local stand-in of Stripe's HTTP API.

class FakeStripe {
 public:
  FakeStripe() {
    server_.Post("/v1/checkout/sessions", [this](const httplib::Request& req,
                                                 httplib::Response& res) {
      std::lock_guard lk(mu_);
      auth_ = req.get_header_value("Authorization");
      content_type_ = req.get_header_value("Content-Type");
      form_.clear();
      for (const auto& [k, v] : req.params) form_[k] = v;
      res.set_content(
          R"({"id":"cs_test_1","object":"checkout.session","url":"https://checkout.stripe.com/c/pay/cs_test_1"})",
          "application/json");
    });
    // A subscription with one item; GET shows it, POST moves its price.
    server_.Get(R"(/v1/subscriptions/([A-Za-z0-9_]+))", [this](const httplib::Request& req,
                                                               httplib::Response& res) {
      std::lock_guard lk(mu_);
      calls_.push_back("GET " + req.path);
      auth_ = req.get_header_value("Authorization");
      res.set_content(
          R"({"id":")" + req.matches[1].str() +
              R"(","object":"subscription","items":{"object":"list","data":[{"id":"si_one","object":"subscription_item"}]}})",
          "application/json");
    });
    server_.Post(R"(/v1/subscriptions/([A-Za-z0-9_]+))", [this](const httplib::Request& req,
                                                                httplib::Response& res) {
      std::lock_guard lk(mu_);
      calls_.push_back("POST " + req.path);
      form_.clear();
      for (const auto& [k, v] : req.params) form_[k] = v;
      res.set_content(R"({"id":")" + req.matches[1].str() + R"(","object":"subscription"})",
                      "application/json");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  std::vector<std::string> calls() {
    std::lock_guard lk(mu_);
    return calls_;
  }
  ~FakeStripe() {
    server_.stop();
    thread_.join();
  }
  std::string base() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::map<std::string, std::string> form() {
    std::lock_guard lk(mu_);
    return form_;
  }
  std::string auth() {
    std::lock_guard lk(mu_);
    return auth_;
  }
  std::string content_type() {
    std::lock_guard lk(mu_);
    return content_type_;
  }

 private:
  httplib::Server server_;
  int port_{0};
  std::thread thread_;
  std::mutex mu_;
  std::map<std::string, std::string> form_;
  std::string auth_;
  std::string content_type_;
  std::vector<std::string> calls_;  ///< "GET /v1/subscriptions/<id>", ...
};

/// One BillingService call on a fresh channel, with `token` as the bearer
/// when set: `call(stub, ctx)`.
template <typename Call>
grpc::Status billing_call(int port, const std::string& token, Call&& call) {
  auto stub = v1::BillingService::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  return call(*stub, ctx);
}

grpc::Status create_session(int port, const std::string& token, const std::string& ref,
                            v1::Plan plan, v1::CheckoutSession* out) {
  v1::CreateCheckoutSessionRequest req;
  req.set_ref(ref);
  req.set_plan(plan);
  return billing_call(port, token, [&](auto& stub, auto& ctx) {
    return stub.CreateCheckoutSession(&ctx, req, out);
  });
}

grpc::Status change_plan(int port, const std::string& token, const std::string& ref, v1::Plan plan,
                         v1::SubscriptionPlanChange* out) {
  v1::ChangeSubscriptionPlanRequest req;
  req.set_ref(ref);
  req.set_plan(plan);
  return billing_call(port, token, [&](auto& stub, auto& ctx) {
    return stub.ChangeSubscriptionPlan(&ctx, req, out);
  });
}

TEST_F(BillingTest, CheckoutIsDisabledWithoutASecretKey) {
  start_billing();
  v1::CheckoutSession out;
  auto st = create_session(billing_->grpc_port(), "", create_tenant(), v1::PLAN_PRO, &out);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(st.error_message().find("SUPAPLANE_STRIPE_SECRET_KEY"), std::string::npos);
}

TEST_F(BillingTest, CheckoutCreatesASessionForTheOwnersTenant) {
  FakeStripe stripe;
  auto o = options();
  o.stripe_secret_key = "sk_test_itest";
  o.stripe_api_base = stripe.base();
  o.jwt_secret = kJwtSecret;
  o.checkout_success_url = "https://console.example/ok";
  o.checkout_cancel_url = "https://console.example/cancel";
  start_billing(o);
  const std::string ref = create_tenant();
  auth::TokenService tokens(kJwtSecret, SystemClock::instance());
  auto owner = tokens.issue({kOwner, auth::Role::customer});
  auto other = tokens.issue({"acct_other", auth::Role::customer});
  ASSERT_TRUE(owner.ok() && other.ok());

  v1::CheckoutSession out;
  auto st = create_session(billing_->grpc_port(), owner->token, ref, v1::PLAN_PRO, &out);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(out.url(), "https://checkout.stripe.com/c/pay/cs_test_1");
  EXPECT_EQ(out.id(), "cs_test_1");
  EXPECT_EQ(stripe.auth(), "Bearer sk_test_itest");
  EXPECT_EQ(stripe.content_type(), "application/x-www-form-urlencoded");
  auto f = stripe.form();
  EXPECT_EQ(f["mode"], "subscription");
  EXPECT_EQ(f["line_items[0][price]"], "price_pro");
  EXPECT_EQ(f["line_items[0][quantity]"], "1");
  EXPECT_EQ(f["success_url"], "https://console.example/ok");
  EXPECT_EQ(f["cancel_url"], "https://console.example/cancel");
  EXPECT_EQ(f["client_reference_id"], ref);
  EXPECT_EQ(f["metadata[tenant_ref]"], ref);
  EXPECT_EQ(f["metadata[plan]"], "pro");
  EXPECT_EQ(f["subscription_data[metadata][tenant_ref]"], ref);

  // Another customer's tenant does not exist for them; no token, no call.
  EXPECT_EQ(
      create_session(billing_->grpc_port(), other->token, ref, v1::PLAN_PRO, &out).error_code(),
      grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(create_session(billing_->grpc_port(), "", ref, v1::PLAN_PRO, &out).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(
      create_session(billing_->grpc_port(), owner->token, ref, v1::PLAN_FREE, &out).error_code(),
      grpc::StatusCode::INVALID_ARGUMENT);
  // Both refusals at the edge are counted by reason (bad input is not a refusal there).
  httplib::Client ops("127.0.0.1", billing_->metrics_port());
  auto scraped = ops.Get("/metrics");
  ASSERT_TRUE(scraped);
  EXPECT_NE(scraped->body.find("supaplane_billing_grpc_refused_total{reason=\"not_owner\"} 1\n"),
            std::string::npos);
  EXPECT_NE(
      scraped->body.find("supaplane_billing_grpc_refused_total{reason=\"unauthenticated\"} 1\n"),
      std::string::npos);
  EXPECT_EQ(create_session(billing_->grpc_port(), owner->token, "bad ref", v1::PLAN_PRO, &out)
                .error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

/// Runs the real supaplanectl; returns its exit code and its output.
std::pair<int, std::string> supaplanectl(const std::vector<std::string>& args) {
  testenv::TempDir dir("supaplanectl");
  std::vector<std::string> argv{SUPAPLANECTL};
  argv.insert(argv.end(), args.begin(), args.end());
  testenv::Process p;
  p.start(argv, dir.path() + "/out");
  const int code = p.wait();
  std::ifstream in(dir.path() + "/out");
  return {code, std::string(std::istreambuf_iterator<char>(in), {})};
}

TEST_F(BillingTest, ALiveSubscriptionIsChangedInPlaceNeverBoughtTwice) {
  FakeStripe stripe;
  auto o = options();
  o.stripe_secret_key = "sk_test_itest";
  o.stripe_api_base = stripe.base();
  o.jwt_secret = kJwtSecret;
  start_billing(o);
  const std::string ref = create_tenant();
  auth::TokenService tokens(kJwtSecret, SystemClock::instance());
  auto owner = tokens.issue({kOwner, auth::Role::customer});
  auto other = tokens.issue({"acct_other", auth::Role::customer});
  ASSERT_TRUE(owner.ok() && other.ok());
  const int port = billing_->grpc_port();
  v1::SubscriptionPlanChange change;
  v1::CheckoutSession session;

  // Nothing to change before a subscription exists.
  auto st = change_plan(port, owner->token, ref, v1::PLAN_PRO, &change);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(st.error_message().find("CreateCheckoutSession"), std::string::npos);
  EXPECT_TRUE(stripe.calls().empty());

  // The customer buys STARTER; once billing has linked customer and tenant,
  // a second Checkout is refused.
  const std::int64_t t0 = now_s() - 100;
  ASSERT_EQ(send(checkout_body("evt_c", "cus_chg", ref, "starter", t0)), 200);
  const auto deadline = SteadyClock::now() + std::chrono::seconds(30);
  while (SteadyClock::now() < deadline) {
    st = create_session(port, owner->token, ref, v1::PLAN_PRO, &session);
    if (st.error_code() == grpc::StatusCode::FAILED_PRECONDITION) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(st.error_message().find("live starter subscription"), std::string::npos)
      << st.error_message();

  // Same plan: answered without calling Stripe.
  const auto calls_before = stripe.calls().size();
  st = change_plan(port, owner->token, ref, v1::PLAN_STARTER, &change);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_FALSE(change.changed());
  EXPECT_EQ(change.subscription_id(), "sub_cus_chg");
  EXPECT_EQ(stripe.calls().size(), calls_before);

  // Another customer's tenant, no token, a bad plan: refused, Stripe untouched.
  EXPECT_EQ(change_plan(port, other->token, ref, v1::PLAN_PRO, &change).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(change_plan(port, "", ref, v1::PLAN_PRO, &change).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(change_plan(port, owner->token, ref, v1::PLAN_FREE, &change).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(stripe.calls().size(), calls_before);

  // Upgrade: the one item of the live subscription moves to PRO's price.
  st = change_plan(port, owner->token, ref, v1::PLAN_PRO, &change);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_TRUE(change.changed());
  EXPECT_EQ(change.plan(), v1::PLAN_PRO);
  const auto calls = stripe.calls();
  ASSERT_EQ(calls.size(), calls_before + 2);
  EXPECT_EQ(calls[calls_before], "GET /v1/subscriptions/sub_cus_chg");
  EXPECT_EQ(calls[calls_before + 1], "POST /v1/subscriptions/sub_cus_chg");
  EXPECT_EQ(stripe.auth(), "Bearer sk_test_itest");
  auto f = stripe.form();
  EXPECT_EQ(f["items[0][id]"], "si_one");
  EXPECT_EQ(f["items[0][price]"], "price_pro");
  EXPECT_EQ(f["proration_behavior"], "create_prorations");
  // The same through supaplanectl: a second checkout refused (exit 5), a
  // change to the plan it is on reported as such.
  const std::string billing_addr = "127.0.0.1:" + std::to_string(port);
  auto [code, out] = supaplanectl({"--billing", billing_addr, "--token", owner->token, "billing",
                                   "checkout", ref, "--plan", "pro"});
  EXPECT_EQ(code, 5) << out;
  EXPECT_NE(out.find("already has a live"), std::string::npos) << out;
  std::tie(code, out) = supaplanectl({"--billing", billing_addr, "--token", owner->token, "--json",
                                      "billing", "change-plan", ref, "--plan", "starter"});
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("\"changed\": false"), std::string::npos) << out;
  std::tie(code, out) = supaplanectl({"--billing", billing_addr, "--token", other->token, "billing",
                                      "change-plan", ref, "--plan", "pro"});
  EXPECT_EQ(code, 4) << out;
  EXPECT_EQ(stripe.calls().size(), calls_before + 2);
  // The tenant's plan follows Stripe's own confirmation.
  ASSERT_EQ(send(subscription_body("evt_up", "customer.subscription.updated", "cus_chg",
                                   "price_pro", "active", t0 + 10)),
            200);
  EXPECT_EQ(tenant(ref).plan(), v1::PLAN_PRO);

  // Canceled: a new Checkout is allowed again.
  ASSERT_EQ(send(subscription_body("evt_del", "customer.subscription.deleted", "cus_chg",
                                   "price_pro", "canceled", t0 + 20)),
            200);
  st = create_session(port, owner->token, ref, v1::PLAN_PRO, &session);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(stripe.form()["customer"], "cus_chg");  // the same Stripe customer
  std::tie(code, out) = supaplanectl({"--billing", billing_addr, "--token", owner->token, "billing",
                                      "checkout", ref, "--plan", "starter"});
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("https://checkout.stripe.com/c/pay/cs_test_1"), std::string::npos) << out;
  EXPECT_EQ(stripe.form()["line_items[0][price]"], "price_starter");
}

TEST(BillingStart, RefusesWithoutAWebhookSecret) {
  billing::AppOptions o;
  o.http_addr = o.metrics_addr = o.grpc_addr = "127.0.0.1:0";
  billing::App app(o);
  auto st = app.start();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().field, "webhook_secret");
}

TEST(BillingStart, TlsOnTheGrpcPortNeedsBothFiles) {
  testenv::TempDir dir("supaplane-tls");
  const auto cert = testenv::self_signed_cert(dir.path(), "billing");
  billing::AppOptions o;
  o.http_addr = o.metrics_addr = o.grpc_addr = "127.0.0.1:0";
  o.webhook_secrets = kSecret;
  o.tls_cert = cert.cert;
  billing::App app(o);
  auto st = app.start();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().field, "tls_key");
}

TEST(BillingStart, CheckoutNeedsTheJwtSecret) {
  billing::AppOptions o;
  o.http_addr = o.metrics_addr = o.grpc_addr = "127.0.0.1:0";
  o.webhook_secrets = kSecret;
  o.stripe_secret_key = "sk_test_x";
  billing::App app(o);
  auto st = app.start();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().field, "jwt_secret");
  EXPECT_EQ(st.error().message.find("sk_test_x"), std::string::npos);
}

}  // namespace

namespace {

// invoice.paid racing the payment_failed that reaches grace, for the same
// invoice, many times over: whatever the interleaving, the tenant ends
// unsuspended (the paid invoice is the newest truth).
TEST_F(BillingTest, APaymentRacingTheFailureThatReachesGraceWins) {
  start_billing();
  const std::string ref = create_tenant();
  const std::int64_t t0 = now_s() - 1000;
  ASSERT_EQ(send(checkout_body("evt_rc", "cus_race", ref, "pro", t0)), 200);
  for (int i = 0; i < 10; ++i) {
    const std::string inv = "in_race" + std::to_string(i);
    const std::int64_t t = t0 + 10 * (i + 1);
    ASSERT_EQ(send(invoice_body("evt_rf1_" + std::to_string(i), "invoice.payment_failed",
                                "cus_race", inv, 1, t)),
              200);
    int failed_status = 0, paid_status = 0;
    std::thread failed([&] {
      failed_status = send(invoice_body("evt_rf2_" + std::to_string(i), "invoice.payment_failed",
                                        "cus_race", inv, 2, t + 1));
    });
    std::thread paid([&] {
      paid_status = send(
          invoice_body("evt_rp_" + std::to_string(i), "invoice.paid", "cus_race", inv, 2, t + 2));
    });
    failed.join();
    paid.join();
    ASSERT_EQ(failed_status, 200);
    ASSERT_EQ(paid_status, 200);
    EXPECT_FALSE(tenant(ref).suspended()) << "round " << i << ": suspended with the invoice paid";
  }
}

}  // namespace

// Redis is a cache of the log: FLUSHALL, then a redis-server killed and
// restarted empty, each while billing runs. Reads answer UNAVAILABLE until
// the projection is rebuilt, never "no customer" for a tenant that has one
// (a second Checkout would then bill twice), and new events apply after.
TEST_F(BillingTest, RedisLostAtRunTimeIsRebuiltAndNeverReadsAsNoCustomer) {
  start_billing();
  auto& reader = billing_->reader();
  std::vector<std::string> refs;
  auto customer = [](std::size_t i) { return "cus_lost" + std::to_string(i); };
  for (int round = 0; round < 3; ++round) {
    refs.push_back(create_tenant());
    const std::string evt = "evt_lost_" + std::to_string(round);
    ASSERT_EQ(send(checkout_body(evt, customer(round), refs.back(), "pro", now_s())), 200);
    std::string wrong;
    int unavailable = 0;
    const bool back = testenv::eventually([&] {
      for (std::size_t i = 0; i < refs.size(); ++i) {
        const std::string& ref = refs[i];
        auto r = reader.customer_of(ref);
        if (!r) {
          if (r.error().code != errc::unavailable) wrong = r.error().message;
          ++unavailable;
          return !wrong.empty();
        }
        if (!r->has_value() || **r != customer(i)) {
          // Before the first read of this round's event only the newest may lag.
          if (ref == refs.back()) return false;
          wrong = ref + " read as " + (r->has_value() ? **r : std::string("no customer"));
          return true;
        }
      }
      return true;
    });
    ASSERT_TRUE(back) << "round " << round << ": links not readable again";
    ASSERT_EQ(wrong, "") << "round " << round;
    if (round == 0) {
      projection::RedisConnection c(projection::parse_redis_url(redis_.url()).value(), {});
      ASSERT_TRUE(c.command({"FLUSHALL"}).ok());
    } else if (round == 1) {
      redis_.stop(9);
      redis_.start();
    }
  }
  // Counted just after the checkpoint is back.
  EXPECT_TRUE(testenv::eventually([&] {
    return billing_->projector().rebuilds(projection::RebuildReason::checkpoint_missing) >= 2;
  }));
  auto state = reader.customer(customer(0));
  ASSERT_TRUE(state.ok()) << state.error().message;
  ASSERT_TRUE(state->has_value());
  ASSERT_EQ((*state)->subscriptions_size(), 1);
  EXPECT_EQ((*state)->subscriptions(0).tenant_ref(), refs[0]);
}
