// supaplane-billing's pure parts: Stripe signatures, event parsing, the
// billing fold (out-of-order safe) and the tenant commands it derives.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "billing_domain.hpp"
#include "signature.hpp"
#include "stripe_event.hpp"

namespace {

using namespace supaplane;
using namespace supaplane::billing;

constexpr std::int64_t kNow = 1'800'000'000;
const std::string kSecret = "whsec_test_secret_0123456789";
const std::string kBody = R"({"id":"evt_1","object":"event"})";

Result<Unit> check(const std::string& header, const std::string& body = kBody,
                   std::vector<std::string> secrets = {kSecret}) {
  return SignatureVerifier(std::move(secrets), 300).verify(header, body, kNow);
}

SignatureError why(const Result<Unit>& r) { return SignatureVerifier::reason(r.error()); }

TEST(StripeSignature, ValidSignatureIsAccepted) {
  EXPECT_TRUE(check(SignatureVerifier::sign(kSecret, kNow, kBody)).ok());
}

TEST(StripeSignature, OneValidAmongTwoV1IsAccepted) {
  const std::string good = SignatureVerifier::sign(kSecret, kNow, kBody);
  const std::string bad = SignatureVerifier::sign("whsec_other", kNow, kBody);
  const std::string good_v1 = good.substr(good.find("v1="));
  const std::string bad_v1 = bad.substr(bad.find("v1="));
  EXPECT_TRUE(check("t=" + std::to_string(kNow) + "," + bad_v1 + "," + good_v1).ok());
  EXPECT_TRUE(check("t=" + std::to_string(kNow) + "," + good_v1 + "," + bad_v1).ok());
}

TEST(StripeSignature, WrongSecretIsRejected) {
  auto r = check(SignatureVerifier::sign("whsec_wrong", kNow, kBody));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(why(r), SignatureError::mismatch);
}

TEST(StripeSignature, TamperedBodyIsRejected) {
  auto r =
      check(SignatureVerifier::sign(kSecret, kNow, kBody), R"({"id":"evt_2","object":"event"})");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(why(r), SignatureError::mismatch);
}

TEST(StripeSignature, StaleTimestampIsRejected) {
  auto r = check(SignatureVerifier::sign(kSecret, kNow - 301, kBody));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(why(r), SignatureError::stale);
  EXPECT_TRUE(check(SignatureVerifier::sign(kSecret, kNow - 300, kBody)).ok());
}

TEST(StripeSignature, FutureTimestampIsRejected) {
  auto r = check(SignatureVerifier::sign(kSecret, kNow + 301, kBody));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(why(r), SignatureError::future);
}

TEST(StripeSignature, TimestampIsCoveredByTheSignature) {
  // A valid v1 for one t does not verify under another t.
  const std::string sig = SignatureVerifier::sign(kSecret, kNow - 1000, kBody);
  const std::string v1 = sig.substr(sig.find("v1="));
  auto r = check("t=" + std::to_string(kNow) + "," + v1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(why(r), SignatureError::mismatch);
}

TEST(StripeSignature, MissingHeaderIsRejected) {
  auto r = check("");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(why(r), SignatureError::missing);
}

TEST(StripeSignature, GarbageHeadersAreRejected) {
  const std::string v1 = SignatureVerifier::sign(kSecret, kNow, kBody);
  const std::string mac = v1.substr(v1.find("v1=") + 3);
  for (const std::string& h :
       {std::string("garbage"), std::string("t=abc,v1=") + mac, std::string("v1=") + mac,
        std::string("t=,v1=") + mac, std::string("t=-5,v1=") + mac,
        "t=" + std::to_string(kNow) + ",t=" + std::to_string(kNow) + ",v1=" + mac,
        "t=" + std::to_string(kNow) + ",v1=zz" + mac.substr(2),
        "t=" + std::to_string(kNow) + ",v1=" + mac.substr(0, 63), std::string(",,,"),
        std::string("=x")}) {
    EXPECT_FALSE(check(h).ok()) << h;
  }
}

TEST(StripeSignature, V0IsIgnored) {
  const std::string v1 = SignatureVerifier::sign(kSecret, kNow, kBody);
  const std::string mac = v1.substr(v1.find("v1=") + 3);
  auto only_v0 = check("t=" + std::to_string(kNow) + ",v0=" + mac);
  ASSERT_FALSE(only_v0.ok());
  EXPECT_EQ(why(only_v0), SignatureError::no_v1);
  EXPECT_TRUE(check("t=" + std::to_string(kNow) + ",v0=deadbeef,v1=" + mac).ok());
}

TEST(StripeSignature, EitherRollingSecretIsAccepted) {
  const std::vector<std::string> both{"whsec_new", kSecret};
  EXPECT_TRUE(check(SignatureVerifier::sign(kSecret, kNow, kBody), kBody, both).ok());
  EXPECT_TRUE(check(SignatureVerifier::sign("whsec_new", kNow, kBody), kBody, both).ok());
  EXPECT_EQ(split_list(" a, b ,,c"), (std::vector<std::string>{"a", "b", "c"}));
}

TEST(StripeSignature, NoSecretRejectsEverything) {
  EXPECT_FALSE(check(SignatureVerifier::sign("", kNow, kBody), kBody, {}).ok());
}

// ---- parsing

const PriceMap kPrices{{"price_starter", v1::PLAN_STARTER}, {"price_pro", v1::PLAN_PRO}};

TEST(StripeEventParse, CheckoutCompletedCarriesTenantAndPlan) {
  auto ev =
      parse_stripe_event(R"({"id":"evt_c","object":"event","type":"checkout.session.completed",
    "created":100,"data":{"object":{"id":"cs_1","object":"checkout.session","customer":"cus_A",
    "subscription":"sub_1","client_reference_id":"abcdefghijklmnopqrst",
    "metadata":{"tenant_ref":"abcdefghijklmnopqrst","plan":"pro"}}}})",
                         kPrices);
  ASSERT_TRUE(ev.ok()) << ev.error().message;
  EXPECT_EQ(ev->customer, "cus_A");
  ASSERT_TRUE(ev->billing);
  const auto& c = ev->billing->checkout_completed();
  EXPECT_EQ(c.tenant_ref(), "abcdefghijklmnopqrst");
  EXPECT_EQ(c.plan(), v1::PLAN_PRO);
  EXPECT_EQ(c.subscription_id(), "sub_1");
  EXPECT_EQ(ev->billing->stripe_created(), 100);
}

