// Docker driver benchmark (docs/benchmarks.md), against its own dockerd with
// the local test images (tests/stacks/test-stack.yaml, nothing pulled):
//  1. create → healthy through the whole platform (CreateTenant over gRPC →
//     provisioner → containers healthy → ACTIVE) vs a bash script doing the
//     same docker operations with the docker CLI (network, volumes, the same
//     create options, start in dependency order waiting for health);
//  2. 20 tenants created at once: tenants per minute, p50 / p99;
//  3. resume (stopped → healthy → ACTIVE) vs `docker stop` + `docker start`
//     of a stack of the script's own with the same containers, in the same
//     order, while the other tenants keep running;
//  4. the same number of stacks made at once by bash scripts with the CLI
//     (--skip-single leaves out 1., --skip-raw-many 4.).
// The test stack's health checks run every --health-interval-ms (default
// 5000, like the real Supabase images' 5–10 s; the test suite's 1 s would
// have 120 containers exec a check 120 times a second on two cores).
// Prints Markdown.
//   supaplane_docker_bench [--rounds 5] [--tenants 20] [--health-interval-ms 5000]
//                          [--health-timeout-ms 5000] [--skip-single]
//                          [--skip-raw-many]
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "api_options.hpp"
#include "app.hpp"
#include "docker_daemon.hpp"
#include "provisioner_app.hpp"
#include "servers.hpp"
#include "supaplane/driver/docker_driver.hpp"
#include "supaplane/logging/logging.hpp"
#include "supaplane/secrets/secrets.hpp"
#include "supaplane/v1/api.grpc.pb.h"

namespace {

using namespace supaplane;
namespace v1 = supaplane::v1;
using SteadyClock = std::chrono::steady_clock;
using docker::Json;

const char* kMasterKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

double ms_since(SteadyClock::time_point t) {
  return std::chrono::duration<double, std::milli>(SteadyClock::now() - t).count();
}

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

/// The docker CLI commands that create what the driver creates for `svc`.
std::string docker_create(const driver::ServiceSpec& svc, const Json& body, const std::string& ref,
                          const std::string& edge) {
  const auto& hc = body["HostConfig"];
  std::string c = "docker create --name sp-" + ref + "-" + svc.name + " --network sp-" + ref +
                  " --network-alias " + svc.name +
                  " --cap-drop ALL --security-opt no-new-privileges:true --restart no";
  if (hc.value("ReadonlyRootfs", false)) c += " --read-only";
  for (const auto& t : svc.tmpfs) c += " --tmpfs " + t + ":rw,nosuid,nodev,size=64m";
  if (hc.contains("Memory")) c += " --memory " + std::to_string(hc["Memory"].get<long long>());
  if (hc.contains("NanoCpus"))
    c += " --cpus " + std::to_string(hc["NanoCpus"].get<long long>() / 1e9);
  if (hc.contains("PidsLimit"))
    c += " --pids-limit " + std::to_string(hc["PidsLimit"].get<long long>());
  for (const auto& m : hc["Mounts"])
    c += " --mount type=volume,src=" + m["Source"].get<std::string>() +
         ",dst=" + m["Target"].get<std::string>();
  for (const auto& e : body["Env"]) c += " -e " + quote(e.get<std::string>());
  if (body.contains("User")) c += " --user " + body["User"].get<std::string>();
  if (!svc.healthcheck.test.empty()) {
    std::string cmd;
    for (std::size_t i = 1; i < svc.healthcheck.test.size(); ++i)
      cmd += (i > 1 ? " " : "") + svc.healthcheck.test[i];
    c += " --health-cmd " + quote(cmd) + " --health-interval " +
         std::to_string(svc.healthcheck.interval_ms) + "ms" + " --health-timeout " +
         std::to_string(svc.healthcheck.timeout_ms) + "ms" + " --health-retries " +
         std::to_string(svc.healthcheck.retries);
  }
  c += " --label supaplane.bench=" + ref + " " + svc.image;
  for (const auto& a : body["Cmd"]) c += " " + quote(a.get<std::string>());
  c += " >/dev/null\n";
  if (svc.name == "kong" || svc.name == "pooler")
    c += "docker network connect " + edge + " sp-" + ref + "-" + svc.name + "\n";
  return c;
}

/// Starting in dependency order, each service once its dependencies are
/// healthy; then waiting until all are healthy (50 ms polls, as the driver's
/// events would wake it).
std::string start_in_order(const driver::StackSpec& spec, const std::string& ref,
                           const std::string& poll = "0.05") {
  std::string s = "healthy() { [ \"$(docker inspect -f '{{.State.Health.Status}}' sp-" + ref +
                  "-$1)\" = healthy ]; }\n"
                  "running() { [ \"$(docker inspect -f '{{.State.Running}}' sp-" +
                  ref + "-$1)\" = true ]; }\n";
  // A service's on_healthy command runs once it is healthy, before anything
  // waiting for it to be healthy starts (as the driver does).
  std::set<std::string> hooked;
  auto hook = [&](const std::string& name) {
    const auto* svc = spec.find(name);
    if (!svc || svc->on_healthy.exec.empty() || !hooked.insert(name).second) return;
    s += "docker exec sp-" + ref + "-" + name;
    for (const auto& arg : svc->on_healthy.exec) s += " '" + arg + "'";
    s += " >/dev/null\n";
  };
  for (const auto& svc : spec.services) {
    for (const auto& [dep, cond] : svc.depends_on) {
      s += "until " + std::string(cond == "healthy" ? "healthy " : "running ") + dep +
           "; do sleep " + poll + "; done\n";
      if (cond == "healthy") hook(dep);
    }
    s += "docker start sp-" + ref + "-" + svc.name + " >/dev/null\n";
  }
  for (const auto& svc : spec.services) {
    s += "until healthy " + svc.name + "; do sleep " + poll + "; done\n";
    hook(svc.name);
  }
  return s;
}

struct Bench {
  testenv::DockerDaemon daemon{"172.29.0.0/16"};
  testenv::NatsServer nats;
  testenv::RedisServer redis;
  testenv::PostgresServer pg;
  std::unique_ptr<api::ApiApp> api;
  std::unique_ptr<provisioner::App> prov;
  std::unique_ptr<v1::TenantService::Stub> tenants;
  std::string token;
  driver::StackSpec spec;
  std::string edge = "sp-bench-edge";

