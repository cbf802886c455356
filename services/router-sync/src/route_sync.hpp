#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>

#include "edge_auth.hpp"
#include "render.hpp"
#include "supaplane/keystore/key_store.hpp"
#include "supaplane/projection/projector.hpp"
#include "supaplane/projection/redis.hpp"
#include "traefik_dir.hpp"

namespace supaplane::router {

struct SyncCounters {
  std::atomic<std::uint64_t> flushes{0};       ///< coalesced render passes
  std::atomic<std::uint64_t> file_writes{0};   ///< files written (bytes changed)
  std::atomic<std::uint64_t> file_removes{0};  ///< tenant files removed
  std::atomic<std::uint64_t> write_errors{0};
  std::atomic<std::uint64_t> keys_loaded{0};
  std::atomic<std::uint64_t> keys_errors{0};        ///< KeyStore / Redis failures (retried)
  std::atomic<std::uint64_t> refused_endpoints{0};  ///< endpoints not matching their pattern
  std::atomic<std::uint64_t> manifest_rejected{0};  ///< unreadable directory manifests ignored
  std::atomic<std::uint64_t> start_read_back{0};    ///< files the last start read and compared
  std::atomic<std::uint64_t> state_used{0};         ///< starts from the saved render state
  std::atomic<std::uint64_t> state_stale{0};    ///< saved state of another projection or options
  std::atomic<std::uint64_t> state_corrupt{0};  ///< saved state unreadable (checksum, format)
};

/// The HTTP provider's body: the whole configuration as JSON and its ETag.
struct DynamicSnapshot {
  std::string json;
  std::string etag;
};

/// Keeps routes and keys in step with the tenants projection: told of every
/// applied event (ProjectorObserver, consumer thread), it updates the
/// in-memory edge table at once and renders the Traefik directory from its
/// own thread, coalescing bursts to at most one pass per `flush_interval`.
/// Keys (level-triggered): a tenant whose applied keys generation is newer
/// than the edge's gets its old keys dropped at once and its new ones loaded
/// from the KeyStore, stored in Redis as hashes plus the sealed JWT secret.
class RouteSync final : public projection::ProjectorObserver {
 public:
  RouteSync(RenderOptions render, TraefikDir& dir, EdgeAuth& edge, keystore::KeyStore& keys,
            projection::RedisAddress redis, secrets::MasterKey master, std::string key_prefix,
            std::chrono::milliseconds flush_interval, EndpointPattern gateway_pattern,
            EndpointPattern db_pattern);
  ~RouteSync() override;

  /// Loads tenants and keys, reconciles the directory, starts the thread.
  /// Call before the consumer starts, with the live generation and its
  /// checkpoint: when the render state saved by the last clean stop was built
  /// from exactly that projection (and the same options), tenants, keys and
  /// rendered parts come from it; otherwise (none, stale, corrupt) from Redis,
  /// every tenant rendered. The directory is checked against its manifest
  /// either way.
  Status start(projection::TenantProjection& projection, projection::RedisConnection& redis,
               const std::string& generation, std::uint64_t checkpoint);
  /// Stops the thread, writes what is still pending, saves the manifest.
  void stop();
  /// After stop: saves the render state as built from `generation` at
  /// `checkpoint` (the caller checks that every event up to it was applied
  /// here). Refused when a file write is still pending.
  Status save_state(const std::string& generation, std::uint64_t checkpoint);

  void on_applied(const v1::TenantState& state, std::uint64_t seq,
                  const std::string& event_type) override;

  /// Loads the keys of `ref` again from the key store (its stored sealed
  /// secret did not open: e.g. sealed under a retired master key). Any thread.
  void reload_keys(const std::string& ref);

  /// The merged configuration as JSON (what the directory holds).
  std::shared_ptr<const DynamicSnapshot> snapshot();
  /// The merged configuration of the directory as rendered, for tests.
  nlohmann::json merged() const;
  /// Blocks until everything marked so far is on disk (tests, benchmarks).
  bool wait_flushed(std::chrono::milliseconds timeout);
  const SyncCounters& counters() const { return counters_; }
  bool started() const { return started_.load(); }

 private:
  void run();
  void flush(const std::set<std::string>& refs);
  /// The tenant's routes, with any endpoint its pattern refuses left out
  /// (the API then answers 503 from the maintenance handler), counted.
  RouteTenant checked_route(const v1::TenantState& s);
  /// Loads the keys of `ref` from the KeyStore into Redis and the edge.
  Status load_keys(const std::string& ref, std::int64_t want);
  Status drop_stored_keys(const std::string& ref);

  RenderOptions render_;
  TraefikDir& dir_;
  EdgeAuth& edge_;
  keystore::KeyStore& keys_;
  projection::RedisConnection redis_;  ///< the sync thread's own
  secrets::MasterKey master_;
  std::string key_prefix_;
  std::chrono::milliseconds interval_;
  EndpointPattern gateway_pattern_;
  EndpointPattern db_pattern_;
  SyncCounters counters_;
  std::string fingerprint_;  ///< render_fingerprint of the options and patterns

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, RouteTenant> tenants_;
  std::map<std::string, std::int64_t> keys_wanted_;  ///< ref → applied keys generation
  std::set<std::string> keys_pending_;
  std::set<std::string> keys_drop_;
  std::set<std::string> dirty_;
  std::uint64_t marked_{0}, flushed_{0};
  std::map<std::string, TenantJson> rendered_;  ///< written tenants' parts of the HTTP body
  nlohmann::json base_;
  std::uint64_t version_{0};
  std::shared_ptr<const DynamicSnapshot> snapshot_;
  std::uint64_t snapshot_version_{~0ull};
  std::atomic<bool> stop_{false};
  std::atomic<bool> started_{false};
  std::thread thread_;
};

}  // namespace supaplane::router