TEST(StripeEventParse, SubscriptionPlanComesFromItsPrice) {
  auto ev =
      parse_stripe_event(R"({"id":"evt_s","object":"event","type":"customer.subscription.updated",
    "created":5,"data":{"object":{"id":"sub_1","customer":{"id":"cus_A"},"status":"active",
    "items":{"data":[{"price":{"id":"price_starter"}}]}}}})",
                         kPrices);
  ASSERT_TRUE(ev.ok()) << ev.error().message;
  EXPECT_EQ(ev->customer, "cus_A");
  EXPECT_EQ(ev->billing->subscription_changed().plan(), v1::PLAN_STARTER);
  EXPECT_EQ(ev->billing->subscription_changed().status(), "active");
}

TEST(StripeEventParse, InvoiceSubscriptionUnderParentIsFound) {
  auto ev = parse_stripe_event(R"({"id":"evt_i","object":"event","type":"invoice.payment_failed",
    "created":5,"data":{"object":{"id":"in_1","customer":"cus_A","attempt_count":2,
    "parent":{"subscription_details":{"subscription":"sub_9"}}}}})",
                               kPrices);
  ASSERT_TRUE(ev.ok()) << ev.error().message;
  EXPECT_EQ(ev->billing->invoice_payment_failed().subscription_id(), "sub_9");
  EXPECT_EQ(ev->billing->invoice_payment_failed().attempt_count(), 2);
}

TEST(StripeEventParse, VoidedInvoiceIsRecordedAndUncollectibleIsNot) {
  auto ev = parse_stripe_event(R"({"id":"evt_v","object":"event","type":"invoice.voided",
    "created":5,"data":{"object":{"id":"in_1","customer":"cus_A","subscription":"sub_9"}}})",
                               kPrices);
  ASSERT_TRUE(ev.ok()) << ev.error().message;
  ASSERT_TRUE(ev->billing.has_value());
  EXPECT_EQ(ev->billing->invoice_voided().invoice_id(), "in_1");
  EXPECT_EQ(ev->billing->invoice_voided().subscription_id(), "sub_9");
  // Written off is still unpaid: not an event billing acts on.
  ev = parse_stripe_event(R"({"id":"evt_w","object":"event","type":"invoice.marked_uncollectible",
    "created":5,"data":{"object":{"id":"in_1","customer":"cus_A","subscription":"sub_9"}}})",
                          kPrices);
  ASSERT_TRUE(ev.ok()) << ev.error().message;
  EXPECT_FALSE(ev->billing.has_value());
  // A voided invoice with a malformed id is refused like the others.
  ev = parse_stripe_event(R"({"id":"evt_v","object":"event","type":"invoice.voided",
    "created":5,"data":{"object":{"id":"in 1","customer":"cus_A"}}})",
                          kPrices);
  EXPECT_FALSE(ev.ok());
}

