// router-sync benchmarks (docs/benchmarks.md):
//   router_sync_bench render [--tenants 10000]       full render of N tenants
//   router_sync_bench latency [--samples 300]        event appended → file visible (inotify)
//   router_sync_bench forward-server --port P        ForwardAuth server for wrk
//   (scripts/bench-router)
#include <signal.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "http_front.hpp"
#include "render.hpp"
#include "router_app.hpp"
#include "servers.hpp"
#include "supaplane/config/config.hpp"
#include "supaplane/core/ids.hpp"
#include "supaplane/event_store/event_store.hpp"
#include "supaplane/events/tenant_events.hpp"
#include "supaplane/logging/logging.hpp"
#include "supaplane/secrets/secrets.hpp"

namespace {

using namespace supaplane;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

int arg_int(int argc, char** argv, const char* name, int def) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return std::atoi(argv[i + 1]);
  return def;
}

int bench_render(int n) {
  router::RenderOptions o;
  std::vector<router::RouteTenant> tenants;
  const v1::Phase phases[] = {v1::PHASE_ACTIVE, v1::PHASE_ACTIVE,    v1::PHASE_ACTIVE,
                              v1::PHASE_PAUSED, v1::PHASE_SUSPENDED, v1::PHASE_PROVISIONING};
  const v1::Plan plans[] = {v1::PLAN_FREE, v1::PLAN_STARTER, v1::PLAN_PRO};
  for (int i = 0; i < n; ++i) {
    auto ref = ids::random_tenant_ref().str();
    tenants.push_back(
        {ref, phases[i % 6], plans[i % 3], "http://" + ref + ".gateway.internal:8000"});
  }
  std::vector<double> yaml_ms, cache_ms, concat_ms;
  for (int run = 0; run < 7; ++run) {
    // The file provider: every tenant rendered and serialised (what start-up reconciles).
    auto t0 = Clock::now();
    std::size_t bytes = router::to_yaml(router::render_base(o)).size();
    std::string yaml;
    for (const auto& t : tenants) {
      router::render_tenant_text(t, o, &yaml, nullptr);
      bytes += yaml.size();
    }
    yaml_ms.push_back(ms_since(t0));
    // The HTTP provider: tenants rendered into the cache, then one body from it.
    t0 = Clock::now();
    std::map<std::string, router::TenantJson> rendered;
    for (const auto& t : tenants) router::render_tenant_text(t, o, nullptr, &rendered[t.ref]);
    cache_ms.push_back(ms_since(t0));
    t0 = Clock::now();
    const auto body = router::dynamic_json(router::render_base(o), rendered);
    concat_ms.push_back(ms_since(t0));
    if (run == 0)
      std::printf("render: %d tenants, %zu bytes of YAML, %zu bytes of JSON\n", n, bytes,
                  body.size());
  }
  auto report = [](const char* what, const std::vector<double>& v) {
    std::printf("%-58s median %6.1f ms  min %6.1f ms\n", what, percentile(v, 0.5),
                *std::min_element(v.begin(), v.end()));
  };
  report("full render, YAML file per tenant + base (file provider):", yaml_ms);
  report("full render into the JSON cache (kept in memory):", cache_ms);
  report("HTTP provider body from the cache (GET after a change):", concat_ms);
  return 0;
}

