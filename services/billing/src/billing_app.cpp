#include "billing_app.hpp"

#include <grpcpp/grpcpp.h>
#include <httplib.h>
#include <sys/socket.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>

#include "checkout.hpp"
#include "supaplane/config/config.hpp"
#include "supaplane/logging/logging.hpp"
#include "supaplane/tls/tls.hpp"

namespace supaplane::billing {

namespace {
std::shared_ptr<spdlog::logger> log() {
  static auto l = logging::get("app");
  return l;
}

std::string json_error(const std::string& message) {
  std::string out = "{\"error\":\"";
  for (char c : message) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) out += c;
  }
  return out + "\"}\n";
}

// Set on the threads that run a connection only to refuse it (queue full).
thread_local bool t_refusing = false;
// Requests seen on this thread's current connection (0 at its end: it never
// sent a whole head in time, or left).
thread_local int t_requests = 0;

/// httplib's task queue for the webhook server: `threads` handler threads
/// and at most `max_queued` connections waiting for one. A connection beyond
/// that goes to one refusing thread (its own queue bounded the same), which
/// reads the head and answers 503 at once; past both, the accepting thread
/// refuses it itself. httplib's own ThreadPool queues without a bound.
class BoundedTaskQueue : public httplib::TaskQueue {
 public:
  BoundedTaskQueue(std::size_t threads, std::size_t max_queued, BillingMetrics& m)
      : max_queued_(max_queued), metrics_(m) {
    for (std::size_t i = 0; i < threads; ++i) workers_.emplace_back([this] { work(jobs_, false); });
    workers_.emplace_back([this] { work(refusals_, true); });
  }
  ~BoundedTaskQueue() override { shutdown(); }

  void enqueue(std::function<void()> fn) override {
    {
      std::lock_guard lk(mu_);
      if (!shutdown_ && jobs_.size() < max_queued_) {
        jobs_.push_back(std::move(fn));
        metrics_.http_queued.Increment();
        cv_.notify_all();
        return;
      }
      if (!shutdown_ && refusals_.size() < max_queued_) {
        refusals_.push_back(std::move(fn));
        cv_.notify_all();
        return;
      }
    }
    run(fn, true);
  }

  void shutdown() override {
    {
      std::lock_guard lk(mu_);
      if (shutdown_) return;
      shutdown_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }

 private:
  void run(std::function<void()>& fn, bool refusing) {
    t_refusing = refusing;
    t_requests = 0;
    fn();
    if (t_requests == 0) metrics_.http_incomplete.Increment();
    t_refusing = false;
  }
  void work(std::deque<std::function<void()>>& q, bool refusing) {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock lk(mu_);
        cv_.wait(lk, [&] { return shutdown_ || !q.empty(); });
        if (q.empty()) return;  // shut down and drained
        fn = std::move(q.front());
        q.pop_front();
        if (!refusing) metrics_.http_queued.Decrement();
      }
      if (!refusing) metrics_.http_busy.Increment();
      run(fn, refusing);
      if (!refusing) metrics_.http_busy.Decrement();
    }
  }
  const std::size_t max_queued_;
  BillingMetrics& metrics_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::deque<std::function<void()>> refusals_;
  bool shutdown_{false};
  std::vector<std::thread> workers_;
};
}  // namespace

