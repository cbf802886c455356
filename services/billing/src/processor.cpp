#include "processor.hpp"

#include "supaplane/core/ids.hpp"
#include "supaplane/event_store/command.hpp"
#include "supaplane/events/history.hpp"
#include "supaplane/events/tenant_events.hpp"
#include "supaplane/logging/logging.hpp"

namespace supaplane::billing {

namespace {
std::shared_ptr<spdlog::logger> log() {
  static auto l = logging::get("billing");
  return l;
}
constexpr int kMaxRounds = 8;

v1::Actor stripe_actor(const std::string& event_id) {
  v1::Actor a;
  a.set_kind(v1::ACTOR_KIND_STRIPE);
  a.set_id(event_id);
  return a;
}

// Whether the tenant's current suspension was appended by billing: the last
// Suspended event on its subject has a STRIPE actor.
bool suspended_by_billing(const std::vector<event_store::StoredMessage>& msgs) {
  for (auto it = msgs.rbegin(); it != msgs.rend(); ++it) {
    v1::EventEnvelope env;
    if (!env.ParseFromString(it->data) || !env.has_tenant()) continue;
    if (env.tenant().has_suspended()) return env.actor().kind() == v1::ACTOR_KIND_STRIPE;
  }
  return false;
}

const char* billing_event_type(const v1::BillingEvent& e) {
  switch (e.kind_case()) {
    case v1::BillingEvent::kCheckoutCompleted:
      return "billing.checkout_completed";
    case v1::BillingEvent::kSubscriptionChanged:
      return "billing.subscription_changed";
    case v1::BillingEvent::kInvoicePaymentFailed:
      return "billing.invoice_payment_failed";
    case v1::BillingEvent::kInvoicePaid:
      return "billing.invoice_paid";
    case v1::BillingEvent::kInvoiceVoided:
      return "billing.invoice_voided";
    case v1::BillingEvent::KIND_NOT_SET:
      break;
  }
  return "billing.unknown";
}
}  // namespace

event_store::OutgoingEvent make_billing_event(const std::string& customer,
                                              const v1::BillingEvent& ev,
                                              event_store::Expected expected,
                                              std::int64_t now_unix_ms) {
  v1::EventEnvelope env;
  env.set_event_id(ids::random_hex_id());
  env.set_aggregate_id(customer);
  env.set_occurred_at_unix_ms(now_unix_ms);
  *env.mutable_actor() = stripe_actor(ev.stripe_event_id());
  env.set_correlation_id(ev.stripe_event_id());
  env.set_causation_id(ev.stripe_event_id());
  *env.mutable_billing() = ev;
  event_store::OutgoingEvent out;
  out.subject = kBillingPrefix + customer;
  out.msg_id = "stripe:" + ev.stripe_event_id();
  out.expected = expected;
  out.event_type = billing_event_type(ev);
  out.schema = "supaplane.v1.BillingEvent";
  out.correlation_id = ev.stripe_event_id();
  out.body = env.SerializeAsString();
  return out;
}

v1::BillingState fold_billing_history(const std::string& customer,
                                      const std::vector<event_store::StoredMessage>& msgs,
                                      const std::string& seen_event_id, bool* seen) {
  v1::BillingState s;
  s.set_customer_id(customer);
  for (const auto& m : msgs) {
    v1::EventEnvelope env;
    if (env.ParseFromString(m.data) && env.has_billing()) {
      if (seen && !seen_event_id.empty() && env.billing().stripe_event_id() == seen_event_id)
        *seen = true;
      s = fold(std::move(s), env.billing(), m.sequence);
    } else {
      s.set_version(m.sequence);
    }
  }
  return s;
}

Processor::Processor(event_store::EventLog& store, const Clock& clock, GracePolicy policy,
                     event_store::Sleeper* sleeper)
    : store_(store),
      clock_(clock),
      policy_(policy),
      sleeper_(sleeper ? *sleeper : event_store::ThreadSleeper::instance()) {}

event_store::RetryPolicy Processor::retry_policy(std::string exhausted) {
  event_store::RetryPolicy p;
  p.max_attempts = kMaxRounds;
  p.backoff_base_ms = 5;
  p.backoff_max_ms = 100;
  p.exhausted = std::move(exhausted);
  return p;
}

Result<Outcome> Processor::handle(const StripeEvent& ev) {
  if (!ev.billing) {
    counters_.ignored++;
    return Outcome::ignored;
  }
  const std::string subject = kBillingPrefix + ev.customer;
  auto read = [&]() -> Result<std::vector<event_store::StoredMessage>> {
    return store_.read_subject(subject);
  };
  // Record the Stripe event on the customer's billing subject, once.
  struct Folded {
    v1::BillingState state;
    bool seen{false};  ///< this Stripe event is on the subject already
  };
  bool duplicate = false;
  event_store::Command<Folded, v1::BillingState> record;
  record.load = [&](int) -> Result<Folded> {
    auto msgs = read();
    if (!msgs) return msgs.error();
    Folded f;
    f.state = fold_billing_history(ev.customer, *msgs, ev.id, &f.seen);
    return f;
  };
  record.decide = [&](Folded& f, int) -> Result<event_store::Decision<v1::BillingState>> {
    using D = event_store::Decision<v1::BillingState>;
    if (f.seen) {
      // Already recorded (a Stripe retry, possibly long after the dedupe
      // window): nothing new to append, but finish the tenant side below in
      // case the first delivery stopped half way.
      duplicate = true;
      return D::finish(f.state);
    }
    return D::write(make_billing_event(ev.customer, *ev.billing,
                                       event_store::Expected::at(f.state.version()),
                                       clock_.now_unix_ms()));
  };
  record.appended = [&](Folded& f, const event_store::AppendResult& a) -> Result<v1::BillingState> {
    if (a.duplicate) {
      // Recorded meanwhile by a concurrent delivery: its state, from the log.
      duplicate = true;
      auto msgs = read();
      if (!msgs) return msgs.error();
      return fold_billing_history(ev.customer, *msgs);
    }
    counters_.recorded++;
    log()->info("recorded stripe event {} ({}) customer={} seq={}", ev.id, ev.type, ev.customer,
                a.sequence.value());
    return fold(std::move(f.state), *ev.billing, a.sequence.value());
  };
  record.on_conflict = [this] { counters_.conflicts++; };
  auto state = event_store::run_command(
      store_, sleeper_, retry_policy("billing record of " + ev.customer + " keeps changing"),
      record);
  if (!state) return state.error();
  if (duplicate) counters_.duplicates++;
  // Until a round changes nothing: a concurrent delivery for the same
  // customer (say invoice.paid racing the payment_failed that reached grace)
  // may record its event between our read of the billing state and our
  // tenant append, and then find nothing to do; re-reading after every
  // append makes the last writer converge the tenant to the newest state.
  for (int round = 0; round < kMaxRounds; ++round) {
    bool acted = false;
    for (const auto& target : tenant_targets(*state, policy_))
      if (auto st = reconcile_tenant(target, ev.id, &acted); !st) return st.error();
    if (!acted) return duplicate ? Outcome::duplicate : Outcome::recorded;
    auto msgs = read();
    if (!msgs) return msgs.error();
    *state = fold_billing_history(ev.customer, *msgs, "", nullptr);
  }
  return make_error(errc::unavailable, "billing of " + ev.customer + " keeps changing");
}

Status Processor::reconcile_tenant(const TenantTarget& target, const std::string& stripe_event_id,
                                   bool* acted) {
  const std::string subject = "platform.tenant." + target.ref;
  struct Folded {
    v1::TenantState tenant;
    bool suspended_by_billing{false};
  };
  std::string command;  // what was appended, for the log line
  std::string reason;
  event_store::Command<Folded, bool> cmd;
  cmd.load = [&](int) -> Result<Folded> {
    auto msgs = store_.read_subject(subject);
    if (!msgs) return msgs.error();
    return Folded{events::fold_history(target.ref, *msgs), suspended_by_billing(*msgs)};
  };
  cmd.decide = [&](Folded& f, int) -> Result<event_store::Decision<bool>> {
    using D = event_store::Decision<bool>;
    const v1::TenantState& tenant = f.tenant;
    if (!domain::exists(tenant)) {
      // Checkout metadata named a tenant that does not exist: recorded on the
      // billing subject, nothing to change (a retry by Stripe cannot help).
      counters_.unknown_tenants++;
      log()->warn("ref={} linked by stripe event {} does not exist", target.ref, stripe_event_id);
      return D::finish(false);
    }
    const auto next = next_command(tenant, target, f.suspended_by_billing);
    if (!next) return D::finish(false);
    auto events = domain::decide(tenant, *next);
    if (!events) {
      log()->warn("ref={} {} from stripe event {} refused: {}", target.ref,
                  domain::to_string(next->kind), stripe_event_id, events.error().message);
      return D::finish(false);
    }
    if (events->empty()) return D::finish(false);
    command = domain::to_string(next->kind);
    reason = next->reason;
    // Deterministic per decision: a redelivery deciding the same thing on the
    // same version is deduplicated; a later decision gets a new id.
    const std::string msg_id = "stripe:" + stripe_event_id + ":" + target.ref + ":" +
                               std::to_string(tenant.version()) + ":" + command;
    return D::write(
        events::make_tenant_event(target.ref, events->front(), stripe_actor(stripe_event_id),
                                  msg_id, event_store::Expected::at(tenant.version()),
                                  stripe_event_id, stripe_event_id, clock_.now_unix_ms()));
  };
  cmd.appended = [&](Folded&, const event_store::AppendResult& a) -> Result<bool> {
    counters_.tenant_commands++;
    log()->info("ref={} {} ({}) from stripe event {} seq={}", target.ref, command, reason,
                stripe_event_id, a.sequence.value());
    return true;
  };
  cmd.on_conflict = [this] { counters_.conflicts++; };
  const auto policy = retry_policy("tenant " + target.ref + " keeps changing; Stripe will retry");
  // Until the tenant needs nothing more from billing (one command per state).
  for (int round = 0; round < kMaxRounds; ++round) {
    auto appended = event_store::run_command(store_, sleeper_, policy, cmd);
    if (!appended) return appended.error();
    if (!*appended) return Status::Ok();
    *acted = true;
  }
  return make_error(errc::unavailable, policy.exhausted);
}

}  // namespace supaplane::billing