TEST(StripeEventParse, UnknownTypeIsValidButIgnored) {
  auto ev = parse_stripe_event(R"({"id":"evt_u","object":"event","type":"charge.refunded",
    "created":5,"data":{"object":{"id":"ch_1"}}})",
                               kPrices);
  ASSERT_TRUE(ev.ok());
  EXPECT_FALSE(ev->billing.has_value());
}

TEST(StripeEventParse, MalformedEventsAreRefused) {
  for (
      const char* body :
      {"not json", "[]", R"({"id":"evt_1","object":"charge"})",
       R"({"id":"evt 1","object":"event","type":"invoice.paid","created":1,"data":{"object":{}}})",
       R"({"id":"evt_1","object":"event","type":"invoice.paid","data":{"object":{"id":"in_1","customer":"cus_A"}}})"}) {
    EXPECT_FALSE(parse_stripe_event(body, kPrices).ok()) << body;
  }
}

// A signed event without a usable customer (a guest checkout, or an id that
// could not be a subject token): accepted and ignored, never appended under
// a bad subject, and not refused (Stripe would retry it for days).
TEST(StripeEventParse, EventsWithoutAUsableCustomerAreIgnored) {
  for (
      const char* body : {
          R"({"id":"evt_1","object":"event","type":"invoice.paid","created":1,"data":{"object":{"id":"in_1"}}})",
          R"({"id":"evt_1","object":"event","type":"invoice.paid","created":1,"data":{"object":{"id":"in_1","customer":"cus.A"}}})",
          R"({"id":"evt_1","object":"event","type":"invoice.paid","created":1,"data":{"object":{"id":"in_1","customer":"cus_>"}}})",
      }) {
    auto ev = parse_stripe_event(body, kPrices);
    ASSERT_TRUE(ev.ok()) << body;
    EXPECT_FALSE(ev->billing.has_value()) << body;
    EXPECT_TRUE(ev->customer.empty()) << body;
  }
}

// ---- fold and targets

const std::string kRef = "abcdefghijklmnopqrst";

v1::BillingEvent sub_event(const std::string& id, std::int64_t created, v1::Plan plan,
                           const std::string& status = "active", bool deleted = false) {
  v1::BillingEvent e;
  e.set_stripe_event_id(id);
  e.set_stripe_created(created);
  auto* s = e.mutable_subscription_changed();
  s->set_subscription_id("sub_1");
  s->set_status(status);
  s->set_plan(plan);
  s->set_deleted(deleted);
  return e;
}

v1::BillingEvent checkout(std::int64_t created, v1::Plan plan) {
  v1::BillingEvent e;
  e.set_stripe_event_id("evt_checkout");
  e.set_stripe_created(created);
  auto* c = e.mutable_checkout_completed();
  c->set_session_id("cs_1");
  c->set_subscription_id("sub_1");
  c->set_tenant_ref(kRef);
  c->set_plan(plan);
  return e;
}

v1::BillingEvent invoice(const std::string& invoice_id, bool paid, int attempts,
                         std::int64_t created) {
  v1::BillingEvent e;
  e.set_stripe_event_id("evt_" + invoice_id + (paid ? "_paid" : "_failed") +
                        std::to_string(attempts));
  e.set_stripe_created(created);
  if (paid) {
    e.mutable_invoice_paid()->set_invoice_id(invoice_id);
    e.mutable_invoice_paid()->set_subscription_id("sub_1");
  } else {
    e.mutable_invoice_payment_failed()->set_invoice_id(invoice_id);
    e.mutable_invoice_payment_failed()->set_subscription_id("sub_1");
    e.mutable_invoice_payment_failed()->set_attempt_count(attempts);
  }
  return e;
}

TenantTarget target_of(const std::vector<v1::BillingEvent>& events, GracePolicy policy = {}) {
  v1::BillingState s;
  std::uint64_t seq = 0;
  for (const auto& e : events) s = fold(std::move(s), e, ++seq);
  auto targets = tenant_targets(s, policy);
  EXPECT_EQ(targets.size(), 1u);
  return targets.empty() ? TenantTarget{} : targets.front();
}

