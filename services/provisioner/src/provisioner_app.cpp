#include "provisioner_app.hpp"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>

#include "supaplane/config/config.hpp"
#include "supaplane/driver/docker_driver.hpp"
#include "supaplane/driver/postgres_driver.hpp"
#include "supaplane/logging/logging.hpp"

namespace supaplane::provisioner {

namespace {
std::shared_ptr<spdlog::logger> log() {
  static auto l = logging::get("app");
  return l;
}
}  // namespace

std::string replica_id(const AppOptions& o) {
  std::string id = o.replica_id;
  if (id.empty()) {
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) == 0) id = host;
  }
  if (id.empty()) id = "provisioner-" + std::to_string(::getpid());
  for (char& c : id)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') c = '_';
  return id;
}

App::App(AppOptions opts, const Clock& clock, std::unique_ptr<driver::Driver> driver)
    : opts_(std::move(opts)), clock_(clock), id_(replica_id(opts_)), driver_(std::move(driver)) {}
App::App(AppOptions opts, const Clock& clock, AppHooks hooks)
    : opts_(std::move(opts)), clock_(clock), hooks_(std::move(hooks)), id_(replica_id(opts_)) {}
App::~App() { stop(); }

Status App::make_driver() {
  if (opts_.driver == "postgres") {
    auto mode = driver::parse_postgres_mode(opts_.tenant_db_mode);
    if (!mode) return mode.error();
    driver::PostgresDriverOptions dopts;
    dopts.admin_dsn = opts_.tenant_db_url;
    dopts.gateway_url_template = opts_.gateway_url_template;
    dopts.mode = *mode;
    dopts.central_database = opts_.tenant_schema_db;
    dopts.authenticator_role = opts_.authenticator;
    dopts.public_host = opts_.tenant_db_public_host;
    dopts.public_port = opts_.tenant_db_public_port;
    if (opts_.tenant_db_connect_timeout_s < 1)
      return make_error(errc::invalid_argument,
                        "SUPAPLANE_TENANT_DB_CONNECT_TIMEOUT_S must be at least 1",
                        "tenant_db_connect_timeout_s");
    if (opts_.tenant_db_statement_timeout_ms < 0 || opts_.tenant_db_lock_timeout_ms < 0)
      return make_error(errc::invalid_argument,
                        "SUPAPLANE_TENANT_DB_STATEMENT_TIMEOUT_MS and _LOCK_TIMEOUT_MS must be "
                        "0 (no limit) or more",
                        "tenant_db_statement_timeout_ms");
    if (opts_.tenant_db_connection_reserve < 0)
      return make_error(errc::invalid_argument,
                        "SUPAPLANE_TENANT_DB_CONNECTION_RESERVE must be 0 or more",
                        "tenant_db_connection_reserve");
    dopts.connect_timeout_s = opts_.tenant_db_connect_timeout_s;
    dopts.statement_timeout_ms = opts_.tenant_db_statement_timeout_ms;
    dopts.lock_timeout_ms = opts_.tenant_db_lock_timeout_ms;
    dopts.connection_reserve = opts_.tenant_db_connection_reserve;
    driver_ = std::make_unique<driver::PostgresDriver>(std::move(dopts));
    return Status::Ok();
  }
  if (opts_.driver == "docker") {
    if (opts_.stack_spec.empty())
      return make_error(errc::invalid_argument,
                        "SUPAPLANE_DRIVER=docker needs SUPAPLANE_STACK_SPEC (a stack spec file, "
                        "e.g. deploy/stacks/supabase.yaml)",
                        "stack_spec");
    auto spec = driver::load_stack_spec(opts_.stack_spec);
    if (!spec) return spec.error();
    if (opts_.db_edge_port < 1 || opts_.db_edge_port > 65535)
      return make_error(errc::invalid_argument, "SUPAPLANE_DB_EDGE_PORT must be 1-65535",
                        "db_edge_port");
    driver::DockerDriverOptions dopts;
    dopts.docker_host = opts_.docker_host;
    dopts.registry_auth_file = opts_.registry_auth_file;
    dopts.spec = std::move(*spec);
    dopts.base_domain = opts_.base_domain;
    dopts.jwt_issuer = opts_.issuer;
    dopts.edge_network = opts_.edge_network;
    dopts.db_edge_port = opts_.db_edge_port;
    driver_ = std::make_unique<driver::DockerDriver>(std::move(dopts));
    return Status::Ok();
  }
  return make_error(errc::invalid_argument,
                    "SUPAPLANE_DRIVER must be postgres or docker, not '" + opts_.driver + "'",
                    "driver");
}