BillingMetrics::BillingMetrics(prometheus::Registry& r)
    : webhooks(prometheus::BuildCounter()
                   .Name("supaplane_billing_webhooks_total")
                   .Help("Stripe webhook requests by HTTP status answered")
                   .Register(r)),
      rejected(prometheus::BuildCounter()
                   .Name("supaplane_billing_signature_rejected_total")
                   .Help("webhooks refused for their Stripe-Signature, by reason")
                   .Register(r)),
      ignored(prometheus::BuildCounter()
                  .Name("supaplane_billing_ignored_events_total")
                  .Help("verified Stripe events of types billing does not act on")
                  .Register(r)
                  .Add({})),
      duplicates(prometheus::BuildCounter()
                     .Name("supaplane_billing_duplicate_events_total")
                     .Help("Stripe events delivered again (answered 200, not recorded twice)")
                     .Register(r)
                     .Add({})),
      recorded(prometheus::BuildCounter()
                   .Name("supaplane_billing_recorded_events_total")
                   .Help("Stripe events recorded on platform.billing.<customer>")
                   .Register(r)
                   .Add({})),
      unavailable(prometheus::BuildCounter()
                      .Name("supaplane_billing_unavailable_total")
                      .Help("webhooks answered 503 because the event log was unavailable")
                      .Register(r)
                      .Add({})),
      http_refused(prometheus::BuildCounter()
                       .Name("supaplane_billing_http_refused_total")
                       .Help("webhook connections answered 503: every handler thread busy and "
                             "the queue full")
                       .Register(r)
                       .Add({})),
      http_incomplete(prometheus::BuildCounter()
                          .Name("supaplane_billing_http_incomplete_connections_total")
                          .Help("webhook connections closed before a whole request arrived "
                                "(read timeout, or the client left)")
                          .Register(r)
                          .Add({})),
      http_queued(prometheus::BuildGauge()
                      .Name("supaplane_billing_http_queued_connections")
                      .Help("accepted webhook connections waiting for a handler thread")
                      .Register(r)
                      .Add({})),
      http_busy(prometheus::BuildGauge()
                    .Name("supaplane_billing_http_busy_threads")
                    .Help("webhook handler threads serving a connection")
                    .Register(r)
                    .Add({})),
      rebuilds(prometheus::BuildCounter()
                   .Name("supaplane_billing_projection_rebuilds_total")
                   .Help("rebuilds of the Redis projection from the log, by reason")
                   .Register(r)),
      grpc_refused(prometheus::BuildCounter()
                       .Name("supaplane_billing_grpc_refused_total")
                       .Help("BillingService calls refused at the edge, by reason")
                       .Register(r)) {
  for (auto reason : projection::kRebuildReasons) rebuilds.Add({{"reason", to_string(reason)}});
  for (auto reason : {"unauthenticated", "not_owner"}) grpc_refused.Add({{"reason", reason}});
}

App::App(AppOptions opts, const Clock& clock) : opts_(std::move(opts)), clock_(clock) {}
App::~App() { stop(); }

