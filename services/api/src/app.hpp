#pragma once
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/service_type.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "accounts.hpp"
#include "limits.hpp"
#include "supaplane/auth/token.hpp"
#include "supaplane/event_store/consumer.hpp"
#include "supaplane/event_store/event_log.hpp"
#include "supaplane/event_store/event_store.hpp"
#include "supaplane/keystore/key_store.hpp"
#include "supaplane/metrics/http_server.hpp"
#include "supaplane/projection/guard.hpp"
#include "supaplane/projection/projector.hpp"
#include "supaplane/projection/tenant_projection.hpp"
#include "tenant_commands.hpp"

namespace supaplane::grpc_edge {
class Gate;
}

namespace supaplane::api {

/// Plain configuration of the api (filled by main from flags / environment).
struct ApiOptions {
  std::string nats_url{"nats://127.0.0.1:4222"};
  std::string redis_url{"redis://127.0.0.1:6379"};
  std::string database_url{"postgresql://postgres@127.0.0.1:5432/supaplane"};
  std::string grpc_addr{"127.0.0.1:50051"};
  std::string metrics_addr{"127.0.0.1:9101"};
  /// TLS on the gRPC port (PEM files); both empty = plaintext.
  std::string tls_cert;
  std::string tls_key;
  std::string jwt_secret;
  std::string base_domain{"supabase.localhost"};
  std::string admin_email;
  std::string admin_password;
  std::string projection_prefix{"sp:api:"};
  std::string durable{"api-projector"};
  /// Unique per replica ("" = the host name): each replica consumes the
  /// whole stream with its own durable `<durable>-<replica id>` and applies
  /// to the shared projection under `projection_prefix`.
  std::string replica_id;
  int stream_replicas{1};
  int read_wait_ms{5000};
  int max_message_bytes{1 << 20};
  /// Opens sealed tenant keys for GetTenantCredentials ("" = the RPC answers
  /// FAILED_PRECONDITION).
  std::string master_key;
  /// Retired master keys (comma-separated base64): still open, re-sealed on read.
  std::string master_key_previous;
  int grpc_max_pollers{64};
  /// Threads gRPC may use for this server (its resource quota).
  int grpc_max_threads{256};
  // Abuse limits (docs/operations.md, "Limits and quotas").
  /// Password hashes (argon2id, 19 MiB each) at a time; 0 = one per core.
  int auth_concurrency{0};
  /// SignUp / Login calls that may wait for a hashing slot, each up to auth_wait_ms.
  int auth_max_waiting{16};
  int auth_wait_ms{2000};
  /// SignUp + Login calls per minute per caller address (burst: the same); 0 = off.
  int auth_rate_per_address{30};
  /// SignUp + Login calls per minute per e-mail address (burst: the same); 0 = off.
  int auth_rate_per_email{10};
  /// Addresses (comma-separated) whose `x-forwarded-for` names the caller.
  std::string trusted_proxies;
  /// Tenants a customer account may have (not deleted): FREE ones, and in all.
  int quota_free_tenants{2};
  int quota_tenants{50};
  /// Open WatchTenants streams per account.
  int watch_streams_per_account{8};
};

/// Metrics of the api (names prefixed supaplane_api_).
struct ApiMetrics {
  explicit ApiMetrics(prometheus::Registry& r);
  prometheus::Family<prometheus::Counter>& commands;
  prometheus::Family<prometheus::Histogram>& command_seconds;
  prometheus::Counter& applied;
  prometheus::Counter& unknown;
  prometheus::Counter& malformed;
  prometheus::Counter& redis_errors;
  prometheus::Gauge& checkpoint;
  prometheus::Gauge& consumer_pending;
  prometheus::Gauge& watchers;
  /// Calls turned away by a limit or quota, by reason.
  prometheus::Family<prometheus::Counter>& refused;
  /// Password verifications run by Login (unknown e-mails included).
  prometheus::Counter& password_checks;
  /// Stored hashes re-made with the current argon2id parameters after a
  /// successful Login, by result (upgraded, superseded, failed).
  prometheus::Family<prometheus::Counter>& password_rehashes;
  prometheus::Family<prometheus::Counter>& rebuilds;
};

/// The projector's durable consumer name for `o`: `<durable>-<replica id>`,
/// with the replica id (the host name when unset) reduced to the characters a
/// consumer name may hold.
std::string projector_durable(const ApiOptions& o);

/// A change to a tenant, fanned out to WatchTenants streams.
struct Change {
  v1::TenantState state;
  std::uint64_t sequence{0};
  std::string event_type;
};

/// In-process fan-out of projection changes to watchers. Thread-safe.
class ChangeHub {
 public:
  class Subscription {
   public:
    /// Waits up to `timeout_ms` for the next change; false on timeout / close.
    bool next(Change* out, int timeout_ms);
    bool overflowed() const { return overflowed_; }

