#pragma once
// Records verified Stripe events on the billing subject and drives the
// linked tenants towards what billing wants (through the tenant aggregate).

#include <atomic>
#include <cstdint>
#include <string>

#include "billing_domain.hpp"
#include "stripe_event.hpp"
#include "supaplane/core/result.hpp"
#include "supaplane/core/time.hpp"
#include "supaplane/event_store/command.hpp"
#include "supaplane/event_store/event_store.hpp"

namespace supaplane::billing {

inline constexpr const char* kBillingPrefix = "platform.billing.";

/// Counters of the processor (read from any thread).
struct ProcessorCounters {
  std::atomic<std::uint64_t> recorded{0};    ///< BillingEvents appended
  std::atomic<std::uint64_t> duplicates{0};  ///< Stripe events seen before
  std::atomic<std::uint64_t> ignored{0};     ///< valid events of types billing does not act on
  std::atomic<std::uint64_t> conflicts{0};   ///< OCC conflicts (re-read and re-decided)
  std::atomic<std::uint64_t> tenant_commands{0};
  std::atomic<std::uint64_t> unknown_tenants{0};  ///< linked refs with no tenant on the log
};

enum class Outcome { recorded, duplicate, ignored };

/// Encodes a BillingEvent for `platform.billing.<customer>`.
event_store::OutgoingEvent make_billing_event(const std::string& customer,
                                              const v1::BillingEvent& ev,
                                              event_store::Expected expected,
                                              std::int64_t now_unix_ms);

/// Folds a customer's messages (undecodable or foreign ones only move the
/// version). `seen_event_id`, when given, is set if that Stripe event is among them.
v1::BillingState fold_billing_history(const std::string& customer,
                                      const std::vector<event_store::StoredMessage>& msgs,
                                      const std::string& seen_event_id = {}, bool* seen = nullptr);

/// Thread-safe: every call re-reads what it decides on and appends with the
/// expected sequence, so concurrent deliveries for one customer are safe.
class Processor {
 public:
  /// `sleeper`: where the backoff after a lost race waits (null: this thread).
  Processor(event_store::EventLog& store, const Clock& clock, GracePolicy policy,
            event_store::Sleeper* sleeper = nullptr);

  /// Handles one verified, parsed event. Ok only once everything it implies
  /// is durably on the log (then Stripe may be answered 200). `unavailable`
  /// when NATS is down or the aggregate keeps changing (answer 503: Stripe retries).
  Result<Outcome> handle(const StripeEvent& ev);

  const ProcessorCounters& counters() const { return counters_; }

 private:
  /// Sets `*acted` when it appended a tenant command.
  Status reconcile_tenant(const TenantTarget& target, const std::string& stripe_event_id,
                          bool* acted);

  static event_store::RetryPolicy retry_policy(std::string exhausted);

  event_store::EventLog& store_;
  const Clock& clock_;
  GracePolicy policy_;
  event_store::Sleeper& sleeper_;
  ProcessorCounters counters_;
};

}  // namespace supaplane::billing
