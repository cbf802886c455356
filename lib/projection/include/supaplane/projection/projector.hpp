#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "supaplane/event_store/consumer.hpp"
#include "supaplane/event_store/event_store.hpp"
#include "supaplane/projection/tenant_projection.hpp"

namespace supaplane::projection {

/// Told about what the projector did (metrics, watchers, caches). Called on
/// the consumer thread; keep it quick.
class ProjectorObserver {
 public:
  virtual ~ProjectorObserver() = default;
  virtual void on_applied(const v1::TenantState& /*state*/, std::uint64_t /*seq*/,
                          const std::string& /*event_type*/) {}
  virtual void on_unknown(std::uint64_t /*seq*/) {}
  virtual void on_malformed(std::uint64_t /*seq*/, const std::string& /*subject*/) {}
  virtual void on_redis_error(const Error& /*e*/) {}
};

struct ProjectorCounters {
  std::atomic<std::uint64_t> applied{0};    ///< events written
  std::atomic<std::uint64_t> skipped{0};    ///< at or below the checkpoint (redelivery)
  std::atomic<std::uint64_t> unknown{0};    ///< event kinds this build does not know
  std::atomic<std::uint64_t> malformed{0};  ///< undecodable: terminated
  std::atomic<std::uint64_t> redis_errors{0};
  std::atomic<std::uint64_t> recoveries{0};  ///< rebuilds asked for by this projector
};

class ProjectionGuard;

/// The live projector of the tenants read model: the BatchHandler of a
/// service's consumer. One instance per consumer thread. Several processes
/// may each run one over the same Redis projection (each with its own
/// consumer of the whole stream): the checkpoint rule applies every event
/// once, and each projector still tells its observer of every tenant event
/// it reads (the state after it; or, when another process got further first,
/// the later state it read, told once per batch): a projector behind the
/// shared checkpoint keeps its in-memory views moving with its own stream.
class TenantProjector final : public event_store::BatchHandler {
 public:
  /// With `guard`, a projection found missing in Redis (data lost, FLUSHALL)
  /// or holding an undecodable value is rebuilt from the log (through the
  /// guard, so under its lock) before the projector goes on.
  TenantProjector(TenantProjection& projection, RedisAddress redis, SequenceWaiter& waiter,
                  ProjectorObserver& observer, ProjectionGuard* guard = nullptr);
  void handle(std::vector<event_store::InboundMessage>& batch) override;
  /// Asks a blocked handle() (waiting for Redis) to give up: the rest of the
  /// batch is released for redelivery.
  void request_stop() { stop_ = true; }
  const ProjectorCounters& counters() const { return counters_; }

 private:
  /// Applies batch[from..]; returns the index where it stopped (== size when
  /// done) or an error (Redis unavailable).
  Result<std::size_t> apply_from(std::vector<event_store::InboundMessage>& batch,
                                 const std::vector<DecodedEvent>& decoded, std::size_t from);
  TenantProjection& projection_;
  RedisConnection redis_;
  SequenceWaiter& waiter_;
  ProjectorObserver& observer_;
  ProjectionGuard* guard_;
  ProjectorCounters counters_;
  std::atomic<bool> stop_{false};
};

struct RebuildResult {
  std::uint64_t events{0};
  double seconds{0};
  std::uint64_t checkpoint{0};
  std::string generation;
  bool switched{false};
};

/// A fresh, unique generation name ("g" + 12 hex digits).
std::string new_generation_name();

/// Replays the stream from sequence 1 into generation `gen` (refused if it
/// is the live one); with
/// `switch_live`, catches up with the live generation, switches the pointer
/// atomically and drops the old generation.
Result<RebuildResult> rebuild_tenants(event_store::EventStore& store, RedisConnection& redis,
                                      TenantProjection& projection, const std::string& gen,
                                      bool switch_live, int catch_up_timeout_ms = 30'000,
                                      const std::string& filter = "platform.>");

}  // namespace supaplane::projection
