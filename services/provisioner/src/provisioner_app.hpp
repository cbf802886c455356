#pragma once
#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "lease.hpp"
#include "provisioner.hpp"
#include "supaplane/driver/driver.hpp"
#include "supaplane/event_store/consumer.hpp"
#include "supaplane/event_store/event_log.hpp"
#include "supaplane/event_store/event_store.hpp"
#include "supaplane/keystore/key_store.hpp"
#include "supaplane/metrics/http_server.hpp"
#include "supaplane/metrics/mirror.hpp"

namespace supaplane::provisioner {

/// Plain configuration of the provisioner (filled by main).
struct AppOptions {
  std::string nats_url{"nats://127.0.0.1:4222"};
  std::string database_url{"postgresql://postgres@127.0.0.1:5432/supaplane"};  ///< platform (keys)
  std::string tenant_db_url{"postgresql://postgres@127.0.0.1:5432/postgres"};  ///< tenant cluster
  std::string master_key;  ///< base64 of 32 bytes
  /// Retired master keys (comma-separated base64): every row sealed with one
  /// is re-sealed with master_key at start.
  std::string master_key_previous;
  std::string driver{"postgres"};  ///< postgres | docker
  std::string gateway_url_template{"http://{ref}.gateway.internal:8000"};
  std::string tenant_db_public_host;  ///< postgres driver: host in connection strings
  int tenant_db_public_port{0};       ///< postgres driver: port in connection strings
  std::string docker_host{"unix:///var/run/docker.sock"};  ///< docker driver
  std::string stack_spec;                                  ///< docker driver: the stack spec file
  std::string registry_auth_file;  ///< docker driver: config.json with registry auths
  std::string edge_network{"supaplane-edge"};
  int db_edge_port{5432};
  std::string base_domain{"supabase.localhost"};
  std::string tenant_db_mode{"database"};      ///< database | schema
  std::string tenant_schema_db{"supabase"};    ///< schema mode: the central database
  std::string authenticator{"authenticator"};  ///< schema mode: PostgREST's role
  int tenant_db_connect_timeout_s{5};          ///< postgres driver: admin connections
  int tenant_db_statement_timeout_ms{30'000};  ///< postgres driver: per admin statement
  int tenant_db_lock_timeout_ms{5'000};        ///< postgres driver: per lock wait
  int tenant_db_connection_reserve{20};        ///< postgres driver: max_connections never promised
  std::string metrics_addr{"127.0.0.1:9102"};
  std::string durable{"provisioner"};
  /// This replica's name in the lease key (default: the host name).
  std::string replica_id;
  /// The key-value bucket of the leader lease (made by the admin step, with
  /// the lease TTL as its MaxAge).
  std::string lease_bucket{"supaplane-leases"};
  std::string issuer{"supaplane"};
  int stream_replicas{1};
  int resync_interval_ms{60'000};
  ProvisionerOptions provisioner;
};

/// Seams for tests: wrap the driver or the lease store the app built (to
/// count calls, or cut one replica off the lease key).
struct AppHooks {
  std::function<std::unique_ptr<driver::Driver>(std::unique_ptr<driver::Driver>)> wrap_driver{};
  std::function<std::unique_ptr<LeaseStore>(std::unique_ptr<LeaseStore>)> wrap_lease_store{};
};

/// This replica's id: `opts.replica_id`, else the host name; characters
/// other than letters, digits, '-' and '_' become '_'.
std::string replica_id(const AppOptions& opts);

/// Composition root of supaplane-provisioner: builds in dependency order,
/// retries dependencies in the background, stops in reverse. Of several
/// replicas only the holder of the lease consumes and converges; the others
/// stand by (ready) and take over when its lease expires.
class App {
 public:
  explicit App(AppOptions opts, const Clock& clock = SystemClock::instance(), AppHooks hooks = {});
  /// With a driver of the caller's (benchmarks): `opts.driver` and the
  /// driver settings are then not used.
  App(AppOptions opts, const Clock& clock, std::unique_ptr<driver::Driver> driver);
  ~App();
  Status start();
  void stop();
  std::string readiness();
  int metrics_port() const { return metrics_port_; }
  Provisioner& provisioner() { return *provisioner_; }
  /// This replica consumes and converges (it holds the lease).
  bool leading() const { return active_.load(); }
  const std::string& id() const { return id_; }
  KeyStore& keys() { return *keys_; }

 private:
  void bootstrap();
  void background();
  /// The lease thread: ticks the lease and starts / stops the consumer as
  /// this replica becomes leader or stops being it.
  void lease_loop();
  void become_leader();
  void become_standby();
  Status make_driver();
  AppOptions opts_;
  const Clock& clock_;
  AppHooks hooks_;
  std::string id_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<event_store::EventStore> store_;
  std::unique_ptr<event_store::JetStreamLog> log_;
  std::unique_ptr<keystore::KeyStoreSecrets>
      secrets_;  ///< `keys_` as the provisioner sees it  ///< `store_` as the provisioner sees it
  std::unique_ptr<driver::Driver> driver_;  ///< what the provisioner calls (maybe wrapped)
  driver::Driver* base_driver_{nullptr};    ///< the driver built from the options
  std::unique_ptr<KeyStore> keys_;
  std::unique_ptr<Provisioner> provisioner_;
  std::unique_ptr<event_store::ConsumerRunner> runner_;
  std::unique_ptr<metrics::Mirror> mirror_;  ///< registered in start, synced by background
  std::unique_ptr<metrics::OpsServer> ops_;
  std::thread bootstrap_thread_;
  std::thread background_thread_;
  std::thread watch_thread_;  ///< docker driver: the daemon's event stream
  std::thread lease_thread_;
  LeaseCounters lease_counters_;
  std::unique_ptr<LeaseStore> lease_store_;
  std::unique_ptr<Lease> lease_;          ///< built by bootstrap once the bucket is there
  std::atomic<bool> lease_ready_{false};  ///< lease_ is built
  std::atomic<bool> active_{false};       ///< consumer running, resyncs on (lease thread writes)
  std::atomic<bool> resync_now_{false};
  /// The provisioner's view of the lease: not leading until it is built.
  class Gate final : public Leadership {
   public:
    explicit Gate(const App& app) : app_(app) {}
    bool leading() const override { return app_.lease_ready_ && app_.lease_->leading(); }

   private:
    const App& app_;
  };
  Gate leadership_{*this};
  std::mutex problem_mu_;
  std::string lease_problem_{"lease bucket not checked yet"};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> stream_ready_{false};
  std::atomic<bool> keys_ready_{false};
  std::atomic<bool> driver_ready_{false};
  bool rotating_master_key_{false};
  void reseal_tenant_keys();
  int metrics_port_{0};
};

}  // namespace supaplane::provisioner
