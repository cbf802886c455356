#include "stripe_event.hpp"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

#include "supaplane/core/types.hpp"

namespace supaplane::billing {

namespace {
using json = nlohmann::json;

std::string str(const json& o, const char* key) {
  auto it = o.find(key);
  if (it == o.end() || !it->is_string()) return {};
  return it->get<std::string>();
}

// A Stripe reference field: an id string, or the expanded object with its id.
std::string ref_id(const json& o, const char* key) {
  auto it = o.find(key);
  if (it == o.end()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) return str(*it, "id");
  return {};
}

std::string metadata(const json& o, const char* key) {
  auto it = o.find("metadata");
  if (it == o.end() || !it->is_object()) return {};
  return str(*it, key);
}

std::string valid_ref_or_empty(std::string ref) {
  return TenantRef::valid(ref) ? ref : std::string{};
}

// The plan of a subscription: metadata.plan, else the first item's price.
v1::Plan subscription_plan(const json& sub, const PriceMap& prices) {
  if (auto p = plan_from_name(metadata(sub, "plan")); p != v1::PLAN_UNSPECIFIED) return p;
  auto items = sub.find("items");
  if (items == sub.end() || !items->is_object()) return v1::PLAN_UNSPECIFIED;
  auto data = items->find("data");
  if (data == items->end() || !data->is_array()) return v1::PLAN_UNSPECIFIED;
  for (const auto& item : *data) {
    if (!item.is_object()) continue;
    auto price = item.find("price");
    if (price == item.end() || !price->is_object()) continue;
    if (auto hit = prices.find(str(*price, "id")); hit != prices.end()) return hit->second;
    if (auto p = plan_from_name(str(*price, "lookup_key")); p != v1::PLAN_UNSPECIFIED) return p;
  }
  return v1::PLAN_UNSPECIFIED;
}

// Invoices name their subscription at the top (API versions before
// 2025-03-31) or under parent.subscription_details (newer versions).
std::string invoice_subscription(const json& inv) {
  if (auto s = ref_id(inv, "subscription"); !s.empty()) return s;
  auto parent = inv.find("parent");
  if (parent == inv.end() || !parent->is_object()) return {};
  auto details = parent->find("subscription_details");
  if (details == parent->end() || !details->is_object()) return {};
  return ref_id(*details, "subscription");
}

Error bad(const std::string& what) {
  return make_error(errc::invalid_argument, "not a usable Stripe event: " + what, "body");
}
}  // namespace

bool valid_stripe_id(std::string_view id) noexcept {
  if (id.empty() || id.size() > 255) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

v1::Plan plan_from_name(std::string_view name) {
  std::string n(name);
  std::transform(n.begin(), n.end(), n.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (n.rfind("plan_", 0) == 0) n = n.substr(5);
  if (n == "free") return v1::PLAN_FREE;
  if (n == "starter") return v1::PLAN_STARTER;
  if (n == "pro") return v1::PLAN_PRO;
  return v1::PLAN_UNSPECIFIED;
}

const char* plan_name(v1::Plan p) {
  switch (p) {
    case v1::PLAN_FREE:
      return "free";
    case v1::PLAN_STARTER:
      return "starter";
    case v1::PLAN_PRO:
      return "pro";
    default:
      return "";
  }
}

Result<StripeEvent> parse_stripe_event(std::string_view body, const PriceMap& prices) {
  const json doc = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return bad("body is not a JSON object");
  if (str(doc, "object") != "event") return bad("object is not \"event\"");
  StripeEvent ev;
  ev.id = str(doc, "id");
  ev.type = str(doc, "type");
  if (!valid_stripe_id(ev.id)) return bad("missing or malformed event id");
  if (ev.type.empty() || ev.type.size() > 128) return bad("missing type");
  auto created = doc.find("created");
  if (created == doc.end() || !created->is_number_integer()) return bad("missing created");
  auto data = doc.find("data");
  if (data == doc.end() || !data->is_object()) return bad("missing data");
  auto obj_it = data->find("object");
  if (obj_it == data->end() || !obj_it->is_object()) return bad("missing data.object");
  const json& obj = *obj_it;

  v1::BillingEvent be;
  be.set_stripe_event_id(ev.id);
  be.set_stripe_type(ev.type);
  be.set_stripe_created(created->get<std::int64_t>());
  const std::string object_id = str(obj, "id");
  if (ev.type == "checkout.session.completed") {
    auto* c = be.mutable_checkout_completed();
    c->set_session_id(object_id);
    c->set_subscription_id(ref_id(obj, "subscription"));
    std::string ref = metadata(obj, "tenant_ref");
    if (ref.empty()) ref = str(obj, "client_reference_id");
    c->set_tenant_ref(valid_ref_or_empty(ref));
    c->set_plan(plan_from_name(metadata(obj, "plan")));
  } else if (ev.type == "customer.subscription.created" ||
             ev.type == "customer.subscription.updated" ||
             ev.type == "customer.subscription.deleted") {
    auto* s = be.mutable_subscription_changed();
    s->set_subscription_id(object_id);
    s->set_status(str(obj, "status"));
    s->set_plan(subscription_plan(obj, prices));
    s->set_tenant_ref(valid_ref_or_empty(metadata(obj, "tenant_ref")));
    s->set_deleted(ev.type == "customer.subscription.deleted");
  } else if (ev.type == "invoice.payment_failed") {
    auto* f = be.mutable_invoice_payment_failed();
    f->set_invoice_id(object_id);
    f->set_subscription_id(invoice_subscription(obj));
    auto a = obj.find("attempt_count");
    const std::int64_t attempts =
        a != obj.end() && a->is_number_integer() ? a->get<std::int64_t>() : 1;
    f->set_attempt_count(static_cast<std::int32_t>(std::clamp<std::int64_t>(attempts, 1, 1000)));
  } else if (ev.type == "invoice.paid") {
    auto* p = be.mutable_invoice_paid();
    p->set_invoice_id(object_id);
    p->set_subscription_id(invoice_subscription(obj));
  } else if (ev.type == "invoice.voided") {
    auto* v = be.mutable_invoice_voided();
    v->set_invoice_id(object_id);
    v->set_subscription_id(invoice_subscription(obj));
  } else {
    return ev;  // a valid event of a type billing does not act on
  }
  if (!valid_stripe_id(object_id)) return bad("missing or malformed data.object.id");
  ev.customer = ref_id(obj, "customer");
  // A signed event with no usable customer (a guest or payment-mode
  // checkout): nothing billing can link, and a 4xx would only make Stripe
  // retry it for days. Answered 200 and counted as ignored.
  if (!valid_stripe_id(ev.customer)) {
    ev.customer.clear();
    return ev;
  }
  ev.billing = std::move(be);
  return ev;
}

}  // namespace supaplane::billing
