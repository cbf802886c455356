#include "router_app.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>

#include <chrono>

#include "supaplane/config/config.hpp"
#include "supaplane/http/metrics.hpp"
#include "supaplane/logging/logging.hpp"

namespace supaplane::router {

namespace {
std::shared_ptr<spdlog::logger> log() {
  static auto l = logging::get("app");
  return l;
}

Result<RateLimit> parse_rate(const std::string& s, const std::string& field) {
  auto colon = s.find(':');
  try {
    if (colon == std::string::npos) throw std::invalid_argument(s);
    RateLimit r{std::stoi(s.substr(0, colon)), std::stoi(s.substr(colon + 1))};
    if (r.average <= 0 || r.burst <= 0) throw std::invalid_argument(s);
    return r;
  } catch (const std::exception&) {
    return make_error(errc::invalid_argument,
                      field + " must be <average>:<burst>, both positive (got \"" + s + "\")",
                      field);
  }
}

}  // namespace

App::App(AppOptions opts, const Clock& clock)
    : opts_(std::move(opts)), clock_(clock), projection_(opts_.redis_prefix) {}
App::~App() { stop(); }

Status App::start() {
  auto master = secrets::MasterKey::from_base64(opts_.master_key);
  if (!master)
    return make_error(errc::invalid_argument,
                      "SUPAPLANE_MASTER_KEY must be base64 of exactly 32 bytes", "master_key");
  auto previous = secrets::master_keys_from_list(opts_.master_key_previous);
  if (!previous) return previous.error();
  auto http_hp = config::parse_host_port(opts_.http_addr);
  if (!http_hp) return http_hp.error();
  auto metrics_hp = config::parse_host_port(opts_.metrics_addr);
  if (!metrics_hp) return metrics_hp.error();
  auto redis_addr = projection::parse_redis_url(opts_.redis_url);
  if (!redis_addr) return redis_addr.error();
  const std::pair<v1::Plan, const std::string*> plans[] = {
      {v1::PLAN_FREE, &opts_.ratelimit_free},
      {v1::PLAN_STARTER, &opts_.ratelimit_starter},
      {v1::PLAN_PRO, &opts_.ratelimit_pro}};
  for (auto [plan, spec] : plans) {
    auto r = parse_rate(*spec, "ratelimit_" + plan_slug(plan));
    if (!r) return r.error();
    opts_.render.rate_limits[plan] = *r;
  }
  opts_.render.entry_points.clear();
  for (std::size_t pos = 0; pos < opts_.entry_points.size();) {
    auto comma = opts_.entry_points.find(',', pos);
    if (comma == std::string::npos) comma = opts_.entry_points.size();
    if (comma > pos)
      opts_.render.entry_points.push_back(opts_.entry_points.substr(pos, comma - pos));
    pos = comma + 1;
  }
  auto gateway_pattern = EndpointPattern::compile(opts_.gateway_url_pattern, "gateway_url_pattern");
  if (!gateway_pattern) return gateway_pattern.error();
  auto db_pattern = EndpointPattern::compile(opts_.db_upstream_pattern, "db_upstream_pattern");
  if (!db_pattern) return db_pattern.error();
  if (opts_.traefik_dir.empty())
    return make_error(errc::invalid_argument, "SUPAPLANE_TRAEFIK_DIR must be set", "traefik_dir");

  if (opts_.open_secrets_max < 1)
    return make_error(errc::invalid_argument,
                      "SUPAPLANE_ROUTER_OPEN_SECRETS_MAX must be >= 1 (got " +
                          std::to_string(opts_.open_secrets_max) + ")",
                      "open_secrets_max");
  if (opts_.http_max_output_kib < 1 || opts_.http_max_connections < 1 ||
      opts_.http_header_timeout_ms < 1 || opts_.http_idle_timeout_ms < 1)
    return make_error(errc::invalid_argument,
                      "HTTP limits (max output KiB, max connections, header and idle timeouts) "
                      "must all be >= 1",
                      "http_limits");
  HttpLimits limits;
  limits.max_output_bytes = static_cast<std::size_t>(opts_.http_max_output_kib) * 1024;
  limits.max_connections = opts_.http_max_connections;
  limits.header_timeout_ms = opts_.http_header_timeout_ms;
  limits.idle_timeout_ms = opts_.http_idle_timeout_ms;

  // The HTTP server binds first: its port is our public URL by default.
  registry_ = std::make_shared<prometheus::Registry>();
  edge_ = std::make_unique<EdgeAuth>(opts_.issuer, opts_.render.base_domain, clock_);
  http_ = std::make_unique<HttpFront>(
      *edge_,
      [this]() -> std::shared_ptr<const DynamicSnapshot> {
        return synced_ ? sync_->snapshot() : nullptr;
      },
      *registry_, opts_.http_threads, limits);
  auto hp = http_->bind(http_hp->host, http_hp->port);
  if (!hp) return hp.error();
  http_port_ = *hp;
  if (opts_.public_url.empty())
    opts_.render.self_url = "http://" + http_hp->host + ":" + std::to_string(http_port_);
  else
    opts_.render.self_url = opts_.public_url;

  bool stream_ready = false;
  auto es = event_store::open_for_service(opts_.nats_url, "supaplane-router-sync",
                                          opts_.stream_replicas, &stream_ready);
  if (!es) return es.error();
  store_ = std::move(*es);
  stream_ready_ = stream_ready;
  redis_ = std::make_unique<projection::RedisConnection>(*redis_addr, projection_.scripts().all());
  keys_ = std::make_unique<keystore::KeyStore>(opts_.database_url, *master, opts_.issuer, clock_,
                                               std::move(*previous));
  dir_ = std::make_unique<TraefikDir>(opts_.traefik_dir);
  sync_ = std::make_unique<RouteSync>(
      opts_.render, *dir_, *edge_, *keys_, *redis_addr, *master,
      opts_.redis_prefix + "keys:", std::chrono::milliseconds(opts_.flush_interval_ms),
      *gateway_pattern, *db_pattern);
  LazySecrets lazy;
  lazy.open = [master = *master](const std::string& ref, std::string_view sealed) {
    return secrets::open(master, ref, sealed);
  };
  lazy.on_unopenable = [this](const std::string& ref) {
    if (sync_) sync_->reload_keys(ref);
  };
  lazy.capacity = static_cast<std::size_t>(opts_.open_secrets_max);
  edge_->set_lazy_secrets(std::move(lazy));
  projection::GuardOptions guard_options;
  guard_options.filter = "platform.tenant.>";  // what the consumer reads
  guard_ = std::make_unique<projection::ProjectionGuard>(projection_, *redis_addr, *store_, waiter_,
                                                         guard_options);
  projector_ = std::make_unique<projection::TenantProjector>(projection_, *redis_addr, waiter_,
                                                             *sync_, guard_.get());
  event_store::ConsumerOptions cons;
  // Every replica reads the whole stream with its own durable: a shared one
  // would hand each replica part of the events, and each serves from memory.
  durable_ = config::replica_durable(opts_.durable, opts_.replica_id);
  cons.durable = durable_;
  cons.filter = "platform.tenant.>";
  runner_ = std::make_unique<event_store::ConsumerRunner>(*store_, cons, *projector_);

  http_->start();
  mirror_ = std::make_unique<metrics::Mirror>(*registry_);
  const auto& k = sync_->counters();
  mirror_->counter("supaplane_router_flushes_total", "coalesced directory passes", k.flushes);
  mirror_->counter("supaplane_router_file_writes_total", "tenant files written (bytes changed)",
                   k.file_writes);
  mirror_->counter("supaplane_router_file_removes_total", "tenant files removed", k.file_removes);
  mirror_->counter("supaplane_router_file_write_errors_total",
                   "directory writes that failed (retried on the next pass)", k.write_errors);
  mirror_->counter("supaplane_router_keys_loaded_total", "tenant keys loaded from the key store",
                   k.keys_loaded);
  mirror_->counter("supaplane_router_keys_errors_total",
                   "key loads that failed (retried every second)", k.keys_errors);
  mirror_->counter("supaplane_router_refused_endpoints_total",
                   "gateway URLs / database upstreams in events that did not match the "
                   "configured pattern (not routed)",
                   k.refused_endpoints);
  mirror_->counter("supaplane_router_manifest_rejected_total",
                   "directory manifests found unreadable at start (ignored: every file read back)",
                   k.manifest_rejected);
  const auto& e = edge_->counters();
  mirror_->counter("supaplane_router_secrets_opened_total",
                   "tenants' sealed JWT secrets opened on first use (not kept opened)",
                   e.secrets_opened);
  mirror_->counter("supaplane_router_secrets_unopenable_total",
                   "stored sealed JWT secrets that did not open (keys reloaded from the key store)",
                   e.secrets_unopenable);
  mirror_->gauge("supaplane_router_secrets_open",
                 "tenants' JWT secrets held opened in memory (at most "
                 "SUPAPLANE_ROUTER_OPEN_SECRETS_MAX)",
                 [&e] { return static_cast<double>(e.secrets_cached.load()); });
  for (auto [outcome, source] :
       {std::pair{"used", &k.state_used}, std::pair{"stale", &k.state_stale},
        std::pair{"corrupt", &k.state_corrupt}})
    mirror_->counter("supaplane_router_start_render_state_total",
                     "starts that found a saved render state, by what became of it (used; stale: "
                     "another projection or options; corrupt: checksum or format)",
                     {{"outcome", outcome}}, *source);
  mirror_->gauge("supaplane_router_start_files_read_back",
                 "files the last start read back and compared (the manifest could not vouch for "
                 "them)",
                 [&k] { return static_cast<double>(k.start_read_back.load()); });
  auto& rebuilds = prometheus::BuildCounter()
                       .Name("supaplane_router_projection_rebuilds_total")
                       .Help("rebuilds of the Redis projection from the log, by reason")
                       .Register(*registry_);
  for (auto reason : projection::kRebuildReasons) rebuilds.Add({{"reason", to_string(reason)}});
  guard_->on_rebuilt([&rebuilds](projection::RebuildReason why, const projection::RebuildResult&) {
    rebuilds.Add({{"reason", to_string(why)}}).Increment();
  });
  http::export_metrics(*mirror_, "supaplane_router_http_", {}, http_->server());
  mirror_->gauge("supaplane_router_projection_checkpoint", "last stream sequence applied",
                 [this] { return static_cast<double>(waiter_.current()); });
  mirror_->gauge("supaplane_router_consumer_pending", "consumer lag (messages)", [this] {
    return runner_ ? static_cast<double>(runner_->stats().pending.load()) : 0.0;
  });
  ops_ = std::make_unique<metrics::OpsServer>(registry_, [this] { return readiness(); });
  auto mp = ops_->start(metrics_hp->host, metrics_hp->port);
  if (!mp) return mp.error();
  metrics_port_ = *mp;
  bootstrap_thread_ = std::thread([this] { bootstrap(); });
  gauges_thread_ = std::thread([this] { export_metrics(); });
  log()->info("supaplane-router-sync listening: http {}:{} metrics {}:{} dir {} durable {}",
              http_hp->host, http_port_, metrics_hp->host, metrics_port_, opts_.traefik_dir,
              durable_);
  return Status::Ok();
}

void App::bootstrap() {
  int delay_ms = 100;
  auto problem = [&](const std::string& p) {
    log()->warn("not ready, retrying: {}", p);
    std::lock_guard lk(problem_mu_);
    problem_ = p;
  };
  while (!stopping_) {
    if (!stream_ready_) {
      if (auto st = store_->verify_stream(); st)
        stream_ready_ = true;
      else
        problem("stream: " + st.error().message);
    }
    if (stream_ready_ && !synced_) {
      // No projection but events in the log is rebuilt before consuming (the
      // durable consumer resumes after its ack floor and would never replay
      // what came before); from then on the guard looks while we run.
      Result<std::string> gen = make_error(errc::unavailable, "not checked");
      if (auto st = guard_->check(); !st)
        gen = st.error();
      else
        gen = projection_.active_generation(*redis_);
      if (!gen) {
        problem("redis: " + gen.error().message);
      } else if (auto cp = projection_.checkpoint(*redis_, *gen); !cp) {
        problem("redis: " + cp.error().message);
      } else if (auto st = sync_->start(projection_, *redis_, *gen, *cp); !st) {
        problem(st.error().message);
      } else {
        waiter_.advance(*cp);
        synced_ = true;
        guard_->start();
        runner_->start();
        std::lock_guard lk(problem_mu_);
        problem_.clear();
        return;
      }
    }
    for (int w = 0; w < delay_ms && !stopping_; w += 10)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    delay_ms = std::min(delay_ms * 2, 5000);
  }
}

void App::export_metrics() {
  while (!stopping_) {
    mirror_->sync();
    for (int i = 0; i < 50 && !stopping_; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string App::readiness() {
  if (!store_ || !store_->connected()) return "event store (NATS) not connected";
  if (!stream_ready_) return "stream not ready";
  if (!synced_) {
    std::lock_guard lk(problem_mu_);
    return "not synchronised: " + problem_;
  }
  if (!runner_ || !runner_->subscribed()) return "consumer not subscribed";
  if (auto p = guard_->problem(); !p.empty()) return "projection: " + p;
  return {};
}

void App::save_render_state() {
  // Only when this process applied every event the projection holds: then
  // its routes, keys and files are the projection's at that checkpoint.
  auto gen = projection_.active_generation(*redis_);
  if (!gen) {
    log()->info("render state not saved: {}", gen.error().message);
    return;
  }
  auto cp = projection_.checkpoint(*redis_, *gen);
  if (!cp || *cp != waiter_.current()) {
    log()->info("render state not saved: the projection is not at this process's checkpoint {}",
                waiter_.current());
    return;
  }
  if (auto st = sync_->save_state(*gen, *cp); !st)
    log()->warn("render state not saved: {}", st.error().message);
  else
    log()->info("render state saved: generation {} at {}", *gen, *cp);
}

void App::stop() {
  if (stopping_.exchange(true)) return;
  if (guard_) guard_->stop();
  if (projector_) projector_->request_stop();
  if (bootstrap_thread_.joinable()) bootstrap_thread_.join();
  if (gauges_thread_.joinable()) gauges_thread_.join();
  if (runner_) runner_->stop();
  if (sync_) sync_->stop();
  if (sync_ && synced_ && redis_) save_render_state();
  if (http_) http_->stop();
  if (ops_) ops_->stop();
  runner_.reset();
  projector_.reset();
  guard_.reset();
  sync_.reset();
  store_.reset();
}

}  // namespace supaplane::router