Status App::start() {
  const auto secrets = split_list(opts_.webhook_secrets);
  if (secrets.empty() && !opts_.skip_signature_check_for_benchmark)
    return make_error(errc::invalid_argument,
                      "SUPAPLANE_STRIPE_WEBHOOK_SECRET is required (the endpoint's whsec_... "
                      "secret; a comma-separated list while rolling it)",
                      "webhook_secret");
  if (opts_.tolerance_seconds <= 0)
    return make_error(errc::invalid_argument, "tolerance must be > 0 seconds", "tolerance");
  if (opts_.grace_failed_attempts < 1)
    return make_error(errc::invalid_argument, "grace attempts must be >= 1", "grace");
  if (opts_.max_body_bytes < 1024 || opts_.http_threads < 1 || opts_.http_queue < 1 ||
      opts_.http_read_timeout_ms < 1)
    return make_error(errc::invalid_argument,
                      "max body >= 1024 bytes, >= 1 HTTP thread, an HTTP queue >= 1 and a read "
                      "timeout >= 1 ms");
  if (!opts_.stripe_secret_key.empty() && opts_.jwt_secret.size() < 32)
    return make_error(
        errc::invalid_argument,
        "checkout needs SUPAPLANE_JWT_SECRET (>= 32 bytes, the api's) to check callers",
        "jwt_secret");
  auto http_hp = config::parse_host_port(opts_.http_addr);
  if (!http_hp) return http_hp.error();
  auto metrics_hp = config::parse_host_port(opts_.metrics_addr);
  if (!metrics_hp) return metrics_hp.error();
  auto grpc_hp = config::parse_host_port(opts_.grpc_addr);
  if (!grpc_hp) return grpc_hp.error();
  const tls::ServerFiles tls_files{opts_.tls_cert, opts_.tls_key};
  auto grpc_creds = tls::server_credentials(tls_files);
  if (!grpc_creds) return grpc_creds.error();
  auto redis_addr = projection::parse_redis_url(opts_.redis_url);
  if (!redis_addr) return redis_addr.error();
  if (!opts_.price_starter.empty()) prices_[opts_.price_starter] = v1::PLAN_STARTER;
  if (!opts_.price_pro.empty()) prices_[opts_.price_pro] = v1::PLAN_PRO;

  registry_ = std::make_shared<prometheus::Registry>();
  metrics_ = std::make_unique<BillingMetrics>(*registry_);
  verifier_ = std::make_unique<SignatureVerifier>(secrets, opts_.tolerance_seconds);
  bool stream_ready = false;
  auto es = event_store::open_for_service(opts_.nats_url, "supaplane-billing",
                                          opts_.stream_replicas, &stream_ready);
  if (!es) return es.error();
  store_ = std::move(*es);
  stream_ready_ = stream_ready;
  log_ = std::make_unique<event_store::JetStreamLog>(*store_);
  processor_ = std::make_unique<Processor>(*log_, clock_, GracePolicy{opts_.grace_failed_attempts});
  projector_ = std::make_unique<BillingProjector>(*redis_addr, opts_.projection_prefix, *store_);
  projector_->on_rebuilt([this](projection::RebuildReason why, std::uint64_t) {
    metrics_->rebuilds.Add({{"reason", to_string(why)}}).Increment();
  });
  event_store::ConsumerOptions cons;
  cons.durable = opts_.durable;
  cons.filter = std::string(kBillingPrefix) + ">";
  cons.batch = 256;
  runner_ = std::make_unique<event_store::ConsumerRunner>(*store_, cons, *projector_);
  redis_pool_ =
      std::make_unique<projection::RedisPool>(*redis_addr, std::vector<projection::Script*>{}, 4);

  // Checkout over gRPC (answers FAILED_PRECONDITION when not configured).
  std::unique_ptr<StripeClient> client;
  std::unique_ptr<auth::TokenService> tokens;
  if (!opts_.stripe_secret_key.empty()) {
    CheckoutOptions co;
    co.secret_key = opts_.stripe_secret_key;
    co.api_base = opts_.stripe_api_base;
    co.prices = {{v1::PLAN_STARTER, opts_.price_starter}, {v1::PLAN_PRO, opts_.price_pro}};
    co.success_url = opts_.checkout_success_url;
    co.cancel_url = opts_.checkout_cancel_url;
    client = std::make_unique<StripeClient>(std::move(co));
    tokens = std::make_unique<auth::TokenService>(opts_.jwt_secret, clock_);
  }
  reader_ = std::make_unique<BillingReader>(*redis_pool_, opts_.projection_prefix);
  checkout_ = std::make_unique<CheckoutService>(
      std::move(client), std::move(tokens), *store_, reader_.get(),
      GracePolicy{opts_.grace_failed_attempts}, &metrics_->grpc_refused);
  grpc::ServerBuilder gb;
  tls::exclusive_server(gb, 64, "supaplane-billing");
  gb.AddListeningPort(grpc_hp->host + ":" + std::to_string(grpc_hp->port), *grpc_creds,
                      &grpc_port_);
  gb.RegisterService(checkout_.get());
  grpc_ = gb.BuildAndStart();
  if (!grpc_ || grpc_port_ == 0)
    return make_error(errc::unavailable,
                      "cannot listen (gRPC) on " + opts_.grpc_addr + " (address in use?)");

  // The webhook endpoint. cpp-httplib: a blocking thread pool suits a handler
  // that waits for the JetStream ack; the body limit answers 413 by itself.
  http_ = std::make_unique<httplib::Server>();
  const auto threads = static_cast<std::size_t>(opts_.http_threads);
  const auto queue = static_cast<std::size_t>(opts_.http_queue);
  http_->new_task_queue = [this, threads, queue] {
    return new BoundedTaskQueue(threads, queue, *metrics_);
  };
  // httplib's default listener options set SO_REUSEPORT: another process
  // could bind the same port and take a share of Stripe's deliveries. Only
  // SO_REUSEADDR (restart while old connections are in TIME_WAIT).
  http_->set_socket_options([](socket_t sock) {
    const int one = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  });
  // Each read, write and keep-alive wait is bounded, so a client that stops
  // sending gives its handler thread back after this long.
  const auto io_timeout = std::chrono::milliseconds(opts_.http_read_timeout_ms);
  http_->set_read_timeout(io_timeout);
  http_->set_write_timeout(io_timeout);
  http_->set_keep_alive_timeout(std::max<time_t>(1, opts_.http_read_timeout_ms / 1000));
  http_->set_payload_max_length(static_cast<std::size_t>(opts_.max_body_bytes));
  http_->set_keep_alive_max_count(1000);
  // Without it the answer's header and body writes meet Nagle + delayed ACK:
  // ~40 ms per request on a keep-alive connection (measured by the benchmark).
  http_->set_tcp_nodelay(true);
  // Before any body byte is read: the limit above covers only bodies with a
  // Content-Length; a chunked or length-less body would be read whole, and a
  // compressed one inflated, before the handler could refuse it. Stripe
  // always sends an uncompressed body with a Content-Length.
  http_->set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    using R = httplib::Server::HandlerResponse;
    ++t_requests;
    if (t_refusing) {
      metrics_->http_refused.Increment();
      metrics_->webhooks.Add({{"code", "503"}}).Increment();
      res.status = 503;
      res.set_header("Retry-After", "1");
      res.set_header("Connection", "close");
      res.set_content(json_error("busy; retry later"), "application/json");
      return R::Handled;
    }
    if (req.method != "POST") return R::Unhandled;
    auto refuse = [&](int code, const char* why) {
      metrics_->webhooks.Add({{"code", std::to_string(code)}}).Increment();
      res.status = code;
      res.set_content(json_error(why), "application/json");
      return R::Handled;
    };
    if (req.has_header("Transfer-Encoding"))
      return refuse(411, "a Content-Length is required (no Transfer-Encoding)");
    if (req.has_header("Content-Encoding"))
      return refuse(415, "compressed bodies are not accepted");
    if (!req.has_header("Content-Length")) return refuse(411, "a Content-Length is required");
    const std::string len = req.get_header_value("Content-Length");
    if (len.empty() || len.size() > 19 || len.find_first_not_of("0123456789") != std::string::npos)
      return refuse(400, "malformed Content-Length");
    return R::Unhandled;  // over the limit: httplib's own 413 (set_payload_max_length)
  });
  http_->Post("/stripe/webhook", [this](const httplib::Request& req, httplib::Response& res) {
    std::string answer;
    on_webhook(req.get_header_value("Stripe-Signature"), req.body, res.status, answer);
    res.set_content(answer, "application/json");
  });
  http_->set_error_handler([this](const httplib::Request&, httplib::Response& res) {
    // Called for every answer >= 400; only httplib's own 413 (body over
    // the limit, refused before the route runs) has no body yet.
    if (res.status == 413 && res.body.empty()) {
      metrics_->webhooks.Add({{"code", "413"}}).Increment();
      res.set_content(json_error("body larger than the limit"), "application/json");
    }
  });
  int bound = http_hp->port;
  if (bound == 0) {
    bound = http_->bind_to_any_port(http_hp->host);
  } else if (!http_->bind_to_port(http_hp->host, bound)) {
    bound = -1;
  }
  if (bound <= 0)
    return make_error(errc::unavailable,
                      "cannot listen on " + opts_.http_addr +
                          " (the address is in use by another process, or not local)",
                      "http_addr");
  http_port_ = bound;
  http_thread_ = std::thread([this] { http_->listen_after_bind(); });

  ops_ = std::make_unique<metrics::OpsServer>(registry_, [this] { return readiness(); });
  auto mp = ops_->start(metrics_hp->host, metrics_hp->port);
  if (!mp) return mp.error();
  metrics_port_ = *mp;
  bootstrap_thread_ = std::thread([this] { bootstrap(); });
  log()->info(
      "supaplane-billing started: webhook http://{}:{}/stripe/webhook, gRPC {}:{} ({}, {}), "
      "metrics {}:{}",
      http_hp->host, http_port_, grpc_hp->host, grpc_port_, tls::mode_name(tls_files),
      opts_.stripe_secret_key.empty() ? "checkout disabled" : "checkout enabled", metrics_hp->host,
      metrics_port_);
  if (opts_.skip_signature_check_for_benchmark)
    log()->warn("SIGNATURE CHECK OFF (benchmark mode): never run like this in production");
  return Status::Ok();
}