Status App::start() {
  auto master = secrets::MasterKey::from_base64(opts_.master_key);
  if (!master)
    return make_error(errc::invalid_argument,
                      "SUPAPLANE_MASTER_KEY must be base64 of exactly 32 bytes", "master_key");
  auto previous = secrets::master_keys_from_list(opts_.master_key_previous);
  if (!previous) return previous.error();
  rotating_master_key_ = !previous->empty();
  if (!driver_)
    if (auto st = make_driver(); !st) return st;
  base_driver_ = driver_.get();
  if (hooks_.wrap_driver) driver_ = hooks_.wrap_driver(std::move(driver_));
  auto metrics_hp = config::parse_host_port(opts_.metrics_addr);
  if (!metrics_hp) return metrics_hp.error();

  registry_ = std::make_shared<prometheus::Registry>();
  bool stream_ready = false;
  auto es = event_store::open_for_service(opts_.nats_url, "supaplane-provisioner",
                                          opts_.stream_replicas, &stream_ready);
  if (!es) return es.error();
  store_ = std::move(*es);
  stream_ready_ = stream_ready;
  keys_ = std::make_unique<KeyStore>(opts_.database_url, *master, opts_.issuer, clock_,
                                     std::move(*previous));
  // Leadership is the lease itself, built once its bucket is there: until
  // then `this` answers "not leading".
  log_ = std::make_unique<event_store::JetStreamLog>(*store_);
  secrets_ = std::make_unique<keystore::KeyStoreSecrets>(*keys_);
  provisioner_ = std::make_unique<Provisioner>(*log_, *driver_, *secrets_, clock_,
                                               opts_.provisioner, &leadership_);
  event_store::ConsumerOptions cons;
  cons.durable = opts_.durable;
  cons.filter = "platform.tenant.>";
  cons.batch = 64;
  cons.max_deliveries = 100;  // the periodic resync is the last resort after that
  cons.ack_wait_ms = 120'000;
  runner_ = std::make_unique<event_store::ConsumerRunner>(*store_, cons, *provisioner_);

  mirror_ = std::make_unique<metrics::Mirror>(*registry_);
  const auto& k = provisioner_->counters();
  mirror_->counter("supaplane_provisioner_actions_total",
                   "driver actions that succeeded and were recorded", k.actions);
  mirror_->counter("supaplane_provisioner_failed_total", "tenants that went FAILED after retries",
                   k.failures);
  mirror_->counter("supaplane_provisioner_driver_retries_total",
                   "driver attempts that failed and were retried", k.retries);
  mirror_->counter("supaplane_provisioner_conflicts_total",
                   "appends that lost their race to a newer event (read again, decided again)",
                   k.conflicts);
  mirror_->counter("supaplane_provisioner_drift_total",
                   "DriftDetected events appended by the resync", k.drift);
  mirror_->counter("supaplane_provisioner_deferred_total",
                   "converges deferred because the tenant cluster was unreachable", k.unavailable);
  mirror_->counter("supaplane_provisioner_health_changes_total",
                   "StackHealthChanged events appended", k.health_changes);
  mirror_->counter("supaplane_provisioner_resyncs_total",
                   "resync passes finished (one replay of the tenant subjects each)", k.resyncs);
  mirror_->counter("supaplane_provisioner_resync_events_total",
                   "events folded by the resync replays", k.resync_events);
  mirror_->counter("supaplane_provisioner_history_reads_total",
                   "single-tenant history reads (converges and driver kicks)", k.history_reads);
  mirror_->gauge("supaplane_provisioner_resync_tenants", "tenants looked at by the last resync",
                 [t = &k.resync_tenants] { return static_cast<double>(t->load()); });
  mirror_->gauge("supaplane_provisioner_resync_seconds", "duration of the last resync",
                 [t = &k.resync_ms] { return static_cast<double>(t->load()) / 1000.0; });
  mirror_->gauge("supaplane_provisioner_leader",
                 "1 while this replica holds the lease (consumes and converges), 0 on standby",
                 [this] { return active_.load() ? 1.0 : 0.0; });
  mirror_->counter("supaplane_provisioner_lease_acquired_total",
                   "times this replica took the lease (at start, or over from a dead leader)",
                   lease_counters_.acquired);
  mirror_->counter("supaplane_provisioner_lease_lost_total",
                   "times this replica stopped leading without releasing the lease (renewals "
                   "failed for half the TTL, or another replica wrote the key)",
                   lease_counters_.lost);
  mirror_->counter("supaplane_provisioner_lease_renew_failures_total",
                   "lease renewals that did not go through", lease_counters_.renew_failures);
  mirror_->counter("supaplane_provisioner_not_leader_total",
                   "converge steps given up because this replica did not hold the lease at "
                   "that moment",
                   k.not_leading);
  mirror_->gauge("supaplane_provisioner_starting_stacks",
                 "stacks started and not serving yet (no worker waits for them)",
                 [starting = &k.starting] { return static_cast<double>(starting->load()); });
  if (auto* pgd = dynamic_cast<driver::PostgresDriver*>(base_driver_)) {
    const auto& pc = pgd->counters();
    mirror_->counter("supaplane_provisioner_tenant_db_timeouts_total",
                     "tenant cluster statements ended by the statement or lock timeout",
                     pc.timeouts);
    mirror_->counter("supaplane_provisioner_connection_budget_refusals_total",
                     "converges refused: the tenant's connection limit exceeds the cluster's "
                     "budget",
                     pc.budget_refusals);
    mirror_->gauge("supaplane_provisioner_connection_budget",
                   "max_connections minus the reserve, at the last budget check",
                   [p = &pc.budget] { return static_cast<double>(p->load()); });
    mirror_->gauge("supaplane_provisioner_connections_promised",
                   "tenants' connection limits summed, at the last budget check",
                   [p = &pc.promised] { return static_cast<double>(p->load()); });
  }
  if (auto* dd = dynamic_cast<driver::DockerDriver*>(base_driver_)) {
    const auto& dc = dd->counters();
    mirror_->counter("supaplane_provisioner_on_healthy_runs_total",
                     "on_healthy commands of the stack spec that exited 0", dc.on_healthy_runs);
    mirror_->counter("supaplane_provisioner_on_healthy_failures_total",
                     "on_healthy commands that exited non-zero or were lost (run again at the "
                     "next converge step)",
                     dc.on_healthy_failures);
  }
  ops_ = std::make_unique<metrics::OpsServer>(registry_, [this] { return readiness(); });
  auto mp = ops_->start(metrics_hp->host, metrics_hp->port);
  if (!mp) return mp.error();
  metrics_port_ = *mp;
  bootstrap_thread_ = std::thread([this] { bootstrap(); });
  background_thread_ = std::thread([this] { background(); });
  if (auto* docker = dynamic_cast<driver::DockerDriver*>(base_driver_)) {
    watch_thread_ = std::thread([this, docker] {
      docker->watch([this](const std::string& ref) { provisioner_->kick(ref); }, stopping_);
    });
  }
  log()->info("supaplane-provisioner started: driver {} metrics {}:{}", driver_->name(),
              metrics_hp->host, metrics_port_);
  return Status::Ok();
}

