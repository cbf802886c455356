#pragma once
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>

#include "lease.hpp"
#include "supaplane/core/time.hpp"
#include "supaplane/core/work_queue.hpp"
#include "supaplane/domain/converge.hpp"
#include "supaplane/driver/driver.hpp"
#include "supaplane/event_store/command.hpp"
#include "supaplane/event_store/consumer.hpp"
#include "supaplane/event_store/event_store.hpp"
#include "supaplane/keystore/key_store.hpp"
#include "supaplane/keystore/secret_store.hpp"

namespace supaplane::provisioner {

using keystore::KeyStore;
using keystore::SecretStore;
using keystore::StoredKeys;

struct ProvisionerOptions {
  int workers{4};  ///< tenants converged in parallel
  /// Driver attempts per converge: then the tenant goes FAILED (internal
  /// errors) or the converge is deferred (cluster unavailable).
  int max_attempts{5};
  int backoff_base_ms{200};
  int backoff_max_ms{10'000};
  int connection_limit{20};
  /// A stack still not serving this long after its converge began goes
  /// FAILED, naming what it waits for.
  int start_timeout_ms{600'000};
  /// Converge rounds (each a read, a decision and an append) a tenant may
  /// lose to newer events before the converge is deferred (`unavailable`);
  /// the backoff after the n-th lost race: min(base · 2^(n-1), max) ms.
  int max_converge_rounds{16};
  int conflict_backoff_base_ms{5};
  int conflict_backoff_max_ms{200};
};

struct ProvisionerCounters {
  std::atomic<std::uint64_t> actions{0};         ///< driver actions that succeeded
  std::atomic<std::uint64_t> failures{0};        ///< tenants that went FAILED
  std::atomic<std::uint64_t> retries{0};         ///< driver attempts that failed
  std::atomic<std::uint64_t> conflicts{0};       ///< outcome appends that lost a race
  std::atomic<std::uint64_t> drift{0};           ///< DriftDetected appended
  std::atomic<std::uint64_t> unavailable{0};     ///< converges deferred: cluster unreachable
  std::atomic<std::uint64_t> health_changes{0};  ///< StackHealthChanged appended
  std::atomic<std::int64_t> starting{0};         ///< stacks started, not serving yet
  std::atomic<std::uint64_t> resyncs{0};         ///< resync passes finished
  std::atomic<std::uint64_t> resync_events{0};   ///< events folded by resync replays
  std::atomic<std::uint64_t> history_reads{0};   ///< single-tenant history reads
  std::atomic<std::int64_t> resync_tenants{0};   ///< tenants looked at by the last resync
  std::atomic<std::int64_t> resync_ms{0};        ///< duration of the last resync
  std::atomic<std::uint64_t> not_leading{0};  ///< converges given up: this replica stopped leading
};

/// Level-triggered controller: for every tenant it hears about it folds the
/// latest state from the log, asks `plan_convergence` what to do, does it
/// through the driver and appends the outcome with the expected subject
/// sequence it decided on (a lost race re-reads and converges to the newer
/// desire). Different tenants converge in parallel; one tenant never does
/// (striped locks). With `leadership`, nothing is started (driver call,
/// append, resync) unless this replica leads at that moment: a replica
/// that lost its lease gives its work up (`unavailable`, messages released)
/// before another can take over. Thread-safe.
class Provisioner final : public event_store::BatchHandler {
 public:
  Provisioner(event_store::EventLog& store, driver::Driver& driver, SecretStore& keys,
              const Clock& clock, ProvisionerOptions opts, const Leadership* leadership = nullptr,
              event_store::Sleeper* sleeper = nullptr);
  /// Acks each message once its tenant has converged (or gone FAILED);
  /// a tenant that could not record its outcome is retried later.
  void handle(std::vector<event_store::InboundMessage>& batch) override;
  /// Converges one tenant until nothing is left to do, or until its stack
  /// was started and now only has to become healthy: then the tenant is
  /// remembered as starting and converged again when the driver reports a
  /// change (`kick`) or at the next `poll_starting`; no worker waits for it.
  Status converge(const std::string& ref);
  /// Compares every live tenant with what the driver sees; a difference is
  /// recorded (DriftDetected) and repaired, a health change recorded
  /// (StackHealthChanged). Every tenant's state comes from ONE ordered replay
  /// of `platform.tenant.>` (no history read per tenant); a state that moved
  /// on meanwhile loses its append to OCC, and a tenant with work left is
  /// converged from a fresh read. Returns how many drifted.
  Result<int> resync();
  /// The driver saw something happen to `ref`'s stack (a container started,
  /// died, changed health): converge it if it is starting, else check it
  /// for drift and health. Queued on the workers; repeated kicks collapse.
  void kick(const std::string& ref);
  /// Kicks every starting tenant (the backstop when driver events are lost).
  void poll_starting();
  /// Refs whose stacks were started and are not serving yet.
  std::vector<std::string> starting() const;
  /// Forgets the starting stacks (this replica stopped leading: the next
  /// leader's resync finds them, and they must not time out here later).
  void forget_starting();
  void request_stop() { stop_ = true; }
  const ProvisionerCounters& counters() const { return counters_; }

 private:
  Result<driver::Progress> act(domain::StackAction action, const driver::StackRequest& req);
  /// resync / kick for one settled tenant: drift → DriftDetected + repair;
  /// a different health picture → StackHealthChanged. True when it drifted.
  /// `folded`: the tenant's state from the resync's replay (else its history
  /// is read).
  Result<bool> check(const std::string& ref, const v1::TenantState* folded = nullptr);
  void set_starting(const std::string& ref, bool starting);
  std::mutex& lock_for(const std::string& ref);
  bool sleep_ms(std::int64_t ms);
  /// False (and counted) when this replica does not lead now.
  bool may_act();

  event_store::EventLog& store_;
  driver::Driver& driver_;
  SecretStore& keys_;
  const Clock& clock_;
  ProvisionerOptions opts_;
  const Leadership* leadership_;
  ProvisionerCounters counters_;
  std::atomic<bool> stop_{false};
  event_store::ThreadSleeper own_sleeper_;  ///< wakes early on stop
  event_store::Sleeper* sleeper_;           ///< driver retries and lost races wait here
  event_store::RetryPolicy converge_policy_{};
  std::array<std::mutex, 64> locks_;
  mutable std::mutex starting_mu_;
  std::map<std::string, std::chrono::steady_clock::time_point> starting_;  ///< ref → since
  std::mutex kicked_mu_;
  std::set<std::string> kicked_;  ///< queued kicks (collapsed)
  WorkQueue pool_;
};

}  // namespace supaplane::provisioner