void App::on_webhook(const std::string& signature, const std::string& body, int& status,
                     std::string& answer) {
  auto done = [&](int code, std::string text) {
    status = code;
    answer = std::move(text);
    metrics_->webhooks.Add({{"code", std::to_string(code)}}).Increment();
  };
  if (body.size() > static_cast<std::size_t>(opts_.max_body_bytes))
    return done(413, json_error("body larger than the limit"));
  if (!opts_.skip_signature_check_for_benchmark) {
    const std::int64_t now_s = clock_.now_unix_ms() / 1000;
    if (auto ok = verifier_->verify(signature, body, now_s); !ok) {
      metrics_->rejected.Add({{"reason", to_string(SignatureVerifier::reason(ok.error()))}})
          .Increment();
      return done(400, json_error(ok.error().message));
    }
  }
  auto ev = parse_stripe_event(body, prices_);
  if (!ev) return done(400, json_error(ev.error().message));
  auto outcome = processor_->handle(*ev);
  if (!outcome) {
    if (outcome.error().code == errc::unavailable || outcome.error().code == errc::conflict) {
      metrics_->unavailable.Increment();
      log()->warn("stripe event {} not recorded: {}; answering 503 (Stripe retries)", ev->id,
                  outcome.error().message);
      return done(503, json_error("event log unavailable; retry later"));
    }
    log()->error("stripe event {}: {}", ev->id, outcome.error().message);
    return done(500, json_error("internal error"));
  }
  switch (*outcome) {
    case Outcome::ignored:
      metrics_->ignored.Increment();
      return done(200, "{\"received\":true,\"ignored\":true}\n");
    case Outcome::duplicate:
      metrics_->duplicates.Increment();
      return done(200, "{\"received\":true,\"duplicate\":true}\n");
    case Outcome::recorded:
      metrics_->recorded.Increment();
      return done(200, "{\"received\":true}\n");
  }
}