TEST(BillingFold, EveryDeliveryOrderEndsOnTheNewestPlan) {
  std::vector<v1::BillingEvent> events{
      checkout(10, v1::PLAN_STARTER), sub_event("evt_1", 10, v1::PLAN_STARTER),
      sub_event("evt_2", 20, v1::PLAN_PRO), sub_event("evt_3", 30, v1::PLAN_STARTER),
      sub_event("evt_4", 40, v1::PLAN_PRO)};
  std::vector<int> order(events.size());
  std::iota(order.begin(), order.end(), 0);
  int permutations = 0;
  do {
    std::vector<v1::BillingEvent> shuffled;
    for (int i : order) shuffled.push_back(events[i]);
    const auto t = target_of(shuffled);
    EXPECT_EQ(t.ref, kRef);
    EXPECT_EQ(t.plan, v1::PLAN_PRO);
    EXPECT_FALSE(t.suspend);
    ++permutations;
  } while (std::next_permutation(order.begin(), order.end()));
  EXPECT_EQ(permutations, 120);
}

TEST(BillingFold, CheckoutPlanHoldsUntilTheSubscriptionSpeaks) {
  EXPECT_EQ(target_of({checkout(10, v1::PLAN_STARTER)}).plan, v1::PLAN_STARTER);
  // The subscription (newer) says PRO; the checkout arriving late does not undo it.
  EXPECT_EQ(target_of({sub_event("evt_1", 12, v1::PLAN_PRO), checkout(10, v1::PLAN_STARTER)}).plan,
            v1::PLAN_PRO);
}

TEST(BillingFold, PaymentFailureSuspendsOnlyPastGrace) {
  const GracePolicy grace{2};
  auto t = target_of({checkout(10, v1::PLAN_PRO), invoice("in_1", false, 1, 20)}, grace);
  EXPECT_FALSE(t.suspend);
  t = target_of(
      {checkout(10, v1::PLAN_PRO), invoice("in_1", false, 1, 20), invoice("in_1", false, 2, 30)},
      grace);
  EXPECT_TRUE(t.suspend);
  EXPECT_EQ(t.reason, kReasonOverdue);
  EXPECT_EQ(t.plan, v1::PLAN_PRO);
}

v1::BillingEvent voided(const std::string& invoice_id, std::int64_t created) {
  v1::BillingEvent e;
  e.set_stripe_event_id("evt_" + invoice_id + "_voided");
  e.set_stripe_created(created);
  e.mutable_invoice_voided()->set_invoice_id(invoice_id);
  e.mutable_invoice_voided()->set_subscription_id("sub_1");
  return e;
}

TEST(BillingFold, VoidingTheOverdueInvoiceLiftsAndALateFailureOfItIsIgnored) {
  const GracePolicy grace{2};
  auto t = target_of({checkout(10, v1::PLAN_PRO), invoice("in_1", false, 2, 20)}, grace);
  EXPECT_TRUE(t.suspend);
  t = target_of({checkout(10, v1::PLAN_PRO), invoice("in_1", false, 2, 20), voided("in_1", 30)},
                grace);
  EXPECT_FALSE(t.suspend);
  EXPECT_EQ(t.plan, v1::PLAN_PRO);
  // Delivered in the other order: the failure of a voided invoice is stale.
  t = target_of({checkout(10, v1::PLAN_PRO), voided("in_1", 30), invoice("in_1", false, 2, 20)},
                grace);
  EXPECT_FALSE(t.suspend);
  // Voiding one invoice leaves another overdue one in force.
  t = target_of({checkout(10, v1::PLAN_PRO), invoice("in_1", false, 2, 20),
                 invoice("in_2", false, 2, 25), voided("in_1", 30)},
                grace);
  EXPECT_TRUE(t.suspend);
  EXPECT_EQ(t.reason, kReasonOverdue);
}

TEST(BillingFold, PaidInvoiceLiftsAndALateFailureOfItIsIgnored) {
  const GracePolicy grace{1};
  auto t = target_of(
      {checkout(10, v1::PLAN_PRO), invoice("in_1", false, 1, 20), invoice("in_1", true, 0, 30)},
      grace);
  EXPECT_FALSE(t.suspend);
  // The failure delivered after the payment: still not suspended.
  t = target_of(
      {checkout(10, v1::PLAN_PRO), invoice("in_1", true, 0, 30), invoice("in_1", false, 1, 20)},
      grace);
  EXPECT_FALSE(t.suspend);
}

TEST(BillingFold, UnpaidSubscriptionIsOverdue) {
  auto t = target_of({checkout(10, v1::PLAN_PRO), sub_event("evt_u", 20, v1::PLAN_PRO, "unpaid")});
  EXPECT_TRUE(t.suspend);
  t = target_of({checkout(10, v1::PLAN_PRO), sub_event("evt_u", 20, v1::PLAN_PRO, "unpaid"),
                 sub_event("evt_a", 30, v1::PLAN_PRO, "active")});
  EXPECT_FALSE(t.suspend);
}

