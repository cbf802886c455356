#pragma once
// Optional Stripe Checkout: BillingService.CreateCheckoutSession over gRPC,
// served by supaplane-billing itself. Callers present the api's session
// tokens (SUPAPLANE_JWT_SECRET); a customer may only pay for a tenant they own.

#include <map>
#include <memory>
#include <string>

#include "billing_projection.hpp"
#include "stripe_event.hpp"
#include "supaplane/auth/token.hpp"
#include "supaplane/core/result.hpp"
#include "supaplane/event_store/event_store.hpp"
#include "supaplane/v1/api.grpc.pb.h"

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
  const CheckoutOptions& options() const { return opts_; }

 private:
  CheckoutOptions opts_;
};

/// "a=b&c=d" with application/x-www-form-urlencoded escaping.
std::string form_encode(const std::vector<std::pair<std::string, std::string>>& fields);

/// The gRPC BillingService.
class CheckoutService final : public v1::BillingService::Service {
 public:
  /// `tokens` null (no JWT secret) or `client` null (no Stripe key): every
  /// call answers FAILED_PRECONDITION.
  CheckoutService(std::unique_ptr<StripeClient> client, std::unique_ptr<auth::TokenService> tokens,
                  event_store::EventStore& store, BillingReader* reader);
  grpc::Status CreateCheckoutSession(grpc::ServerContext* ctx,
                                     const v1::CreateCheckoutSessionRequest* req,
                                     v1::CheckoutSession* resp) override;

 private:
  std::unique_ptr<StripeClient> client_;
  std::unique_ptr<auth::TokenService> tokens_;
  event_store::EventStore& store_;
  BillingReader* reader_;
};

}  // namespace supaplane::billing