void App::bootstrap() {
  int delay_ms = 100;
  while (!stopping_) {
    if (!stream_ready_ && store_->verify_stream()) stream_ready_ = true;
    if (stream_ready_) {
      // A projection Redis lost while we were down is rebuilt before
      // consuming (the durable consumer would not replay what it acked).
      if (auto st = projector_->check(); st) {
        projector_->start_checking();
        runner_->start();
        return;
      } else {
        log()->warn("billing projection not ready: {}", st.error().message);
      }
    }
    for (int w = 0; w < delay_ms && !stopping_; w += 10)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    delay_ms = std::min(delay_ms * 2, 5000);
  }
}

std::string App::readiness() {
  if (!store_ || !store_->connected()) return "event store (NATS) not connected";
  if (!stream_ready_) return "stream not ready";
  if (!runner_ || !runner_->subscribed()) return "projection consumer not subscribed";
  {
    auto c = redis_pool_->acquire();
    if (auto st = c->ensure(); !st) return "redis: " + st.error().message;
  }
  return {};
}

void App::stop() {
  if (stopping_.exchange(true)) return;
  if (http_) http_->stop();
  if (http_thread_.joinable()) http_thread_.join();
  if (grpc_) grpc_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (projector_) projector_->request_stop();
  if (bootstrap_thread_.joinable()) bootstrap_thread_.join();
  if (projector_) projector_->stop_checking();
  if (runner_) runner_->stop();
  if (ops_) ops_->stop();
  runner_.reset();
  grpc_.reset();
  checkout_.reset();
  processor_.reset();
  store_.reset();
}

}  // namespace supaplane::billing
