#include "app.hpp"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <unistd.h>

#include <cctype>
#include <chrono>

#include "grpc_services.hpp"
#include "supaplane/auth/password.hpp"
#include "supaplane/config/config.hpp"
#include "supaplane/core/ids.hpp"
#include "supaplane/grpc_edge/edge.hpp"
#include "supaplane/logging/logging.hpp"
#include "supaplane/tls/tls.hpp"

namespace supaplane::api {

namespace {
std::shared_ptr<spdlog::logger> log() {
  static auto l = logging::get("app");
  return l;
}
}  // namespace

ApiMetrics::ApiMetrics(prometheus::Registry& r)
    : commands(prometheus::BuildCounter()
                   .Name("supaplane_api_calls_total")
                   .Help("gRPC calls by method and status code")
                   .Register(r)),
      command_seconds(prometheus::BuildHistogram()
                          .Name("supaplane_api_call_duration_seconds")
                          .Help("gRPC call latency by method")
                          .Register(r)),
      applied(prometheus::BuildCounter()
                  .Name("supaplane_api_projection_applied_total")
                  .Help("events applied to the api projection")
                  .Register(r)
                  .Add({})),
      unknown(prometheus::BuildCounter()
                  .Name("supaplane_api_projection_unknown_events_total")
                  .Help("events of kinds this build does not know (skipped)")
                  .Register(r)
                  .Add({})),
      malformed(prometheus::BuildCounter()
                    .Name("supaplane_api_projection_malformed_total")
                    .Help("undecodable messages terminated by the projector")
                    .Register(r)
                    .Add({})),
      redis_errors(prometheus::BuildCounter()
                       .Name("supaplane_api_projection_redis_errors_total")
                       .Help("failed projection writes (retried in place)")
                       .Register(r)
                       .Add({})),
      checkpoint(prometheus::BuildGauge()
                     .Name("supaplane_api_projection_checkpoint")
                     .Help("stream sequence the projection has applied")
                     .Register(r)
                     .Add({})),
      consumer_pending(prometheus::BuildGauge()
                           .Name("supaplane_api_consumer_pending_messages")
                           .Help("messages the projector's durable consumer has not received yet")
                           .Register(r)
                           .Add({})),
      watchers(prometheus::BuildGauge()
                   .Name("supaplane_api_watchers")
                   .Help("open WatchTenants streams")
                   .Register(r)
                   .Add({})),
      refused(prometheus::BuildCounter()
                  .Name("supaplane_api_refused_total")
                  .Help("calls turned away by a rate limit, concurrency limit or quota, by reason")
                  .Register(r)),
      password_checks(prometheus::BuildCounter()
                          .Name("supaplane_api_password_checks_total")
                          .Help("password verifications run by Login (unknown e-mails included)")
                          .Register(r)
                          .Add({})),
      password_rehashes(prometheus::BuildCounter()
                            .Name("supaplane_api_password_rehashes_total")
                            .Help("stored password hashes re-made with the current argon2id "
                                  "parameters after a successful Login, by result")
                            .Register(r)),
      rebuilds(prometheus::BuildCounter()
                   .Name("supaplane_api_projection_rebuilds_total")
                   .Help("rebuilds of the Redis projection from the log done by this replica, "
                         "by reason")
                   .Register(r)) {
  for (auto reason : projection::kRebuildReasons) rebuilds.Add({{"reason", to_string(reason)}});
  for (const char* result : {"upgraded", "superseded", "failed"})
    password_rehashes.Add({{"result", result}});
}

std::string projector_durable(const ApiOptions& o) {
  return config::replica_durable(o.durable, o.replica_id);
}

bool ChangeHub::Subscription::next(Change* out, int timeout_ms) {
  std::unique_lock lk(mu_);
  if (!cv_.wait_for(lk, std::chrono::milliseconds(timeout_ms),
                    [&] { return !q_.empty() || closed_; }))
    return false;
  if (q_.empty()) return false;
  *out = std::move(q_.front());
  q_.pop_front();
  return true;
}

std::shared_ptr<ChangeHub::Subscription> ChangeHub::subscribe(std::string owner) {
  auto s = std::make_shared<Subscription>();
  s->owner_ = std::move(owner);
  std::lock_guard lk(mu_);
  subs_.push_back(s);
  return s;
}

void ChangeHub::unsubscribe(const std::shared_ptr<Subscription>& s) {
  std::lock_guard lk(mu_);
  std::erase(subs_, s);
}

void ChangeHub::publish(const Change& c) {
  constexpr std::size_t kMaxQueued = 10'000;
  std::lock_guard lk(mu_);
  for (auto& s : subs_) {
    if (!s->owner_.empty() && s->owner_ != c.state.owner_account_id()) continue;
    std::lock_guard sl(s->mu_);
    if (s->closed_) continue;
    if (s->q_.size() >= kMaxQueued) {
      s->overflowed_ = true;
      s->closed_ = true;
    } else {
      s->q_.push_back(c);
    }
    s->cv_.notify_one();
  }
}

void ChangeHub::close_all() {
  std::lock_guard lk(mu_);
  for (auto& s : subs_) {
    std::lock_guard sl(s->mu_);
    s->closed_ = true;
    s->cv_.notify_all();
  }
}

std::size_t ChangeHub::size() {
  std::lock_guard lk(mu_);
  return subs_.size();
}

ApiApp::ApiApp(ApiOptions opts, const Clock& clock)
    : opts_(std::move(opts)), clock_(clock), projection_(opts_.projection_prefix) {}

ApiApp::~ApiApp() { stop(); }

Status ApiApp::start() {
  if (opts_.jwt_secret.size() < 32)
    return make_error(errc::invalid_argument,
                      "SUPAPLANE_JWT_SECRET must be set to at least 32 bytes", "jwt_secret");
  if (!opts_.admin_email.empty() || !opts_.admin_password.empty()) {
    if (auto st = auth::validate_email(normalize_email(opts_.admin_email)); !st)
      return make_error(errc::invalid_argument, "SUPAPLANE_ADMIN_EMAIL is not a valid address",
                        "admin_email");
    if (auto st = auth::validate_password(opts_.admin_password); !st)
      return make_error(errc::invalid_argument, "SUPAPLANE_ADMIN_PASSWORD must be 8..128 bytes",
                        "admin_password");
  }
  auto redis_addr = projection::parse_redis_url(opts_.redis_url);
  if (!redis_addr) return redis_addr.error();
  auto grpc_hp = config::parse_host_port(opts_.grpc_addr);
  if (!grpc_hp) return grpc_hp.error();
  auto metrics_hp = config::parse_host_port(opts_.metrics_addr);
  if (!metrics_hp) return metrics_hp.error();
  const tls::ServerFiles tls_files{opts_.tls_cert, opts_.tls_key};
  auto grpc_creds = tls::server_credentials(tls_files);
  if (!grpc_creds) return grpc_creds.error();

  registry_ = std::make_shared<prometheus::Registry>();
  metrics_ = std::make_unique<ApiMetrics>(*registry_);

  bool stream_ready = false;
  auto es = event_store::open_for_service(opts_.nats_url, "supaplane-api", opts_.stream_replicas,
                                          &stream_ready);
  if (!es) return es.error();
  store_ = std::move(*es);
  stream_ready_ = stream_ready;

  redis_ = std::make_unique<projection::RedisPool>(*redis_addr, projection_.scripts().all());
  log_ = std::make_unique<event_store::JetStreamLog>(*store_);
  commands_ = std::make_unique<TenantCommands>(*log_, projection_, *redis_, cache_, clock_);
  accounts_ = std::make_unique<AccountStore>(opts_.database_url);
  tokens_ = std::make_unique<auth::TokenService>(opts_.jwt_secret, clock_);
  gate_ = std::make_unique<grpc_edge::Gate>(*tokens_, &metrics_->refused);
  if (!opts_.master_key.empty()) {
    auto master = secrets::MasterKey::from_base64(opts_.master_key);
    if (!master)
      return make_error(errc::invalid_argument,
                        "SUPAPLANE_MASTER_KEY must be base64 of exactly 32 bytes", "master_key");
    auto previous = secrets::master_keys_from_list(opts_.master_key_previous);
    if (!previous) return previous.error();
    keys_ = std::make_unique<keystore::KeyStore>(opts_.database_url, *master, "supaplane", clock_,
                                                 std::move(*previous));
  }
  limits_ =
      std::make_unique<Limits>(opts_.auth_concurrency, opts_.auth_max_waiting, opts_.auth_wait_ms,
                               opts_.auth_rate_per_address, opts_.auth_rate_per_email,
                               opts_.trusted_proxies, opts_.watch_streams_per_account, clock_);
  guard_ =
      std::make_unique<projection::ProjectionGuard>(projection_, *redis_addr, *store_, waiter_);
  guard_->on_rebuilt([this](projection::RebuildReason why, const projection::RebuildResult&) {
    metrics_->rebuilds.Add({{"reason", to_string(why)}}).Increment();
  });
  // min_sequence reads end as soon as the shared projection has the
  // sequence, whichever replica applied it.
  checkpoint_redis_ =
      std::make_unique<projection::RedisPool>(*redis_addr, projection_.scripts().all(), 4);
  waiter_.set_shared([this]() -> std::optional<std::uint64_t> {
    auto lease = checkpoint_redis_->acquire();
    auto cp = projection_.live_checkpoint(*lease);
    if (!cp) return std::nullopt;
    return *cp;
  });
  ctx_ = std::make_unique<ApiContext>(
      ApiContext{opts_, *store_, projection_, *redis_, waiter_, *commands_, *accounts_, *tokens_,
                 hub_, *metrics_, *guard_, keys_.get(), clock_, stopping_, *limits_, *gate_});
  projector_ = std::make_unique<projection::TenantProjector>(projection_, *redis_addr, waiter_,
                                                             *this, guard_.get());
  event_store::ConsumerOptions cons;
  cons.durable = projector_durable(opts_);
  runner_ = std::make_unique<event_store::ConsumerRunner>(*store_, cons, *projector_);

  services_.push_back(make_account_service(*ctx_));
  services_.push_back(make_tenant_service(*ctx_));
  services_.push_back(make_admin_service(*ctx_));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  tls::exclusive_server(builder, opts_.grpc_max_threads, "supaplane-api");
  builder.AddListeningPort(opts_.grpc_addr, *grpc_creds, &grpc_port_);
  builder.SetMaxReceiveMessageSize(opts_.max_message_bytes);
  // Handlers block on a JetStream round trip; with gRPC's default of at most
  // two idle pollers the sync server creates and destroys a thread for
  // nearly every call under concurrency. Keep a pool of idle pollers instead.
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MIN_POLLERS, 4);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS,
                              opts_.grpc_max_pollers);
  for (auto& s : services_) builder.RegisterService(s.get());
  server_ = builder.BuildAndStart();
  if (!server_ || grpc_port_ == 0)
    return make_error(errc::unavailable,
                      "cannot listen for gRPC on " + opts_.grpc_addr + " (address in use?)");

  ops_ = std::make_unique<metrics::OpsServer>(registry_, [this] { return readiness(); });
  auto mp = ops_->start(metrics_hp->host, metrics_hp->port);
  if (!mp) return mp.error();
  metrics_port_ = *mp;

  bootstrap_thread_ = std::thread([this] { bootstrap(); });
  gauges_thread_ = std::thread([this] {
    while (!stopping_) {
      metrics_->checkpoint.Set(static_cast<double>(waiter_.current()));
      if (runner_)
        metrics_->consumer_pending.Set(static_cast<double>(runner_->stats().pending.load()));
      for (int i = 0; i < 50 && !stopping_; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  log()->info("supaplane-api listening: grpc {}:{} ({}) metrics {}:{}", grpc_hp->host, grpc_port_,
              tls::mode_name(tls_files), metrics_hp->host, metrics_port_);
  return Status::Ok();
}

void ApiApp::bootstrap() {
  int delay_ms = 100;
  auto sleep = [&] {
    for (int w = 0; w < delay_ms && !stopping_; w += 10)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    delay_ms = std::min(delay_ms * 2, 5000);
  };
  bool admin_done = opts_.admin_email.empty() || opts_.admin_password.empty();
  while (!stopping_) {
    if (!stream_ready_) {
      auto st = store_->verify_stream();
      if (st) {
        stream_ready_ = true;
      } else {
        std::lock_guard lk(mu_);
        stream_problem_ = st.error().message;
        if (st.error().code == errc::incompatible) log()->error("{}", st.error().message);
      }
    }
    if (!redis_ready_ && stream_ready_) {
      // No projection in Redis but events in the log (Redis lost its data
      // while we were down) is rebuilt before consuming: the durable consumer
      // resumes after its ack floor and would never replay them. From then
      // on the guard looks every interval while the api runs.
      if (auto st = guard_->check(); st) {
        redis_ready_ = true;
        guard_->start();
      } else {
        log()->warn("redis not ready: {}", st.error().message);
      }
    }
    if (!accounts_ready_) {
      if (accounts_->migrate() && (!keys_ || keys_->migrate()))
        accounts_ready_ = true;
      else
        log()->warn("accounts database not ready; retrying");
    }
    if (accounts_ready_ && stream_ready_ && !admin_done) {
      auto hash = auth::hash_password(opts_.admin_password);
      if (hash) {
        auto row = accounts_->ensure_admin(
            normalize_email(opts_.admin_email), *hash, [&](const AccountRow& a) {
              v1::Actor actor;
              actor.set_kind(v1::ACTOR_KIND_SYSTEM);
              actor.set_id("api");
              return append_account_created(*store_, a, actor, clock_.now_unix_ms());
            });
        if (row) {
          admin_done = true;
          log()->info("admin account ready account={}", row->id);
          std::lock_guard lk(mu_);
          admin_problem_.clear();
        } else {
          std::lock_guard lk(mu_);
          if (admin_problem_ != row.error().message) log()->error("{}", row.error().message);
          admin_problem_ = row.error().message;
        }
      }
    }
    if (stream_ready_ && redis_ready_ && !runner_started_) {
      runner_->start();
      runner_started_ = true;
    }
    if (stream_ready_ && redis_ready_ && accounts_ready_ && admin_done) return;
    sleep();
  }
}

std::string ApiApp::readiness() {
  if (!store_ || !store_->connected()) return "event store (NATS) not connected";
  if (!stream_ready_) {
    std::lock_guard lk(mu_);
    return "stream not ready: " + stream_problem_;
  }
  if (!redis_ready_) return "redis projection not initialised";
  {
    auto lease = redis_->acquire();
    auto r = lease->command({"PING"});
    if (!r) return "redis: " + r.error().message;
  }
  if (auto p = guard_->problem(); !p.empty()) return "redis projection: " + p;
  if (!accounts_ready_) return "accounts database not ready";
  {
    std::lock_guard lk(mu_);
    if (!admin_problem_.empty()) return "admin account: " + admin_problem_;
  }
  if (auto st = accounts_->ping(); !st) return "accounts database: " + st.error().message;
  if (!runner_ || !runner_->subscribed()) return "projector not subscribed";
  return {};
}

void ApiApp::on_applied(const v1::TenantState& state, std::uint64_t seq,
                        const std::string& event_type) {
  metrics_->applied.Increment();
  cache_.put_if_newer(state);
  if (hub_.size() > 0) hub_.publish(Change{state, seq, event_type});
}

void ApiApp::on_unknown(std::uint64_t) { metrics_->unknown.Increment(); }
void ApiApp::on_malformed(std::uint64_t, const std::string&) { metrics_->malformed.Increment(); }
void ApiApp::on_redis_error(const Error&) { metrics_->redis_errors.Increment(); }

void ApiApp::stop() {
  if (stopping_.exchange(true)) return;
  hub_.close_all();
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (bootstrap_thread_.joinable()) bootstrap_thread_.join();
  if (guard_) guard_->stop();
  if (projector_) projector_->request_stop();
  if (runner_) runner_->stop();
  if (gauges_thread_.joinable()) gauges_thread_.join();
  if (ops_) ops_->stop();
  server_.reset();
  // The event store goes before the command side it calls back into.
  runner_.reset();
  projector_.reset();
  guard_.reset();
  store_.reset();
}

}  // namespace supaplane::api
