#include "checkout.hpp"

#include <curl/curl.h>

#include <nlohmann/json.hpp>

#include "billing_domain.hpp"
#include "processor.hpp"
#include "supaplane/core/types.hpp"
#include "supaplane/domain/tenant.hpp"
#include "supaplane/events/history.hpp"
#include "supaplane/grpc_edge/edge.hpp"
#include "supaplane/logging/logging.hpp"

namespace supaplane::billing {

using grpc_edge::to_grpc;

namespace {
std::shared_ptr<spdlog::logger> log() {
  static auto l = logging::get("checkout");
  return l;
}

std::size_t collect(char* data, std::size_t size, std::size_t n, void* out) {
  auto* s = static_cast<std::string*>(out);
  if (s->size() + size * n > (1u << 20)) return 0;  // a checkout answer is small
  s->append(data, size * n);
  return size * n;
}

}  // namespace

std::string form_encode(const std::vector<std::pair<std::string, std::string>>& fields) {
  static const char* hex = "0123456789ABCDEF";
  auto esc = [](const std::string& s) {
    std::string o;
    for (unsigned char c : s) {
      if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
        o += static_cast<char>(c);
      } else if (c == ' ') {
        o += '+';
      } else {
        o += '%';
        o += hex[c >> 4];
        o += hex[c & 15];
      }
    }
    return o;
  };
  std::string out;
  for (const auto& [k, v] : fields) {
    if (!out.empty()) out += '&';
    out += esc(k) + "=" + esc(v);
  }
  return out;
}

StripeClient::StripeClient(CheckoutOptions opts) : opts_(std::move(opts)) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
}

Result<std::string> StripeClient::price_of(v1::Plan plan) const {
  auto price = opts_.prices.find(plan);
  if (price == opts_.prices.end() || price->second.empty())
    return make_error(errc::failed_precondition,
                      std::string("no Stripe price configured for plan ") + plan_name(plan) +
                          " (SUPAPLANE_STRIPE_PRICE_" + (plan == v1::PLAN_PRO ? "PRO" : "STARTER") +
                          ")");
  return price->second;
}

Result<nlohmann::json> StripeClient::call(const std::string& method, const std::string& path,
                                          const std::string& form) {
  const std::string url = opts_.api_base + path;
  CURL* h = curl_easy_init();
  if (!h) return make_error(errc::internal, "curl_easy_init failed");
  const std::string auth = "Authorization: Bearer " + opts_.secret_key;
  curl_slist* headers = curl_slist_append(nullptr, auth.c_str());
  std::string answer;
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  if (method == "POST") {
    headers = curl_slist_append(headers, "Content-Type: application/x-www-form-urlencoded");
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, form.c_str());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(form.size()));
  } else {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  }
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &answer);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, opts_.timeout_ms);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
  const CURLcode rc = curl_easy_perform(h);
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(h);
  if (rc != CURLE_OK)
    return make_error(errc::unavailable,
                      std::string("Stripe API not reachable: ") + curl_easy_strerror(rc));
  auto doc = nlohmann::json::parse(answer, nullptr, false);
  if (status != 200) {
    std::string msg = "Stripe answered HTTP " + std::to_string(status);
    if (doc.is_object() && doc.contains("error") && doc["error"].is_object() &&
        doc["error"].contains("message") && doc["error"]["message"].is_string())
      msg += ": " + doc["error"]["message"].get<std::string>();
    return make_error(
        status >= 500 || status == 429 ? errc::unavailable : errc::failed_precondition, msg);
  }
  if (!doc.is_object()) return make_error(errc::unavailable, "Stripe's answer is not an object");
  return doc;
}

