#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "supaplane/core/result.hpp"
#include "supaplane/event_store/event_store.hpp"

namespace supaplane::event_store {

/// Settings of the key-value bucket that holds leases (docs/operations.md).
struct KvBucketSettings {
  std::string name{"supaplane-leases"};
  /// The bucket's MaxAge: a key not written again for this long disappears
  /// (a lease whose holder died frees itself after it).
  std::int64_t ttl_ms{15'000};
  int replicas{1};
};

/// The latest message of one key. `revision` is 0 when the key holds nothing
/// at all (never written, or expired); a key deleted by hand keeps the
/// revision of its delete marker, with `deleted` set and an empty value.
struct KvEntry {
  std::string value{};
  std::uint64_t revision{0};
  bool deleted{false};
};

/// One JetStream key-value bucket (the stream `KV_<name>`), bound to an
/// `EventStore`'s connection. Reads go through the stream's message-get API
/// and writes are publishes with an expected last subject sequence, so a
/// lost race is told apart from a timeout (`conflict` vs `unavailable`),
/// which cnats' kvStore_Update does not report. Thread-safe.
class KvBucket {
 public:
  /// Binds to an existing bucket: `not_found` naming the admin step when it
  /// is missing, `incompatible` when it has no TTL (a key would never expire).
  static Result<KvBucket> open(EventStore& store, const std::string& name);

  Result<KvEntry> get(const std::string& key) const;
  /// Writes `value` if the key's latest revision is still `expected_revision`
  /// (0: the key holds nothing). `conflict` when another writer came first;
  /// `unavailable` when NATS did not answer within `timeout_ms` (the write
  /// may or may not have happened).
  Result<std::uint64_t> put_if(const std::string& key, std::string_view value,
                               std::uint64_t expected_revision, int timeout_ms) const;

  const std::string& name() const { return name_; }
  /// The bucket's MaxAge as the server has it.
  std::int64_t ttl_ms() const { return ttl_ms_; }

 private:
  KvBucket(EventStore& store, std::string name, std::int64_t ttl_ms)
      : store_(&store), name_(std::move(name)), ttl_ms_(ttl_ms) {}
  EventStore* store_;
  std::string name_;
  std::int64_t ttl_ms_{0};
};

/// The stream behind bucket `name`.
std::string kv_stream_name(const std::string& name);

/// The admin step (`supaplanectl admin init-stream`): creates the bucket
/// (history 1, file storage, MaxAge = `ttl_ms`), or checks an existing one,
/// setting in place a different TTL or history (listed in `*changed`).
/// Needs a NATS user allowed to create streams.
Status create_or_verify_kv_bucket(EventStore& store, const KvBucketSettings& settings,
                                  bool* created = nullptr,
                                  std::vector<std::string>* changed = nullptr);

}  // namespace supaplane::event_store
