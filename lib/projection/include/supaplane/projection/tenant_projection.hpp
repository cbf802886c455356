#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "supaplane/core/result.hpp"
#include "supaplane/event_store/consumer.hpp"
#include "supaplane/events/decode.hpp"
#include "supaplane/projection/redis.hpp"
#include "supaplane/v1/events.pb.h"
#include "supaplane/v1/types.pb.h"

namespace supaplane::projection {

namespace v1 = ::supaplane::v1;

/// The Lua scripts of the tenants read model (one instance per process).
struct TenantScripts {
  Script apply;
  Script read;
  Script list;
  Script swap;
  TenantScripts();
  std::vector<Script*> all() { return {&apply, &read, &list, &swap}; }
};

// The stream's codec lives in lib/events; the projectors use it unqualified.
using events::decode;
using events::DecodedEvent;

/// Applies `d` to the tenant's current state `cur` (in place). Returns true
/// when `cur` changed and must be written. Shared by the live projector and
/// the rebuild so that both produce the same keys.
bool advance_tenant(const DecodedEvent& d, v1::TenantState& cur);

/// One tenant write: state after the event, with its phase before and after.
struct TenantWrite {
  std::uint64_t sequence{0};
  const v1::TenantState* state{nullptr};  ///< null: only move the checkpoint
  v1::Phase old_phase{v1::PHASE_UNSPECIFIED};
  /// Applied only if this sequence already is (0 = no condition): within a
  /// pipelined batch, a write whose predecessor failed must not move the
  /// checkpoint past it.
  std::uint64_t after{0};
};

struct ListQuery {
  enum class Source { all, owner, phase } source{Source::all};
  std::string owner;
  v1::Phase phase{v1::PHASE_UNSPECIFIED};  ///< owner source: filter
  bool exclude_deleted{true};
  std::uint64_t after{0};  ///< page cursor: created sequence of the last item seen
  int limit{50};
};
struct ListPage {
  std::vector<v1::TenantState> tenants;
  std::uint64_t next_after{0};  ///< 0 = no more pages (never a token to an empty page)
};

/// Key layout and Redis operations of the tenants read model:
/// `<base>active` → live generation g; `<base><g>:checkpoint`,
/// `<base><g>:t:<ref>` (TenantState bytes), `<base><g>:all`,
/// `<base><g>:owner:<account>`, `<base><g>:phase:<n>` (sorted sets scored by
/// created sequence). Thread-safe where it takes a connection argument.
class TenantProjection {
 public:
  explicit TenantProjection(std::string base = "sp:api:") : base_(std::move(base)) {}
  TenantScripts& scripts() { return scripts_; }
  const std::string& base() const { return base_; }

  /// Creates the generation pointer if there is none. Returns the live generation.
  Result<std::string> init(RedisConnection& c);
  Result<std::string> active_generation(RedisConnection& c);
  Result<std::uint64_t> checkpoint(RedisConnection& c, const std::string& gen);
  /// The checkpoint of `gen`, nullopt when it has none.
  Result<std::optional<std::uint64_t>> stored_checkpoint(RedisConnection& c,
                                                         const std::string& gen);
  /// The live generation's checkpoint (nullopt: no live generation or none yet).
  Result<std::optional<std::uint64_t>> live_checkpoint(RedisConnection& c);
  /// Deletes the generation pointer: readers answer UNAVAILABLE until a
  /// rebuild switches to a new generation.
  Status remove_pointer(RedisConnection& c);

  /// Reads states of `refs` from the live generation; missing → empty state.
  struct States {
    std::string gen;
    std::vector<v1::TenantState> states;
  };
  Result<States> read(RedisConnection& c, const std::vector<std::string>& refs);
  Result<std::optional<v1::TenantState>> get(RedisConnection& c, const std::string& ref);
  Result<ListPage> list(RedisConnection& c, const ListQuery& q);
  /// Every ref `gen` holds (its `all` index, in created order), for a reader
  /// that then reads the states in bulk (`state_key`, pipelined MGETs).
  Result<std::vector<std::string>> refs(RedisConnection& c, const std::string& gen);
  /// The key of one tenant's state bytes in `gen`.
  std::string state_key(const std::string& gen, const std::string& ref) const {
    return base_ + gen + ":t:" + ref;
  }

  /// Queues one atomic apply of `writes` (in order) on the pipeline of `c`.
  /// Its reply (read with `apply_results`) has one integer per write:
  /// 1 applied, 0 already applied, -1 `gen` is not live (only with
  /// `check_pointer`), -2 the write's `after` is not applied (so neither is
  /// anything after it).
  void queue_apply(RedisConnection& c, const std::string& gen, std::span<const TenantWrite> writes,
                   bool check_pointer);
  static Result<std::vector<long long>> apply_results(const redisReply* reply, std::size_t writes);
  /// Switches the pointer to `gen` if its checkpoint is at least the live
  /// one's. Returns true on switch; the previous generation in `*previous`.
  Result<bool> switch_to(RedisConnection& c, const std::string& gen, std::string* previous);
  /// Deletes every key of `gen` (SCAN + UNLINK).
  Status drop_generation(RedisConnection& c, const std::string& gen);
  /// Every key of `gen` with its value dumped as comparable text, prefix removed.
  Result<std::map<std::string, std::string>> dump(RedisConnection& c, const std::string& gen);

 private:
  std::string base_;
  TenantScripts scripts_;
};

/// Read-your-writes: waits until the projection has applied a sequence.
/// With several processes applying to one shared projection, `set_shared`
/// names how to read the shared checkpoint: a wait is then over as soon as
/// either this process or the shared projection has reached the sequence.
class SequenceWaiter {
 public:
  void advance(std::uint64_t seq);
  /// Sets the sequence, also backwards (the stream was recreated).
  void reset(std::uint64_t seq);
  std::uint64_t current() const { return seq_.load(); }
  /// True if `seq` was reached within `timeout_ms`.
  bool wait_for(std::uint64_t seq, int timeout_ms);
  /// Reads the shared checkpoint (nullopt when it cannot be read). Call before
  /// any wait_for; `every` is how often a wait looks at it.
  void set_shared(std::function<std::optional<std::uint64_t>()> read,
                  std::chrono::milliseconds every = std::chrono::milliseconds(20)) {
    shared_ = std::move(read);
    shared_every_ = every;
  }

 private:
  bool shared_reached(std::uint64_t seq);
  std::atomic<std::uint64_t> seq_{0};
  std::function<std::optional<std::uint64_t>()> shared_;
  std::chrono::milliseconds shared_every_{20};
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace supaplane::projection
