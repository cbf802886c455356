#pragma once
// Billing's Redis projection: per Stripe customer its BillingState, and per
// tenant the customer that pays for it. Keys (prefix default "sp:billing:"):
//   <prefix>customer:<cus id>  hash  state (BillingState bytes), version
//   <prefix>tenant:<ref>       string  the customer id

#include <atomic>
#include <optional>
#include <string>

#include "supaplane/event_store/consumer.hpp"
#include "supaplane/projection/redis.hpp"
#include "supaplane/v1/events.pb.h"

namespace supaplane::billing {

/// Applies platform.billing.> messages to Redis; runs on the consumer's
/// thread (one writer). A message at or below a customer's stored version is
/// skipped, so redeliveries are harmless.
class BillingProjector final : public event_store::BatchHandler {
 public:
  BillingProjector(projection::RedisAddress redis, std::string prefix);
  void handle(std::vector<event_store::InboundMessage>& batch) override;
  void request_stop() { stop_ = true; }
  std::uint64_t applied() const { return applied_; }
  std::uint64_t malformed() const { return malformed_; }

 private:
  Status apply(const event_store::StoredMessage& m);
  projection::RedisConnection redis_;
  std::string prefix_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> applied_{0};
  std::atomic<std::uint64_t> malformed_{0};
};

/// Reads the projection (request threads; one connection per call site).
class BillingReader {
 public:
  BillingReader(projection::RedisPool& pool, std::string prefix);
  Result<std::optional<v1::BillingState>> customer(const std::string& customer_id);
  /// The customer paying for `ref`, if any.
  Result<std::optional<std::string>> customer_of(const std::string& ref);

 private:
  projection::RedisPool& pool_;
  std::string prefix_;
};

}  // namespace supaplane::billing