  int health_interval_ms = 5000;
  int health_timeout_ms = 5000;
  int wait_minutes = 10;
  testenv::TempDir dir{"sp-docker-bench"};

  /// The test stack with its health checks every `health_interval_ms`,
  /// each given `health_timeout_ms` (the suite's 2 s is for one stack at a
  /// time; the real images give a check 5 s).
  std::string stack_file() {
    std::ifstream in(std::string(SUPAPLANE_SOURCE_DIR) + "/tests/stacks/test-stack.yaml");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string tfrom = "timeout_ms: 2000",
                      tto = "timeout_ms: " + std::to_string(health_timeout_ms);
    for (auto at = text.find(tfrom); at != std::string::npos;
         at = text.find(tfrom, at + tto.size()))
      text.replace(at, tfrom.size(), tto);
    const std::string from = "interval_ms: 1000",
                      to = "interval_ms: " + std::to_string(health_interval_ms);
    int replaced = 0;
    for (auto at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
      text.replace(at, from.size(), to);
      ++replaced;
    }
    if (replaced == 0)
      throw std::runtime_error("test-stack.yaml has no 'interval_ms: 1000' to set");
    const std::string path = dir.path() + "/bench-stack.yaml";
    std::ofstream(path) << text;
    return path;
  }

  void start() {
    daemon.start();
    daemon.build_test_images(SP_STANDIN);
    nats.start();
    redis.start();
    pg.start();
    pg.create_database("supaplane");
    auto ao = testenv::api_options(nats, redis, pg.admin_dsn("supaplane"), std::string(40, 's'));
    ao.master_key = kMasterKey;
    api = std::make_unique<api::ApiApp>(ao);
    if (!api->start()) throw std::runtime_error("api did not start");
    provisioner::AppOptions po;
    po.nats_url = nats.url();
    po.database_url = pg.admin_dsn("supaplane");
    po.master_key = kMasterKey;
    po.metrics_addr = "127.0.0.1:0";
    po.resync_interval_ms = 0;
    po.driver = "docker";
    po.docker_host = daemon.host();
    po.stack_spec = stack_file();
    po.edge_network = edge;
    spec = driver::load_stack_spec(po.stack_spec).value();
    prov = std::make_unique<provisioner::App>(po);
    if (!prov->start()) throw std::runtime_error("provisioner did not start");
    while (!api->readiness().empty() || !prov->readiness().empty())
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    auto ch = grpc::CreateChannel("127.0.0.1:" + std::to_string(api->grpc_port()),
                                  grpc::InsecureChannelCredentials());
    auto accounts = v1::AccountService::NewStub(ch);
    tenants = v1::TenantService::NewStub(ch);
    v1::SignUpRequest req;
    req.set_email("bench@example.com");
    req.set_password("bench-password");
    v1::SessionResponse resp;
    grpc::ClientContext c;
    if (!accounts->SignUp(&c, req, &resp).ok()) throw std::runtime_error("sign-up failed");
    token = resp.token();
  }