Result<CreatedSession> StripeClient::create_checkout_session(const std::string& ref, v1::Plan plan,
                                                             const std::string& customer) {
  auto price = price_of(plan);
  if (!price) return price.error();
  std::vector<std::pair<std::string, std::string>> f{
      {"mode", "subscription"},
      {"line_items[0][price]", *price},
      {"line_items[0][quantity]", "1"},
      {"success_url", opts_.success_url},
      {"cancel_url", opts_.cancel_url},
      {"client_reference_id", ref},
      {"metadata[tenant_ref]", ref},
      {"metadata[plan]", plan_name(plan)},
      {"subscription_data[metadata][tenant_ref]", ref},
      {"subscription_data[metadata][plan]", plan_name(plan)},
  };
  if (!customer.empty()) f.emplace_back("customer", customer);
  auto doc = call("POST", "/v1/checkout/sessions", form_encode(f));
  if (!doc) return doc.error();
  if (!doc->contains("url") || !(*doc)["url"].is_string() || !doc->contains("id") ||
      !(*doc)["id"].is_string())
    return make_error(errc::unavailable, "Stripe's answer has no session id / url");
  return CreatedSession{(*doc)["id"].get<std::string>(), (*doc)["url"].get<std::string>()};
}

Status StripeClient::change_subscription_plan(const std::string& subscription_id, v1::Plan plan) {
  if (!valid_stripe_id(subscription_id))
    return make_error(errc::internal, "recorded subscription id is malformed");
  auto price = price_of(plan);
  if (!price) return price.error();
  // The item to move: a supaplane subscription has exactly one.
  auto sub = call("GET", "/v1/subscriptions/" + subscription_id, "");
  if (!sub) return sub.error();
  const auto items = sub->find("items");
  const nlohmann::json* data = nullptr;
  if (items != sub->end() && items->is_object()) {
    auto d = items->find("data");
    if (d != items->end() && d->is_array()) data = &*d;
  }
  if (!data || data->size() != 1 || !(*data)[0].is_object() || !(*data)[0].contains("id") ||
      !(*data)[0]["id"].is_string())
    return make_error(errc::failed_precondition,
                      "subscription " + subscription_id + " does not have exactly one item");
  const std::string item = (*data)[0]["id"].get<std::string>();
  if (!valid_stripe_id(item))
    return make_error(errc::unavailable, "Stripe's answer has a malformed item id");
  auto updated = call("POST", "/v1/subscriptions/" + subscription_id,
                      form_encode({{"items[0][id]", item},
                                   {"items[0][price]", *price},
                                   {"proration_behavior", "create_prorations"},
                                   {"metadata[plan]", plan_name(plan)}}));
  if (!updated) return updated.error();
  return Status::Ok();
}

CheckoutService::CheckoutService(std::unique_ptr<StripeClient> client,
                                 std::unique_ptr<auth::TokenService> tokens,
                                 event_store::EventStore& store, BillingReader* reader,
                                 GracePolicy policy,
                                 prometheus::Family<prometheus::Counter>* refused)
    : client_(std::move(client)),
      tokens_(std::move(tokens)),
      store_(store),
      reader_(reader),
      policy_(policy) {
  if (tokens_) gate_ = std::make_unique<grpc_edge::Gate>(*tokens_, refused);
}

CheckoutService::~CheckoutService() = default;

grpc::Status CheckoutService::authorize(grpc::ServerContext* ctx, const std::string& ref,
                                        v1::Plan plan) {
  if (!client_ || !tokens_)
    return {grpc::StatusCode::FAILED_PRECONDITION,
            "checkout is disabled: set SUPAPLANE_STRIPE_SECRET_KEY and SUPAPLANE_JWT_SECRET on "
            "supaplane-billing"};
  auto principal = gate_->authenticate(*ctx);
  if (!principal) return to_grpc(principal.error());
  if (!TenantRef::valid(ref)) return {grpc::StatusCode::INVALID_ARGUMENT, "ref: not a tenant ref"};
  if (plan != v1::PLAN_STARTER && plan != v1::PLAN_PRO)
    return {grpc::StatusCode::INVALID_ARGUMENT, "plan: must be STARTER or PRO"};
  auto msgs = store_.read_subject("platform.tenant." + ref);
  if (!msgs) return to_grpc(msgs.error());
  const auto tenant = events::fold_history(ref, *msgs);
  // Another customer's tenant does not exist for the caller (docs/api.md, errors).
  if (!domain::exists(tenant) || tenant.desired_state() == v1::DESIRED_STATE_DELETED)
    return {grpc::StatusCode::NOT_FOUND, "tenant not found"};
  if (auto owner = gate_->check_owner(*principal, tenant.owner_account_id()); !owner)
    return to_grpc(owner.error());
  return grpc::Status::OK;
}

