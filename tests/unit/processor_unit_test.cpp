// billing's processor on an in-memory log: a Stripe event recorded once,
// a lost race retried with a backoff through the injected sleeper, the bound.
#include <gtest/gtest.h>

#include "fakes.hpp"
#include "processor.hpp"

namespace {

using namespace supaplane;
using namespace supaplane::billing;
using supaplane::testing::FakeEventLog;
using supaplane::testing::RecordingSleeper;

class FixedClock final : public Clock {
 public:
  std::int64_t now_unix_ms() const override { return 1'800'000'000'000; }
};

StripeEvent checkout(const std::string& id) {
  StripeEvent ev;
  ev.id = id;
  ev.type = "checkout.session.completed";
  ev.customer = "cus_1";
  v1::BillingEvent b;
  b.set_stripe_event_id(id);
  b.mutable_checkout_completed()->set_session_id("cs_1");
  b.mutable_checkout_completed()->set_subscription_id("sub_1");
  b.mutable_checkout_completed()->set_plan(v1::PLAN_STARTER);
  ev.billing = b;
  return ev;
}

std::size_t on_billing_subject(FakeEventLog& log) {
  return log.read_subject(std::string(kBillingPrefix) + "cus_1").value().size();
}

TEST(ProcessorUnit, StripeEventIsRecordedOnceAndARedeliveryIsADuplicate) {
  FakeEventLog log;
  FixedClock clock;
  RecordingSleeper sleeper;
  Processor p(log, clock, GracePolicy{}, &sleeper);
  auto first = p.handle(checkout("evt_1"));
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_EQ(*first, Outcome::recorded);
  auto again = p.handle(checkout("evt_1"));
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(*again, Outcome::duplicate);
  EXPECT_EQ(on_billing_subject(log), 1u);
  EXPECT_EQ(p.counters().recorded.load(), 1u);
  EXPECT_EQ(p.counters().duplicates.load(), 1u);
}

TEST(ProcessorUnit, LostRaceIsReadAgainAndRecordedAfterTheOther) {
  FakeEventLog log;
  FixedClock clock;
  RecordingSleeper sleeper;
  Processor p(log, clock, GracePolicy{}, &sleeper);
  // Another delivery for the same customer lands first.
  bool raced = false;
  log.before_append = [&](const event_store::OutgoingEvent& ev) {
    if (raced || ev.msg_id != "stripe:evt_2") return;
    raced = true;
    ASSERT_TRUE(log.append(make_billing_event("cus_1", *checkout("evt_1").billing,
                                              event_store::Expected::any(), 1))
                    .ok());
  };
  auto r = p.handle(checkout("evt_2"));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, Outcome::recorded);
  EXPECT_EQ(p.counters().conflicts.load(), 1u);
  EXPECT_EQ(sleeper.waits, (std::vector<std::int64_t>{5}));
  EXPECT_EQ(on_billing_subject(log), 2u);
}

TEST(ProcessorUnit, CustomerThatKeepsChangingAnswersUnavailable) {
  FakeEventLog log;
  FixedClock clock;
  RecordingSleeper sleeper;
  Processor p(log, clock, GracePolicy{}, &sleeper);
  int n = 0;
  bool inside = false;
  log.before_append = [&](const event_store::OutgoingEvent& ev) {
    if (inside || ev.msg_id != "stripe:evt_9") return;
    inside = true;
    ASSERT_TRUE(
        log.append(make_billing_event("cus_1", *checkout("evt_r" + std::to_string(++n)).billing,
                                      event_store::Expected::any(), 1))
            .ok());
    inside = false;
  };
  auto r = p.handle(checkout("evt_9"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::unavailable);  // the webhook answers 503: Stripe retries
  EXPECT_EQ(p.counters().conflicts.load(), 8u);
  EXPECT_EQ(sleeper.waits.size(), 7u);
  EXPECT_EQ(p.counters().recorded.load(), 0u);
}

}  // namespace