void App::reseal_tenant_keys() {
  // Rows read meanwhile are re-sealed on read; this catches the rest.
  auto r = keys_->reseal_all();
  if (!r) {
    log()->warn("tenant keys not re-sealed with the new master key yet: {}", r.error().message);
    return;
  }
  log()->info("master key rotation: {} tenant secrets re-sealed, {} already current, {} unreadable",
              r->resealed, r->current, r->unreadable);
  if (r->unreadable > 0)
    log()->error(
        "{} tenant secrets open with no configured master key (SUPAPLANE_MASTER_KEY, "
        "SUPAPLANE_MASTER_KEY_PREVIOUS); their tenants cannot converge",
        r->unreadable);
}

void App::bootstrap() {
  int delay_ms = 100;
  while (!stopping_) {
    if (!stream_ready_ && store_->verify_stream()) stream_ready_ = true;
    if (!keys_ready_ && keys_->migrate()) {
      keys_ready_ = true;
      if (rotating_master_key_) reseal_tenant_keys();
    }
    if (!driver_ready_) {
      auto* docker = dynamic_cast<driver::DockerDriver*>(base_driver_);
      if (!docker) {
        driver_ready_ = true;
      } else if (auto st = docker->connect(); st) {
        driver_ready_ = true;
      } else {
        log()->warn("docker daemon not ready: {}", st.error().message);
      }
    }
    if (stream_ready_ && !lease_ready_) {
      auto bucket = event_store::KvBucket::open(*store_, opts_.lease_bucket);
      if (bucket) {
        LeaseOptions lo;
        lo.holder = id_;
        lo.ttl_ms = bucket->ttl_ms();
        // A write that has not answered within a quarter of the TTL is given
        // up, so a renewal is retried before the lease's validity (TTL/2) ends.
        const int timeout_ms = static_cast<int>(std::max<std::int64_t>(100, lo.ttl_ms / 4));
        lease_store_ =
            std::make_unique<KvLeaseStore>(std::move(*bucket), "provisioner", timeout_ms);
        if (hooks_.wrap_lease_store)
          lease_store_ = hooks_.wrap_lease_store(std::move(lease_store_));
        lease_ = std::make_unique<Lease>(*lease_store_, SteadyMonotonicClock::instance(), lo,
                                         &lease_counters_);
        lease_ready_ = true;
        log()->info("replica {}: lease bucket {} (ttl {} ms)", id_, opts_.lease_bucket, lo.ttl_ms);
      } else {
        std::lock_guard lk(problem_mu_);
        const std::string problem = "lease bucket: " + bucket.error().message;
        if (problem != lease_problem_) log()->warn("{}", problem);  // once per new problem
        lease_problem_ = problem;
      }
    }
    if (stream_ready_ && keys_ready_ && driver_ready_ && lease_ready_) {
      lease_thread_ = std::thread([this] { lease_loop(); });
      return;
    }
    for (int w = 0; w < delay_ms && !stopping_; w += 10)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    delay_ms = std::min(delay_ms * 2, 5000);
  }
}

