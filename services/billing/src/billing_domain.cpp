#include "billing_domain.hpp"

#include <algorithm>
#include <map>
#include <tuple>

namespace supaplane::billing {

namespace {
constexpr int kSettledInvoicesKept = 32;

v1::BillingSubscription& subscription(v1::BillingState& s, const std::string& id) {
  for (auto& sub : *s.mutable_subscriptions())
    if (sub.id() == id) return sub;
  auto* sub = s.add_subscriptions();
  sub->set_id(id);
  return *sub;
}

bool contains(const google::protobuf::RepeatedPtrField<std::string>& list, const std::string& v) {
  return std::find(list.begin(), list.end(), v) != list.end();
}

void remove_failed(v1::BillingSubscription& sub, const std::string& invoice) {
  for (int i = 0; i < sub.failed_invoice_ids_size(); ++i) {
    if (sub.failed_invoice_ids(i) != invoice) continue;
    sub.mutable_failed_invoice_ids()->DeleteSubrange(i, 1);
    if (i < sub.failed_attempts_size())
      sub.mutable_failed_attempts()->erase(sub.mutable_failed_attempts()->begin() + i);
    return;
  }
}

// A paid or voided invoice: nothing is owed on it, its failures stop counting,
// and a failure of it delivered late is ignored.
void settle(v1::BillingState& s, const std::string& subscription_id, const std::string& invoice) {
  if (subscription_id.empty()) return;
  auto& sub = subscription(s, subscription_id);
  remove_failed(sub, invoice);
  if (contains(sub.settled_invoice_ids(), invoice)) return;
  sub.add_settled_invoice_ids(invoice);
  if (sub.settled_invoice_ids_size() > kSettledInvoicesKept)
    sub.mutable_settled_invoice_ids()->DeleteSubrange(0, 1);
}

// Stripe's terminal states of a subscription that no longer pays for a plan.
bool ended(const v1::BillingSubscription& sub) {
  return sub.deleted() || sub.status() == "canceled" || sub.status() == "incomplete_expired";
}

bool overdue(const v1::BillingSubscription& sub, const GracePolicy& policy) {
  if (sub.status() == "unpaid") return true;  // Stripe gave up retrying
  for (int a : sub.failed_attempts())
    if (a >= policy.max_failed_attempts) return true;
  return false;
}
}  // namespace

v1::BillingState fold(v1::BillingState s, const v1::BillingEvent& e, std::uint64_t sequence) {
  s.set_version(std::max<std::uint64_t>(s.version(), sequence));
  const std::int64_t created = e.stripe_created();
  switch (e.kind_case()) {
    case v1::BillingEvent::kCheckoutCompleted: {
      const auto& c = e.checkout_completed();
      if (c.subscription_id().empty()) break;  // not a subscription checkout
      auto& sub = subscription(s, c.subscription_id());
      if (!c.tenant_ref().empty()) sub.set_tenant_ref(c.tenant_ref());
      // The subscription's own events carry its current plan; the checkout's
      // metadata only fills in until one of them has arrived.
      if (sub.updated_created() == 0 && c.plan() != v1::PLAN_UNSPECIFIED) sub.set_plan(c.plan());
      if (sub.status().empty()) sub.set_status("active");
      break;
    }
    case v1::BillingEvent::kSubscriptionChanged: {
      const auto& c = e.subscription_changed();
      auto& sub = subscription(s, c.subscription_id());
      if (!c.tenant_ref().empty() && sub.tenant_ref().empty()) sub.set_tenant_ref(c.tenant_ref());
      if (sub.deleted()) break;                    // deletion is final in Stripe
      if (created < sub.updated_created()) break;  // older than what we know
      sub.set_updated_created(created);
      if (!c.status().empty()) sub.set_status(c.status());
      if (c.plan() != v1::PLAN_UNSPECIFIED) sub.set_plan(c.plan());
      if (c.deleted()) sub.set_deleted(true);
      break;
    }
    case v1::BillingEvent::kInvoicePaymentFailed: {
      const auto& f = e.invoice_payment_failed();
      if (f.subscription_id().empty()) break;
      auto& sub = subscription(s, f.subscription_id());
      // Paid or voided since: a stale failure.
      if (contains(sub.settled_invoice_ids(), f.invoice_id())) break;
      for (int i = 0; i < sub.failed_invoice_ids_size(); ++i) {
        if (sub.failed_invoice_ids(i) != f.invoice_id()) continue;
        if (i < sub.failed_attempts_size())
          sub.set_failed_attempts(i, std::max(sub.failed_attempts(i), f.attempt_count()));
        return s;
      }
      sub.add_failed_invoice_ids(f.invoice_id());
      sub.add_failed_attempts(f.attempt_count());
      break;
    }
    case v1::BillingEvent::kInvoicePaid:
      settle(s, e.invoice_paid().subscription_id(), e.invoice_paid().invoice_id());
      break;
    case v1::BillingEvent::kInvoiceVoided:
      settle(s, e.invoice_voided().subscription_id(), e.invoice_voided().invoice_id());
      break;
    case v1::BillingEvent::KIND_NOT_SET:
      break;
  }
  return s;
}

namespace {
// One subscription decides per tenant. A tenant may have several (a
// re-subscription after a cancellation, two Checkouts completed in a race):
// a live one beats an ended one, a paid-up one beats an overdue one, a
// higher plan beats a lower one, and only then does the newest update win —
// so a renewal of the older, cheaper subscription or the cancellation of the
// one being replaced never overrides the one the customer still pays for.
std::map<std::string, const v1::BillingSubscription*> deciding(const v1::BillingState& state,
                                                               const GracePolicy& policy) {
  auto rank = [&](const v1::BillingSubscription& sub) {
    const bool live = !ended(sub);
    return std::make_tuple(live, live && !overdue(sub, policy), static_cast<int>(sub.plan()),
                           sub.updated_created());
  };
  std::map<std::string, const v1::BillingSubscription*> best;
  for (const auto& sub : state.subscriptions()) {
    if (sub.tenant_ref().empty()) continue;
    auto& cur = best[sub.tenant_ref()];
    if (!cur || rank(sub) > rank(*cur)) cur = &sub;
  }
  return best;
}
}  // namespace

const v1::BillingSubscription* live_subscription(const v1::BillingState& state,
                                                 const std::string& ref,
                                                 const GracePolicy& policy) {
  const auto best = deciding(state, policy);
  const auto it = best.find(ref);
  return it == best.end() || ended(*it->second) ? nullptr : it->second;
}

std::vector<TenantTarget> tenant_targets(const v1::BillingState& state, const GracePolicy& policy) {
  const auto newest = deciding(state, policy);
  std::vector<TenantTarget> out;
  for (const auto& [ref, sub] : newest) {
    TenantTarget t;
    t.ref = ref;
    if (ended(*sub)) {
      t.plan = v1::PLAN_FREE;
      t.suspend = true;
      t.reason = kReasonCanceled;
    } else {
      t.plan = sub->plan();
      if (overdue(*sub, policy)) {
        t.suspend = true;
        t.reason = kReasonOverdue;
      }
    }
    out.push_back(std::move(t));
  }
  return out;
}

std::optional<domain::TenantCommand> next_command(const v1::TenantState& tenant,
                                                  const TenantTarget& target,
                                                  bool suspended_by_billing) {
  if (!domain::exists(tenant) || tenant.desired_state() == v1::DESIRED_STATE_DELETED)
    return std::nullopt;
  domain::TenantCommand cmd;
  if (target.plan != v1::PLAN_UNSPECIFIED && tenant.plan() != target.plan) {
    cmd.kind = domain::CommandKind::change_plan;
    cmd.plan = target.plan;
    return cmd;
  }
  if (target.suspend && !tenant.suspended()) {
    cmd.kind = domain::CommandKind::suspend;
    cmd.reason = target.reason;
    return cmd;
  }
  // Only a suspension billing made is billing's to lift; an operator's stays.
  if (!target.suspend && tenant.suspended() && suspended_by_billing) {
    cmd.kind = domain::CommandKind::unsuspend;
    return cmd;
  }
  return std::nullopt;
}

}  // namespace supaplane::billing
