#pragma once
// Reads the few fields billing needs out of a Stripe event (JSON) into a
// BillingEvent. Pure: no I/O.

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "supaplane/core/result.hpp"
#include "supaplane/v1/events.pb.h"

namespace supaplane::billing {

namespace v1 = ::supaplane::v1;

/// Stripe price id → plan (from SUPAPLANE_STRIPE_PRICE_STARTER / _PRO).
using PriceMap = std::map<std::string, v1::Plan>;

struct StripeEvent {
  std::string id;        ///< evt_...
  std::string type;      ///< e.g. "invoice.paid"
  std::string customer;  ///< cus_...; empty when the event carries none
  /// Set for the types billing acts on; nullopt = valid but ignored type.
  std::optional<v1::BillingEvent> billing;
};

/// Parses a verified event body. invalid_argument when it is not a Stripe
/// event object, or a handled type lacks its customer / object id.
Result<StripeEvent> parse_stripe_event(std::string_view body, const PriceMap& prices);

/// "starter", "PRO", "plan_free" … → Plan; PLAN_UNSPECIFIED when unknown.
v1::Plan plan_from_name(std::string_view name);
/// Lower-case name of a plan ("starter"); "" for PLAN_UNSPECIFIED.
const char* plan_name(v1::Plan p);
/// Stripe ids (evt_, cus_, sub_, in_, cs_): 1..255 of [A-Za-z0-9_]; safe as a
/// NATS subject token and a Redis key part.
bool valid_stripe_id(std::string_view id) noexcept;

}  // namespace supaplane::billing