void App::background() {
  // The first resync runs as soon as the provisioner is ready: after a crash
  // it converges what was in flight at once (messages the dead process held
  // come back only after the consumer's ack wait).
  auto next_resync = std::chrono::steady_clock::now();
  auto next_poll = std::chrono::steady_clock::now();
  while (!stopping_) {
    mirror_->sync();
    // Backstop for the driver's events: starting stacks are looked at again
    // every second (a converge step is a few cheap daemon calls).
    if (std::chrono::steady_clock::now() >= next_poll && active_ && readiness().empty()) {
      provisioner_->poll_starting();
      next_poll = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    }
    // A replica that just took the lease resyncs at once: it finishes what
    // a dead leader left half done (its messages come back only after the
    // consumer's ack wait).
    if (resync_now_.exchange(false)) next_resync = std::chrono::steady_clock::now();
    if (opts_.resync_interval_ms > 0 && std::chrono::steady_clock::now() >= next_resync &&
        active_ && readiness().empty()) {
      auto r = provisioner_->resync();
      if (!r) log()->warn("resync: {}", r.error().message);
      next_resync =
          std::chrono::steady_clock::now() + std::chrono::milliseconds(opts_.resync_interval_ms);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

std::string App::readiness() {
  if (!store_ || !store_->connected()) return "event store (NATS) not connected";
  if (!stream_ready_) return "stream not ready";
  if (!keys_ready_) return "platform database (keys) not ready";
  if (!driver_ready_) return "driver not ready (docker daemon unreachable)";
  if (auto* docker = dynamic_cast<driver::DockerDriver*>(base_driver_);
      docker && !docker->client().reachable())
    return "docker daemon unreachable";
  if (!lease_ready_) {
    std::lock_guard lk(problem_mu_);
    return lease_problem_;
  }
  if (!lease_->known()) return "lease not read yet: " + lease_->last_error();
  if (active_) {
    if (!runner_ || !runner_->subscribed()) return "consumer not subscribed";
  } else if (auto e = lease_->last_error(); !e.empty()) {
    return "standby cannot read the lease: " + e;
  }
  return {};
}

void App::become_leader() {
  log()->info("replica {} leads: consuming {} and resyncing every tenant", id_, opts_.durable);
  active_ = true;
  resync_now_ = true;
  runner_->start();
}

void App::become_standby() {
  log()->warn("replica {} stands by (lease held by '{}')", id_, lease_->seen_holder());
  active_ = false;
  // The batch in hand finishes at once: its converges stop before their
  // next step and its messages are released for the next leader.
  runner_->stop();
  provisioner_->forget_starting();
}

void App::lease_loop() {
  const std::int64_t step_ms = std::clamp<std::int64_t>(lease_->options().ttl_ms / 50, 10, 100);
  while (!stopping_) {
    lease_->tick();
    const bool lead = lease_->leading();
    if (lead && !active_) become_leader();
    if (!lead && active_) become_standby();
    std::this_thread::sleep_for(std::chrono::milliseconds(step_ms));
  }
}

void App::stop() {
  if (stopping_.exchange(true)) return;
  if (provisioner_) provisioner_->request_stop();
  if (bootstrap_thread_.joinable()) bootstrap_thread_.join();
  if (background_thread_.joinable()) background_thread_.join();
  if (watch_thread_.joinable()) watch_thread_.join();
  if (lease_thread_.joinable()) lease_thread_.join();
  if (runner_) runner_->stop();
  active_ = false;
  // Nothing converges any more: free the lease so a standby takes over at
  // its next look instead of after the TTL.
  if (lease_) lease_->release();
  if (ops_) ops_->stop();
  runner_.reset();
  provisioner_.reset();
  store_.reset();
}

}  // namespace supaplane::provisioner
