#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

#include "supaplane/core/time.hpp"
#include "supaplane/core/work_queue.hpp"
#include "supaplane/domain/converge.hpp"
#include "supaplane/driver/driver.hpp"
#include "supaplane/event_store/consumer.hpp"
#include "supaplane/event_store/event_store.hpp"
#include "supaplane/keystore/key_store.hpp"

namespace supaplane::provisioner {

using keystore::KeyStore;
using keystore::StoredKeys;

struct ProvisionerOptions {
  int workers{4};  ///< tenants converged in parallel
  /// Driver attempts per converge: then the tenant goes FAILED (internal
  /// errors) or the converge is deferred (cluster unavailable).
  int max_attempts{5};
  int backoff_base_ms{200};
  int backoff_max_ms{10'000};
  int connection_limit{20};
};

struct ProvisionerCounters {
  std::atomic<std::uint64_t> actions{0};      ///< driver actions that succeeded
  std::atomic<std::uint64_t> failures{0};     ///< tenants that went FAILED
  std::atomic<std::uint64_t> retries{0};      ///< driver attempts that failed
  std::atomic<std::uint64_t> conflicts{0};    ///< outcome appends that lost a race
  std::atomic<std::uint64_t> drift{0};        ///< DriftDetected appended
  std::atomic<std::uint64_t> unavailable{0};  ///< converges deferred: cluster unreachable
};

/// Level-triggered controller: for every tenant it hears about it folds the
/// latest state from the log, asks `plan_convergence` what to do, does it
/// through the driver and appends the outcome with the expected subject
/// sequence it decided on (a lost race re-reads and converges to the newer
/// desire). Different tenants converge in parallel; one tenant never does
/// (striped locks). Thread-safe.
class Provisioner final : public event_store::BatchHandler {
 public:
  Provisioner(event_store::EventStore& store, driver::Driver& driver, KeyStore& keys,
              const Clock& clock, ProvisionerOptions opts);
  /// Acks each message once its tenant has converged (or gone FAILED);
  /// a tenant that could not record its outcome is retried later.
  void handle(std::vector<event_store::InboundMessage>& batch) override;
  /// Converges one tenant until nothing is left to do.
  Status converge(const std::string& ref);
  /// Compares every live tenant with what the driver sees; a difference is
  /// recorded (DriftDetected) and repaired. Returns how many drifted.
  Result<int> resync();
  void request_stop() { stop_ = true; }
  const ProvisionerCounters& counters() const { return counters_; }

 private:
  Status act(domain::StackAction action, const driver::StackRequest& req);
  std::mutex& lock_for(const std::string& ref);
  bool sleep_ms(std::int64_t ms);

  event_store::EventStore& store_;
  driver::Driver& driver_;
  KeyStore& keys_;
  const Clock& clock_;
  ProvisionerOptions opts_;
  ProvisionerCounters counters_;
  std::atomic<bool> stop_{false};
  std::array<std::mutex, 64> locks_;
  WorkQueue pool_;
};

}  // namespace supaplane::provisioner
