#pragma once
// Billing's Redis projection: per Stripe customer its BillingState, and per
// tenant the customer that pays for it. Keys (prefix default "sp:billing:"):
//   <prefix>customer:<cus id>  hash  state (BillingState bytes), version
//   <prefix>tenant:<ref>       string  the customer id
//   <prefix>checkpoint         string  last stream sequence applied; its
//                              absence means "not loaded" (Redis lost its
//                              data): readers answer UNAVAILABLE, the
//                              projector rebuilds from the log.

#include <array>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "supaplane/event_store/consumer.hpp"
#include "supaplane/event_store/event_store.hpp"
#include "supaplane/projection/guard.hpp"
#include "supaplane/projection/redis.hpp"
#include "supaplane/v1/events.pb.h"

namespace supaplane::billing {

/// Applies platform.billing.> messages to Redis; runs on the consumer's
/// thread (one writer). A message at or below a customer's stored version is
/// skipped, so redeliveries are harmless. A write is refused while the
/// checkpoint is missing, and a check (at start, every `interval` from its
/// own thread, and when a write is refused) rebuilds the projection from the
/// log when the checkpoint is missing, below what this process applied, or
/// above the end of the stream. Writes and rebuilds take turns (one mutex).
class BillingProjector final : public event_store::BatchHandler {
 public:
  BillingProjector(projection::RedisAddress redis, std::string prefix,
                   event_store::EventStore& store);
  ~BillingProjector() override;
  void handle(std::vector<event_store::InboundMessage>& batch) override;
  void request_stop() { stop_ = true; }
  std::uint64_t applied() const { return applied_; }
  std::uint64_t malformed() const { return malformed_; }

  /// Looks once and rebuilds if needed; ok when the projection is loaded.
  Status check();
  /// Runs check() every `interval` on its own thread until stop_checking().
  void start_checking(std::chrono::milliseconds interval = std::chrono::milliseconds(500));
  void stop_checking();
  /// Called after each rebuild (metrics).
  void on_rebuilt(std::function<void(projection::RebuildReason, std::uint64_t events)> f) {
    on_rebuilt_ = std::move(f);
  }
  std::uint64_t rebuilds(projection::RebuildReason r) const {
    return rebuilds_[static_cast<std::size_t>(r)].load();
  }

 private:
  /// `rebuilding`: write even without a checkpoint and leave it alone.
  Status apply(const event_store::StoredMessage& m, bool rebuilding);
  Status rebuild(projection::RebuildReason why);
  projection::Script write_;
  projection::RedisConnection redis_;
  std::string prefix_;
  event_store::EventStore& store_;
  std::mutex mu_;                              ///< one apply or rebuild at a time; guards redis_
  std::atomic<std::uint64_t> applied_seq_{0};  ///< last sequence this process applied
  std::function<void(projection::RebuildReason, std::uint64_t)> on_rebuilt_;
  std::array<std::atomic<std::uint64_t>, projection::kRebuildReasons.size()> rebuilds_{};
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> applied_{0};
  std::atomic<std::uint64_t> malformed_{0};
  std::mutex check_mu_;
  std::condition_variable check_cv_;
  bool check_stop_{false};
  std::thread check_thread_;
};

/// Reads the projection (request threads; one connection per call site).
/// Answers UNAVAILABLE while the projection is not loaded (being rebuilt).
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
