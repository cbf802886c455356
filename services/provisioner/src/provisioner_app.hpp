#pragma once
#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "provisioner.hpp"
#include "supaplane/driver/driver.hpp"
#include "supaplane/event_store/consumer.hpp"
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
  std::string issuer{"supaplane"};
  int stream_replicas{1};
  int resync_interval_ms{60'000};
  ProvisionerOptions provisioner;
};

/// Composition root of supaplane-provisioner: builds in dependency order,
/// retries dependencies in the background, stops in reverse.
class App {
 public:
  explicit App(AppOptions opts, const Clock& clock = SystemClock::instance());
  /// With a driver of the caller's (benchmarks): `opts.driver` and the
  /// driver settings are then not used.
  App(AppOptions opts, const Clock& clock, std::unique_ptr<driver::Driver> driver);
  ~App();
  Status start();
  void stop();
  std::string readiness();
  int metrics_port() const { return metrics_port_; }
  Provisioner& provisioner() { return *provisioner_; }
  KeyStore& keys() { return *keys_; }

 private:
  void bootstrap();
  void background();
  Status make_driver();
  AppOptions opts_;
  const Clock& clock_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<event_store::EventStore> store_;
  std::unique_ptr<driver::Driver> driver_;
  std::unique_ptr<KeyStore> keys_;
  std::unique_ptr<Provisioner> provisioner_;
  std::unique_ptr<event_store::ConsumerRunner> runner_;
  std::unique_ptr<metrics::Mirror> mirror_;  ///< registered in start, synced by background
  std::unique_ptr<metrics::OpsServer> ops_;
  std::thread bootstrap_thread_;
  std::thread background_thread_;
  std::thread watch_thread_;  ///< docker driver: the daemon's event stream
  std::atomic<bool> stopping_{false};
  std::atomic<bool> stream_ready_{false};
  std::atomic<bool> keys_ready_{false};
  std::atomic<bool> driver_ready_{false};
  bool rotating_master_key_{false};
  void reseal_tenant_keys();
  int metrics_port_{0};
};

}  // namespace supaplane::provisioner