  std::unique_ptr<grpc::ClientContext> ctx() {
    auto c = std::make_unique<grpc::ClientContext>();
    c->AddMetadata("authorization", "Bearer " + token);
    return c;
  }

  std::string create(const std::string& name) {
    v1::CreateTenantRequest req;
    req.set_name(name);
    v1::TenantMutation m;
    if (!tenants->CreateTenant(ctx().get(), req, &m).ok())
      throw std::runtime_error("create failed");
    return m.tenant().ref();
  }

  void command(const std::string& what, const std::string& ref) {
    v1::TenantRequest req;
    req.set_ref(ref);
    v1::TenantMutation m;
    grpc::Status s = what == "pause" ? tenants->PauseTenant(ctx().get(), req, &m)
                                     : tenants->ResumeTenant(ctx().get(), req, &m);
    if (!s.ok()) throw std::runtime_error(what + " failed");
  }

  void wait_phase(const std::string& ref, v1::Phase phase) {
    const auto deadline = SteadyClock::now() + std::chrono::minutes(wait_minutes);
    v1::Tenant t;
    while (SteadyClock::now() < deadline) {
      v1::GetTenantRequest req;
      req.set_ref(ref);
      if (tenants->GetTenant(ctx().get(), req, &t).ok() && t.phase() == phase &&
          t.observed_generation() == t.generation())
        return;
      // 250 ms: twenty waiters at 50 ms were 400 GetTenant calls a second,
      // load of the bench's own making on a 2-vCPU machine.
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    throw std::runtime_error(ref + " never reached " + v1::Phase_Name(phase) + " (last seen " +
                             v1::Phase_Name(t.phase()) + ", " + t.status() + ", generation " +
                             std::to_string(t.observed_generation()) + "/" +
                             std::to_string(t.generation()) + ", " + t.last_error() + ")");
  }

  /// The raw script for a fresh stack named like a tenant.
  /// `poll`: seconds between the script's `docker inspect` checks (0.05 for
  /// one stack; many scripts at once would otherwise load the machine with
  /// CLI processes more than the stacks do).
  double raw_create(const std::string& ref, const std::string& poll = "0.05") {
    driver::DockerDriverOptions o;
    o.spec = spec;
    driver::DockerDriver d(o);
    driver::StackRequest r;
    r.ref = ref;
    r.keys = secrets::generate_tenant_keys(ref, "supaplane", 1'700'000'000).value();
    r.db_password = r.keys.db_password;
    std::string script = "set -e\nexport DOCKER_HOST=" + daemon.host() + "\n";
    script += "docker network create --internal sp-" + ref + " >/dev/null\n";
    script += "docker volume create sp-" + ref + "-dbdata >/dev/null\n";
    script += "docker volume create sp-" + ref + "-storage >/dev/null\n";
    for (const auto& svc : spec.services)
      script += docker_create(svc, d.container_body(svc, r).value(), ref, edge);
    script += start_in_order(spec, ref, poll);
    return run_script(script);
  }

  double raw_stop_start(const std::string& ref) {
    std::string stop = "export DOCKER_HOST=" + daemon.host() + "\n";
    for (auto it = spec.services.rbegin(); it != spec.services.rend(); ++it)
      stop += "docker stop -t 10 sp-" + ref + "-" + it->name + " >/dev/null\n";
    run_script(stop);
    return run_script("set -e\nexport DOCKER_HOST=" + daemon.host() + "\n" +
                      start_in_order(spec, ref));
  }

  /// The raw stack goes again (its containers would load the next rounds).
  void raw_remove(const std::string& ref) {
    run_script("export DOCKER_HOST=" + daemon.host() +
               "\ndocker ps -aq --filter label=supaplane.bench=" + ref +
               " | xargs -r docker rm -f >/dev/null\ndocker network rm sp-" + ref +
               " >/dev/null\ndocker volume rm sp-" + ref + "-dbdata sp-" + ref +
               "-storage >/dev/null\n");
  }

  double run_script(const std::string& script) {
    static std::atomic<int> n{0};
    const std::string path = "/tmp/sp-docker-bench-" + std::to_string(++n) + ".sh";
    std::ofstream(path) << script;
    const auto t0 = SteadyClock::now();
    // Bounded like the platform's wait: a stack never healthy fails the run.
    const int rc = std::system(("timeout 600 bash " + path).c_str());
    std::remove(path.c_str());
    if (rc != 0) throw std::runtime_error("raw script failed or timed out");
    return ms_since(t0);
  }
};

}  // namespace

int main(int argc, char** argv) {
  int rounds = 5, concurrent = 20, interval = 5000, timeout = 5000;
  bool single = true, raw_many = true;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--rounds" && has_value) {
      rounds = std::atoi(argv[++i]);
    } else if (arg == "--tenants" && has_value) {
      concurrent = std::atoi(argv[++i]);
    } else if (arg == "--health-interval-ms" && has_value) {
      interval = std::atoi(argv[++i]);
    } else if (arg == "--health-timeout-ms" && has_value) {
      timeout = std::atoi(argv[++i]);
    } else if (arg == "--skip-single") {
      single = false;
    } else if (arg == "--skip-raw-many") {
      raw_many = false;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--rounds N] [--tenants N] [--health-interval-ms MS] "
                   "[--health-timeout-ms MS] [--skip-single] [--skip-raw-many]\n",
                   argv[0]);
      return arg == "--help" ? 0 : 2;
    }
  }
  if (rounds < 1 || concurrent < 1 || interval < 100 || timeout < 100) {
    std::fprintf(stderr,
                 "--rounds and --tenants must be >= 1, --health-interval-ms and "
                 "--health-timeout-ms >= 100\n");
    return 2;
  }
  logging::init("bench", "warn");
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // results as they come
  Bench b;
  b.health_interval_ms = interval;
  b.health_timeout_ms = timeout;
  b.start();
  std::printf("(health checks every %d ms, each given %d ms)\n\n", interval, timeout);

  // 1. One stack at a time: the platform vs the raw script, interleaved.
  std::vector<double> ours, raw;
  for (int i = 0; single && i < rounds; ++i) {
    const auto t0 = SteadyClock::now();
    const std::string ref = b.create("one" + std::to_string(i));
    b.wait_phase(ref, v1::PHASE_ACTIVE);
    ours.push_back(ms_since(t0));
    std::string fake = "benchraw";
    for (int k = 0; k < 12; ++k) fake += static_cast<char>('a' + (i + k) % 26);
    raw.push_back(b.raw_create(fake));
    b.raw_remove(fake);
  }
  if (single) {
    std::printf("## docker driver: create → healthy (test stack, %d rounds)\n\n", rounds);
    std::printf("| path | p50 ms | min ms | max ms |\n|---|---|---|---|\n");
    std::printf("| supaplane (CreateTenant → ACTIVE) | %.0f | %.0f | %.0f |\n", pct(ours, 0.5),
                *std::min_element(ours.begin(), ours.end()),
                *std::max_element(ours.begin(), ours.end()));
    std::printf("| bash + docker CLI, same operations | %.0f | %.0f | %.0f |\n", pct(raw, 0.5),
                *std::min_element(raw.begin(), raw.end()),
                *std::max_element(raw.begin(), raw.end()));
    std::printf("\nratio (raw p50 / supaplane p50, higher is better): **%.2f**\n\n",
                pct(raw, 0.5) / pct(ours, 0.5));
  }

  // 2. Many at once.
  std::vector<std::string> refs;
  const auto t0 = SteadyClock::now();
  for (int i = 0; i < concurrent; ++i) refs.push_back(b.create("many" + std::to_string(i)));
  std::vector<double> lat(refs.size());
  std::vector<std::thread> waiters;
  for (std::size_t i = 0; i < refs.size(); ++i)
    waiters.emplace_back([&, i] {
      try {
        b.wait_phase(refs[i], v1::PHASE_ACTIVE);
        lat[i] = ms_since(t0);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", e.what());
        lat[i] = -1;
      }
    });
  for (auto& w : waiters) w.join();
  const auto failed = std::count(lat.begin(), lat.end(), -1.0);
  if (failed > 0) {
    std::printf("%zd of %d tenants did not reach ACTIVE within %d minutes\n", failed, concurrent,
                b.wait_minutes);
    return 1;
  }
  const double total_s = ms_since(t0) / 1000;
  std::printf("## docker driver: %d tenants created at once\n\n", concurrent);
  std::printf("| tenants/min | p50 ms | p99 ms | all ACTIVE after s |\n|---|---|---|---|\n");
  std::printf("| %.0f | %.0f | %.0f | %.1f |\n\n", concurrent / total_s * 60, pct(lat, 0.5),
              pct(lat, 0.99), total_s);

  // 3. Resume: paused (containers stopped) → ACTIVE, vs docker start of the same containers.
  std::vector<double> resume, start;
  for (int i = 0; i < rounds && i < static_cast<int>(refs.size()); ++i) {
    b.command("pause", refs[i]);
    b.wait_phase(refs[i], v1::PHASE_PAUSED);
    const auto r0 = SteadyClock::now();
    b.command("resume", refs[i]);
    b.wait_phase(refs[i], v1::PHASE_ACTIVE);
    resume.push_back(ms_since(r0));
    // The raw side on a stack of the script's own: stopping a tenant's
    // containers behind the provisioner's back would have it repair them
    // while the script starts them.
    const std::string fake = std::string("benchresume") + static_cast<char>('a' + i % 26);
    b.raw_create(fake, "0.5");
    start.push_back(b.raw_stop_start(fake));
    b.raw_remove(fake);
  }
  std::printf("## docker driver: resume (stopped → healthy)\n\n");
  std::printf("| path | p50 ms | p99 ms |\n|---|---|---|\n");
  std::printf("| supaplane (ResumeTenant → ACTIVE) | %.0f | %.0f |\n", pct(resume, 0.5),
              pct(resume, 0.99));
  std::printf("| docker start, same order and health waits | %.0f | %.0f |\n", pct(start, 0.5),
              pct(start, 0.99));
  std::printf("\nratio (docker start p50 / supaplane p50): **%.2f**\n\n",
              pct(start, 0.5) / pct(resume, 0.5));

  if (!raw_many) {
    b.api.reset();
    return 0;
  }
  // 4. The same many stacks from the CLI at once (the platform's are removed
  // first, so the daemon carries the same load), polling every 0.5 s.
  b.prov.reset();  // stops converging; its stacks go with the daemon's containers
  b.run_script("export DOCKER_HOST=" + b.daemon.host() +
               "\ndocker ps -aq --filter label=supaplane.managed=true | xargs -r docker rm -f "
               ">/dev/null\n");
  std::vector<double> raw_lat(refs.size(), -1);
  const auto r0 = SteadyClock::now();
  std::vector<std::thread> raws;
  for (std::size_t i = 0; i < refs.size(); ++i)
    raws.emplace_back([&, i] {
      std::string fake = "benchmany";
      for (int k = 0; k < 11; ++k) fake += static_cast<char>('a' + (static_cast<int>(i) + k) % 26);
      try {
        b.raw_create(fake, "0.5");
        raw_lat[i] = ms_since(r0);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "raw %s: %s\n", fake.c_str(), e.what());
      }
    });
  for (auto& t : raws) t.join();
  const auto raw_failed = std::count(raw_lat.begin(), raw_lat.end(), -1.0);
  const double raw_total_s = ms_since(r0) / 1000;
  std::printf("## bash + docker CLI: %d stacks created at once\n\n", concurrent);
  if (raw_failed > 0) {
    std::printf("%zd of %d stacks not healthy within 10 minutes\n", raw_failed, concurrent);
  } else {
    std::printf("| stacks/min | p50 ms | p99 ms | all healthy after s |\n|---|---|---|---|\n");
    std::printf("| %.0f | %.0f | %.0f | %.1f |\n\n", concurrent / raw_total_s * 60,
                pct(raw_lat, 0.5), pct(raw_lat, 0.99), raw_total_s);
    std::printf("ratio (CLI all-healthy time / supaplane all-ACTIVE time): **%.2f**\n",
                raw_total_s / total_s);
  }
  b.api.reset();
  return 0;
}
