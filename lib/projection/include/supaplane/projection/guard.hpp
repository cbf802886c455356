#pragma once
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "supaplane/event_store/event_store.hpp"
#include "supaplane/projection/projector.hpp"
#include "supaplane/projection/tenant_projection.hpp"

namespace supaplane::projection {

/// Why a projection was rebuilt (the `reason` label of the rebuild counters).
enum class RebuildReason {
  pointer_missing,     ///< no live generation: Redis lost its data (FLUSHALL, restart, failover)
  checkpoint_missing,  ///< a live generation without a checkpoint after events were applied
  checkpoint_behind,   ///< Redis holds less than this process applied (old dump, lagging replica)
  stream_behind,       ///< the stream ends below the checkpoint (stream lost and recreated)
  undecodable,         ///< a stored value could not be decoded
  operator_request,    ///< RebuildProjection
};
inline constexpr std::array kRebuildReasons = {
    RebuildReason::pointer_missing,   RebuildReason::checkpoint_missing,
    RebuildReason::checkpoint_behind, RebuildReason::stream_behind,
    RebuildReason::undecodable,       RebuildReason::operator_request};
const char* to_string(RebuildReason r) noexcept;

struct GuardOptions {
  /// How often the projection is looked at while nothing else notices a loss.
  std::chrono::milliseconds interval{500};
  /// Lifetime of the rebuild lock in Redis (a crashed holder frees it then).
  std::chrono::milliseconds lock_ttl{std::chrono::minutes(5)};
  /// Filter of the rebuild's replay.
  std::string filter{"platform.>"};
};

/// Keeps a TenantProjection in Redis in step with the event log at run time:
/// every `interval` (and whenever the projector asks) it checks that the live
/// generation and its checkpoint exist, that the checkpoint is not below what
/// this process applied and not above the end of the stream, and rebuilds
/// the projection from the log when one of them fails. One rebuild at a time
/// across every process sharing the prefix (a lock key `<base>rebuild-lock`
/// with a TTL); readers answer UNAVAILABLE until the new generation is live.
/// Thread-safe; the check thread is its own.
class ProjectionGuard {
 public:
  ProjectionGuard(TenantProjection& projection, RedisAddress redis, event_store::EventStore& store,
                  SequenceWaiter& waiter, GuardOptions options = {});
  ~ProjectionGuard();
  ProjectionGuard(const ProjectionGuard&) = delete;
  ProjectionGuard& operator=(const ProjectionGuard&) = delete;

  /// Called after each rebuild this process did (metrics, logs).
  void on_rebuilt(std::function<void(RebuildReason, const RebuildResult&)> f) {
    on_rebuilt_ = std::move(f);
  }
  void start();
  void stop();

  /// Looks once and rebuilds if needed. Ok when the projection is live and in
  /// step; unavailable while Redis or NATS cannot be reached or another
  /// process holds the rebuild lock. An empty projection over an empty log is
  /// initialised, not rebuilt.
  Status check();
  /// Rebuilds now (operator request, undecodable value) under the lock.
  Result<RebuildResult> rebuild(RebuildReason why);

  bool rebuilding() const { return rebuilding_.load(); }
  /// "" when the last check found the projection live, else why not.
  std::string problem() const;
  std::uint64_t rebuilds(RebuildReason r) const {
    return rebuilds_[static_cast<std::size_t>(r)].load();
  }
  const std::atomic<std::uint64_t>& rebuilds_counter(RebuildReason r) const {
    return rebuilds_[static_cast<std::size_t>(r)];
  }

 private:
  /// The reason to rebuild, or nullopt when the projection is fine.
  Result<std::optional<RebuildReason>> inspect();
  Result<RebuildResult> rebuild_locked(RebuildReason why);
  void set_problem(std::string p);
  void run();

  TenantProjection& projection_;
  event_store::EventStore& store_;
  SequenceWaiter& waiter_;
  GuardOptions options_;
  std::function<void(RebuildReason, const RebuildResult&)> on_rebuilt_;
  std::mutex mu_;  ///< one check / rebuild at a time in this process; guards redis_
  RedisConnection redis_;
  std::string token_;
  std::array<std::atomic<std::uint64_t>, kRebuildReasons.size()> rebuilds_{};
  std::atomic<bool> rebuilding_{false};
  mutable std::mutex problem_mu_;
  std::string problem_{"not checked yet"};
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stop_{false};
  std::thread thread_;
};

}  // namespace supaplane::projection
