#pragma once
// Billing's pure logic: fold BillingEvents into a customer's BillingState, and
// derive what each linked tenant should look like (plan, billing suspension).
// Decisions use the Stripe objects' own state and event `created`, so events
// delivered out of order converge to the same result.

#include <optional>
#include <string>
#include <vector>

#include "supaplane/domain/tenant.hpp"
#include "supaplane/v1/events.pb.h"

namespace supaplane::billing {

namespace v1 = ::supaplane::v1;

inline constexpr const char* kReasonOverdue = "billing: payment overdue";
inline constexpr const char* kReasonCanceled = "billing: subscription canceled";

/// When a failed payment suspends the tenant.
struct GracePolicy {
  /// A failed invoice suspends once Stripe has tried it this many times.
  int max_failed_attempts{3};
};

/// Applies one event recorded at stream sequence `sequence`.
v1::BillingState fold(v1::BillingState state, const v1::BillingEvent& event,
                      std::uint64_t sequence);

/// What billing wants for one tenant.
struct TenantTarget {
  std::string ref;
  v1::Plan plan{v1::PLAN_UNSPECIFIED};  ///< UNSPECIFIED = billing has no opinion
  bool suspend{false};
  std::string reason;  ///< for suspend
};

/// One target per tenant linked to a subscription of the customer; for a
/// tenant named by several subscriptions the most recently updated one wins.
std::vector<TenantTarget> tenant_targets(const v1::BillingState& state, const GracePolicy& policy);

/// The subscription that pays for `ref` (the one that decides its target,
/// ranked as in `tenant_targets`), if it is live (not canceled / deleted /
/// expired); nullptr otherwise. Points into `state`.
const v1::BillingSubscription* live_subscription(const v1::BillingState& state,
                                                 const std::string& ref, const GracePolicy& policy);

/// The next command that moves `tenant` towards `target` (nullopt: there).
/// `suspended_by_billing`: the tenant's current suspension was appended by
/// billing (actor STRIPE); only such a suspension is lifted.
std::optional<domain::TenantCommand> next_command(const v1::TenantState& tenant,
                                                  const TenantTarget& target,
                                                  bool suspended_by_billing);

}  // namespace supaplane::billing