int bench_latency(int samples) {
  testenv::NatsServer nats;
  testenv::RedisServer redis;
  nats.start();
  redis.start();
  testenv::TempDir tmp("router-bench");
  router::AppOptions o;
  o.nats_url = nats.url();
  o.redis_url = redis.url();
  o.database_url = "postgresql://unused@127.0.0.1:1/none";  // no outcome events: keys never read
  o.master_key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
  o.http_addr = "127.0.0.1:0";
  o.metrics_addr = "127.0.0.1:0";
  o.traefik_dir = tmp.path() + "/traefik";
  router::App app(o);
  if (!app.start().ok()) return 1;
  for (int i = 0; i < 3000 && !app.readiness().empty(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (!app.readiness().empty()) {
    std::fprintf(stderr, "router-sync not ready: %s\n", app.readiness().c_str());
    return 1;
  }
  event_store::ConnectOptions co;
  co.url = nats.url();
  auto es = event_store::EventStore::connect(co).value();
  int fd = inotify_init1(IN_CLOEXEC);
  inotify_add_watch(fd, o.traefik_dir.c_str(), IN_MOVED_TO);
  std::vector<double> lat;
  v1::Actor actor;
  actor.set_kind(v1::ACTOR_KIND_SYSTEM);
  actor.set_id("bench");
  char buf[64 * 1024];
  for (int i = 0; i < samples; ++i) {
    const std::string ref = ids::random_tenant_ref().str();
    const std::string want = router::tenant_file(ref);
    v1::TenantEvent e;
    auto* c = e.mutable_created();
    c->set_name("bench");
    c->set_plan(v1::PLAN_FREE);
    c->set_owner_account_id("acct_bbbbbbbbbbbbbbbbbbbb");
    c->set_generation(1);
    auto out =
        events::make_tenant_event(ref, e, actor, "", event_store::Expected::any(), "", "", 1);
    const auto t0 = Clock::now();
    if (!es->append(out).ok()) return 1;
    bool seen = false;
    while (!seen) {
      ssize_t n = read(fd, buf, sizeof buf);
      if (n <= 0) return 1;
      for (ssize_t off = 0; off < n;) {
        auto* ev = reinterpret_cast<inotify_event*>(buf + off);
        if (ev->len && want == ev->name) seen = true;
        off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
      }
    }
    lat.push_back(ms_since(t0));
    // Isolated events: the coalescing interval (50 ms) is not part of this number.
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
  }
  close(fd);
  std::printf(
      "event -> file visible (%d samples, append acked by JetStream included): p50 %.2f ms, "
      "p90 %.2f ms, p99 %.2f ms, max %.2f ms\n",
      samples, percentile(lat, 0.5), percentile(lat, 0.9), percentile(lat, 0.99),
      percentile(lat, 1.0));
  app.stop();
  return 0;
}

class WallClock final : public supaplane::Clock {
 public:
  std::int64_t now_unix_ms() const override { return SystemClock::instance().now_unix_ms(); }
};

int forward_server(int port, int threads) {
  WallClock clock;
  router::EdgeAuth edge("supaplane", "supabase.localhost", clock);
  const std::string ref = "benchbenchbenchbench";
  const std::string key = "sb_publishable_" + std::string(32, 'k');
  edge.set_phase(ref, v1::PHASE_ACTIVE);
  edge.set_keys(ref,
                {1, secrets::key_hash(key), secrets::key_hash("sb_secret_" + std::string(40, 's')),
                 std::string(43, 'j')});
  auto registry = std::make_shared<prometheus::Registry>();
  router::HttpFront front(
      edge, [] { return nullptr; }, *registry, threads);
  auto p = front.bind("127.0.0.1", port);
  if (!p) return 1;
  front.start();
  std::printf("forward-server on 127.0.0.1:%d host %s.supabase.localhost apikey %s\n", *p,
              ref.c_str(), key.c_str());
  std::fflush(stdout);
  config::wait_for_termination_signal();
  front.stop();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const event_store::LibraryScope nats_library;
  logging::init("router-bench", "warn");
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "render") return bench_render(arg_int(argc, argv, "--tenants", 10'000));
  if (mode == "latency") return bench_latency(arg_int(argc, argv, "--samples", 300));
  if (mode == "forward-server")
    return forward_server(arg_int(argc, argv, "--port", 0), arg_int(argc, argv, "--threads", 0));
  std::fprintf(stderr, "usage: %s render|latency|forward-server [options]\n", argv[0]);
  return 2;
}
