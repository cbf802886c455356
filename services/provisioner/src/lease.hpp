#pragma once
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

#include "supaplane/core/result.hpp"
#include "supaplane/event_store/kv.hpp"

namespace supaplane::provisioner {

/// Milliseconds on a clock that never jumps (not wall time); injected so
/// tests drive it.
class MonotonicClock {
 public:
  virtual ~MonotonicClock() = default;
  virtual std::int64_t now_ms() const = 0;
};

/// std::chrono::steady_clock.
class SteadyMonotonicClock final : public MonotonicClock {
 public:
  std::int64_t now_ms() const override;
  static const SteadyMonotonicClock& instance();
};

/// What the lease key holds: `holder` empty when nobody holds it (never
/// written, expired, released or deleted); `revision` is what a write must
/// expect (0 when the key holds no message at all).
struct LeaseRecord {
  std::string holder{};
  std::uint64_t revision{0};
};

/// The one key a lease lives in. Implementations: `KvLeaseStore` (a
/// JetStream key-value bucket whose TTL frees a key nobody rewrites);
/// tests fake it.
class LeaseStore {
 public:
  virtual ~LeaseStore() = default;
  virtual Result<LeaseRecord> read() = 0;
  /// Writes `holder` ("" releases) if the key is still at `expected_revision`;
  /// `conflict` when someone else wrote first, `unavailable` when it is not
  /// known whether the write happened.
  virtual Result<std::uint64_t> write(const std::string& holder,
                                      std::uint64_t expected_revision) = 0;
};

/// Says whether this replica may act now. Thread-safe.
class Leadership {
 public:
  virtual ~Leadership() = default;
  virtual bool leading() const = 0;
};

/// A lease key in a JetStream key-value bucket.
class KvLeaseStore final : public LeaseStore {
 public:
  KvLeaseStore(event_store::KvBucket bucket, std::string key, int timeout_ms)
      : bucket_(std::move(bucket)), key_(std::move(key)), timeout_ms_(timeout_ms) {}
  Result<LeaseRecord> read() override;
  Result<std::uint64_t> write(const std::string& holder, std::uint64_t expected_revision) override;

 private:
  event_store::KvBucket bucket_;
  std::string key_;
  int timeout_ms_;
};

struct LeaseOptions {
  std::string holder;  ///< this replica's id (never empty)
  /// The key's TTL on the server (the bucket's MaxAge): a holder that stops
  /// writing loses the key this long after its last write.
  std::int64_t ttl_ms{15'000};
};

struct LeaseCounters {
  std::atomic<std::uint64_t> acquired{0};        ///< times this replica took the lease
  std::atomic<std::uint64_t> lost{0};            ///< times it stopped leading without releasing
  std::atomic<std::uint64_t> renew_failures{0};  ///< renewals that did not go through
};

/// One replica's side of a leader lease. The holder renews every TTL/3 with
/// a compare-and-set on the key's revision and counts itself leader only
/// until (start of its last successful write) + TTL/2 on its own monotonic
/// clock: the server can only free the key TTL after that write arrived, so
/// a holder cut off from NATS stops leading at least TTL/2 before anyone
/// else can take over. A standby reads the key every TTL/5 and takes it
/// once it is free. `tick` is called from one thread; `leading` from any.
class Lease final : public Leadership {
 public:
  /// `counters`: where to count (e.g. the app's, registered as metrics
  /// before the lease exists); null = the lease's own.
  Lease(LeaseStore& store, const MonotonicClock& clock, LeaseOptions opts,
        LeaseCounters* counters = nullptr);
  /// Does what is due now: renew (leader) or look at the key and take it if
  /// free (standby); steps down when the validity ran out or a renewal lost
  /// the race. Cheap when nothing is due.
  void tick();
  /// Leader and within the validity of the last successful write.
  bool leading() const override;
  /// Frees the key at once if this replica holds it (clean shutdown: a
  /// standby takes over at its next look instead of after the TTL).
  void release();
  /// The holder seen at the last look ("" when free or not looked yet).
  std::string seen_holder() const;
  /// The last error talking to the store ("" after a success).
  std::string last_error() const;
  /// True once the key was read or written at least once.
  bool known() const { return known_.load(); }
  const LeaseCounters& counters() const { return counters_; }
  const LeaseOptions& options() const { return opts_; }

 private:
  void step_down(const char* why);
  LeaseStore& store_;
  const MonotonicClock& clock_;
  LeaseOptions opts_;
  LeaseCounters own_counters_;
  LeaseCounters& counters_;
  bool holding_{false};  ///< tick thread only
  std::uint64_t revision_{0};
  std::int64_t next_due_ms_{0};
  std::atomic<std::int64_t> valid_until_ms_{0};  ///< 0: not leading
  std::atomic<bool> known_{false};
  mutable std::mutex mu_;  ///< seen_holder_, last_error_
  std::string seen_holder_;
  std::string last_error_;
};

}  // namespace supaplane::provisioner