Result<CheckoutService::Paying> CheckoutService::paying_for(const std::string& ref) {
  Paying out;
  if (!reader_) return out;
  auto customer = reader_->customer_of(ref);
  if (!customer) return customer.error();
  if (!customer->has_value()) return out;
  out.customer = **customer;
  // The customer's record from the log itself, not the projection: a
  // subscription recorded a moment ago counts.
  auto msgs = store_.read_subject(std::string(kBillingPrefix) + out.customer);
  if (!msgs) return msgs.error();
  const auto state = fold_billing_history(out.customer, *msgs);
  if (const auto* sub = live_subscription(state, ref, policy_)) out.live = *sub;
  return out;
}

grpc::Status CheckoutService::CreateCheckoutSession(grpc::ServerContext* ctx,
                                                    const v1::CreateCheckoutSessionRequest* req,
                                                    v1::CheckoutSession* resp) {
  if (auto st = authorize(ctx, req->ref(), req->plan()); !st.ok()) return st;
  auto paying = paying_for(req->ref());
  if (!paying) return to_grpc(paying.error());
  // A second subscription would bill the customer twice for one tenant.
  if (paying->live)
    return {grpc::StatusCode::FAILED_PRECONDITION,
            std::string("tenant already has a live ") + plan_name(paying->live->plan()) +
                " subscription; change its plan with ChangeSubscriptionPlan"};
  auto session = client_->create_checkout_session(req->ref(), req->plan(), paying->customer);
  if (!session) {
    log()->warn("ref={} checkout session not created: {}", req->ref(), session.error().message);
    return to_grpc(session.error());
  }
  log()->info("ref={} checkout session {} for plan {}", req->ref(), session->id,
              plan_name(req->plan()));
  resp->set_id(session->id);
  resp->set_url(session->url);
  return grpc::Status::OK;
}

grpc::Status CheckoutService::ChangeSubscriptionPlan(grpc::ServerContext* ctx,
                                                     const v1::ChangeSubscriptionPlanRequest* req,
                                                     v1::SubscriptionPlanChange* resp) {
  if (auto st = authorize(ctx, req->ref(), req->plan()); !st.ok()) return st;
  auto paying = paying_for(req->ref());
  if (!paying) return to_grpc(paying.error());
  if (!paying->live)
    return {grpc::StatusCode::FAILED_PRECONDITION,
            "tenant has no live subscription; buy one with CreateCheckoutSession"};
  resp->set_subscription_id(paying->live->id());
  resp->set_plan(req->plan());
  if (paying->live->plan() == req->plan()) {
    resp->set_changed(false);  // already there: nothing to ask of Stripe
    return grpc::Status::OK;
  }
  if (auto st = client_->change_subscription_plan(paying->live->id(), req->plan()); !st) {
    log()->warn("ref={} subscription {} not moved to {}: {}", req->ref(), paying->live->id(),
                plan_name(req->plan()), st.error().message);
    return to_grpc(st.error());
  }
  log()->info("ref={} subscription {} moved from {} to {}", req->ref(), paying->live->id(),
              plan_name(paying->live->plan()), plan_name(req->plan()));
  resp->set_changed(true);
  return grpc::Status::OK;
}

}  // namespace supaplane::billing
