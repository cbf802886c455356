#pragma once
// Optional Stripe Checkout: BillingService.CreateCheckoutSession and
// ChangeSubscriptionPlan over gRPC, served by supaplane-billing itself. Callers present the api's
// session tokens (SUPAPLANE_JWT_SECRET); a customer may only pay for a tenant they own.

#include <prometheus/counter.h>
#include <prometheus/family.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "billing_domain.hpp"
#include "billing_projection.hpp"
#include "stripe_event.hpp"
#include "supaplane/auth/token.hpp"
#include "supaplane/core/result.hpp"
#include "supaplane/event_store/event_store.hpp"
#include "supaplane/v1/api.grpc.pb.h"

namespace supaplane::grpc_edge {
class Gate;
}

namespace supaplane::billing {

struct CheckoutOptions {
  std::string secret_key;  ///< sk_...; "" = disabled (FAILED_PRECONDITION)
  std::string api_base{"https://api.stripe.com"};
  std::map<v1::Plan, std::string> prices;  ///< plan → Stripe price id
  std::string success_url;
  std::string cancel_url;
  long timeout_ms{10'000};
};

struct CreatedSession {
  std::string id;
  std::string url;
};

/// Stripe's HTTP API through libcurl: one call, one easy handle (thread-safe).
class StripeClient {
 public:
  explicit StripeClient(CheckoutOptions opts);
  /// POST /v1/checkout/sessions (mode=subscription) for `ref` on `plan`;
  /// `customer` reuses an existing Stripe customer when known.
  Result<CreatedSession> create_checkout_session(const std::string& ref, v1::Plan plan,
                                                 const std::string& customer);
  /// Moves the subscription's one item to `plan`'s price (GET then POST
  /// /v1/subscriptions/<id>, prorated).
  Status change_subscription_plan(const std::string& subscription_id, v1::Plan plan);
  const CheckoutOptions& options() const { return opts_; }

 private:
  Result<std::string> price_of(v1::Plan plan) const;
  /// One request; a non-200 answer is an error carrying Stripe's message.
  Result<nlohmann::json> call(const std::string& method, const std::string& path,
                              const std::string& form);
  CheckoutOptions opts_;
};

/// "a=b&c=d" with application/x-www-form-urlencoded escaping.
std::string form_encode(const std::vector<std::pair<std::string, std::string>>& fields);

/// The gRPC BillingService.
class CheckoutService final : public v1::BillingService::Service {
 public:
  /// `tokens` null (no JWT secret) or `client` null (no Stripe key): every
  /// call answers FAILED_PRECONDITION. Refused callers are counted by reason
  /// in `refused` (may be null).
  CheckoutService(std::unique_ptr<StripeClient> client, std::unique_ptr<auth::TokenService> tokens,
                  event_store::EventStore& store, BillingReader* reader, GracePolicy policy,
                  prometheus::Family<prometheus::Counter>* refused = nullptr);
  ~CheckoutService() override;
  grpc::Status CreateCheckoutSession(grpc::ServerContext* ctx,
                                     const v1::CreateCheckoutSessionRequest* req,
                                     v1::CheckoutSession* resp) override;
  grpc::Status ChangeSubscriptionPlan(grpc::ServerContext* ctx,
                                      const v1::ChangeSubscriptionPlanRequest* req,
                                      v1::SubscriptionPlanChange* resp) override;

 private:
  /// Enabled, a valid token, a valid ref and plan, and a tenant the caller
  /// owns (admins: any); OK or the status to answer.
  grpc::Status authorize(grpc::ServerContext* ctx, const std::string& ref, v1::Plan plan);
  struct Paying {
    std::string customer;                         ///< "" when none is linked
    std::optional<v1::BillingSubscription> live;  ///< the subscription paying for it
  };
  Result<Paying> paying_for(const std::string& ref);

  std::unique_ptr<StripeClient> client_;
  std::unique_ptr<auth::TokenService> tokens_;
  std::unique_ptr<grpc_edge::Gate> gate_;  ///< set when `tokens_` is
  event_store::EventStore& store_;
  BillingReader* reader_;
  GracePolicy policy_;
};

}  // namespace supaplane::billing