TEST(BillingFold, DeletionIsFinalAndMovesToFree) {
  for (bool late_update_first : {false, true}) {
    std::vector<v1::BillingEvent> evs{checkout(10, v1::PLAN_PRO)};
    auto del = sub_event("evt_d", 30, v1::PLAN_PRO, "canceled", true);
    auto upd = sub_event("evt_o", 20, v1::PLAN_PRO, "active");
    if (late_update_first) {
      evs.push_back(upd);
      evs.push_back(del);
    } else {
      evs.push_back(del);
      evs.push_back(upd);
    }
    const auto t = target_of(evs);
    EXPECT_EQ(t.plan, v1::PLAN_FREE);
    EXPECT_TRUE(t.suspend);
    EXPECT_EQ(t.reason, kReasonCanceled);
  }
}

// ---- commands

v1::TenantState tenant(v1::Plan plan, bool suspended) {
  v1::TenantState s;
  s.set_ref(kRef);
  s.set_created_sequence(1);
  s.set_version(5);
  s.set_plan(plan);
  s.set_desired_state(v1::DESIRED_STATE_RUNNING);
  s.set_suspended(suspended);
  return s;
}

TEST(BillingCommands, PlanFirstThenSuspension) {
  TenantTarget t{kRef, v1::PLAN_FREE, true, kReasonCanceled};
  auto c = next_command(tenant(v1::PLAN_PRO, false), t, false);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->kind, domain::CommandKind::change_plan);
  EXPECT_EQ(c->plan, v1::PLAN_FREE);
  c = next_command(tenant(v1::PLAN_FREE, false), t, false);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->kind, domain::CommandKind::suspend);
  EXPECT_EQ(c->reason, kReasonCanceled);
  EXPECT_FALSE(next_command(tenant(v1::PLAN_FREE, true), t, true));
}

TEST(BillingCommands, OnlyBillingsOwnSuspensionIsLifted) {
  TenantTarget ok{kRef, v1::PLAN_PRO, false, ""};
  auto c = next_command(tenant(v1::PLAN_PRO, true), ok, /*suspended_by_billing=*/true);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->kind, domain::CommandKind::unsuspend);
  EXPECT_FALSE(next_command(tenant(v1::PLAN_PRO, true), ok, /*suspended_by_billing=*/false));
}

TEST(BillingCommands, DeletedOrMissingTenantsAreLeftAlone) {
  TenantTarget t{kRef, v1::PLAN_PRO, true, kReasonOverdue};
  auto deleting = tenant(v1::PLAN_FREE, false);
  deleting.set_desired_state(v1::DESIRED_STATE_DELETED);
  EXPECT_FALSE(next_command(deleting, t, false));
  EXPECT_FALSE(next_command(v1::TenantState{}, t, false));
}

}  // namespace

namespace {

v1::BillingEvent on_sub(v1::BillingEvent e, const std::string& sub_id) {
  if (e.has_subscription_changed()) e.mutable_subscription_changed()->set_subscription_id(sub_id);
  if (e.has_checkout_completed()) e.mutable_checkout_completed()->set_subscription_id(sub_id);
  e.set_stripe_event_id(e.stripe_event_id() + "_" + sub_id);
  return e;
}

// An upgrade bought as a second subscription: renewing or cancelling the old,
// cheaper one never overrides the one the customer still pays for.
TEST(BillingFold, TheSubscriptionStillPaidForDecidesNotTheNewestEvent) {
  const auto starter = [](std::int64_t t) {
    return on_sub(sub_event("evt_s" + std::to_string(t), t, v1::PLAN_STARTER), "sub_old");
  };
  std::vector<v1::BillingEvent> evs{on_sub(checkout(10, v1::PLAN_STARTER), "sub_old"), starter(10),
                                    on_sub(checkout(20, v1::PLAN_PRO), "sub_new"),
                                    on_sub(sub_event("evt_p", 20, v1::PLAN_PRO), "sub_new")};
  EXPECT_EQ(target_of(evs).plan, v1::PLAN_PRO);
  evs.push_back(starter(30));  // the old one renews, later than the upgrade
  EXPECT_EQ(target_of(evs).plan, v1::PLAN_PRO);
  evs.push_back(on_sub(sub_event("evt_cancel", 40, v1::PLAN_STARTER, "canceled", true), "sub_old"));
  const auto t = target_of(evs);  // the old one is cancelled, the newest event
  EXPECT_EQ(t.plan, v1::PLAN_PRO);
  EXPECT_FALSE(t.suspend) << t.reason;
}

}  // namespace