   private:
    friend class ChangeHub;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Change> q_;
    bool closed_{false};
    std::atomic<bool> overflowed_{false};
    std::string owner_;
  };
  /// Changes of tenants owned by `owner` ("" = every change).
  std::shared_ptr<Subscription> subscribe(std::string owner = {});
  void unsubscribe(const std::shared_ptr<Subscription>& s);
  void publish(const Change& c);
  void close_all();
  std::size_t size();

 private:
  std::mutex mu_;
  std::vector<std::shared_ptr<Subscription>> subs_;
};

/// Everything the gRPC services use; owned by ApiApp.
struct ApiContext {
  const ApiOptions& options;
  event_store::EventStore& store;
  projection::TenantProjection& projection;
  projection::RedisPool& redis;
  projection::SequenceWaiter& waiter;
  TenantCommands& commands;
  AccountStore& accounts;
  auth::TokenService& tokens;
  ChangeHub& hub;
  ApiMetrics& metrics;
  projection::ProjectionGuard& guard;
  keystore::KeyStore* keys;  ///< null without a master key
  const Clock& clock;
  std::atomic<bool>& shutting_down;
  Limits& limits;
  /// Bearer tokens, the admin and owner checks; refusals counted in `refused`.
  const grpc_edge::Gate& gate;
};

/// Composition root of supaplane-api: builds in dependency order, keeps
/// retrying dependencies in the background (not ready until they answer),
/// stops in reverse.
class ApiApp final : public projection::ProjectorObserver {
 public:
  explicit ApiApp(ApiOptions opts, const Clock& clock = SystemClock::instance());
  ~ApiApp() override;
  /// Fails only on configuration errors or an incompatible stream.
  Status start();
  void stop();
  int grpc_port() const { return grpc_port_; }
  int metrics_port() const { return metrics_port_; }
  /// "" when ready, else why not.
  std::string readiness();
  projection::TenantProjector& projector() { return *projector_; }
  projection::SequenceWaiter& waiter() { return waiter_; }
  projection::ProjectionGuard& guard() { return *guard_; }
  event_store::ConsumerRunner& runner() { return *runner_; }

  // ProjectorObserver
  void on_applied(const v1::TenantState& state, std::uint64_t seq,
                  const std::string& event_type) override;
  void on_unknown(std::uint64_t seq) override;
  void on_malformed(std::uint64_t seq, const std::string& subject) override;
  void on_redis_error(const Error& e) override;

 private:
  void bootstrap();
  ApiOptions opts_;
  const Clock& clock_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<ApiMetrics> metrics_;
  std::unique_ptr<event_store::EventStore> store_;
  std::unique_ptr<event_store::JetStreamLog> log_;  ///< `store_` as the write path sees it
  projection::TenantProjection projection_;
  std::unique_ptr<projection::RedisPool> redis_;
  projection::SequenceWaiter waiter_;
  StateCache cache_;
  std::unique_ptr<TenantCommands> commands_;
  std::unique_ptr<AccountStore> accounts_;
  std::unique_ptr<auth::TokenService> tokens_;
  std::unique_ptr<grpc_edge::Gate> gate_;
  std::unique_ptr<keystore::KeyStore> keys_;
  ChangeHub hub_;
  std::unique_ptr<Limits> limits_;
  std::unique_ptr<projection::ProjectionGuard> guard_;
  std::unique_ptr<ApiContext> ctx_;
  std::unique_ptr<projection::RedisPool> checkpoint_redis_;
  std::unique_ptr<projection::TenantProjector> projector_;
  std::unique_ptr<event_store::ConsumerRunner> runner_;
  std::vector<std::unique_ptr<grpc::Service>> services_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<metrics::OpsServer> ops_;
  std::thread bootstrap_thread_;
  std::thread gauges_thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> stream_ready_{false};
  std::atomic<bool> redis_ready_{false};
  std::atomic<bool> accounts_ready_{false};
  std::atomic<bool> runner_started_{false};
  std::string stream_problem_;
  std::string admin_problem_;  ///< why the configured admin account is not ready
  std::mutex mu_;
  int grpc_port_{0};
  int metrics_port_{0};
};

}  // namespace supaplane::api
