// The docker driver against a real dockerd this suite starts itself (its own
// data root and socket in a temp dir), with the local test images of
// scripts/docker-test-images (nothing pulled): the api takes commands over
// gRPC, the provisioner converges stacks of containers, router-sync's
// ForwardAuth mints the JWT the gateway stand-in verifies. Traffic goes only
// to containers this suite started, at addresses read from the Engine API.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sodium.h>
#include <spdlog/sinks/ostream_sink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <ctime>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "api_options.hpp"
#include "app.hpp"
#include "docker_daemon.hpp"
#include "driver_contract.hpp"
#include "eventually.hpp"
#include "provisioner_app.hpp"
#include "router_app.hpp"
#include "servers.hpp"
#include "supaplane/auth/jwt.hpp"
#include "supaplane/docker/client.hpp"
#include "supaplane/driver/docker_driver.hpp"
#include "supaplane/events/history.hpp"
#include "supaplane/logging/logging.hpp"
#include "supaplane/secrets/secrets.hpp"
#include "supaplane/v1/api.grpc.pb.h"

namespace {

using namespace supaplane;
namespace v1 = supaplane::v1;
using SteadyClock = std::chrono::steady_clock;
using docker::Json;

const char* kMasterKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const char* kDomain = "supabase.localhost";

/// The test stack: the six services of the Management API's health
/// report, and the gateway (kong, not reported).
const std::set<std::string> kManagementApiNames{"auth",     "db",   "pooler",
                                                "realtime", "rest", "storage"};
constexpr std::size_t kContainers = 7;

testenv::PostgresServer& pg() { return testenv::shared_postgres_with_passwords(); }

/// One dockerd for the whole binary (starting one costs seconds), with the
/// test images built into it.
testenv::DockerDaemon* daemon_or_null() {
  static std::unique_ptr<testenv::DockerDaemon> d = [] {
    std::unique_ptr<testenv::DockerDaemon> out;
    if (!testenv::docker_unavailable_reason().empty()) return out;
    out = std::make_unique<testenv::DockerDaemon>();
    out->start();
    out->build_test_images(SP_STANDIN);
    return out;
  }();
  return d.get();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string test_spec() {
  return std::string(SUPAPLANE_SOURCE_DIR) + "/tests/stacks/test-stack.yaml";
}

/// Stacks start containers in dependency order: a minute is the bound here.
template <typename Pred>
bool eventually(Pred pred, std::chrono::seconds timeout = std::chrono::seconds(60)) {
  return testenv::eventually(pred, timeout, std::chrono::milliseconds(25));
}

class DockerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Never skipped: ./scripts/test installs docker.io, so a missing dockerd is a failure.
    if (auto why = testenv::docker_unavailable_reason(); !why.empty())
      FAIL() << "docker driver tests need dockerd: " << why;
    daemon_ = daemon_or_null();
    ASSERT_NE(daemon_, nullptr);
    docker_ = std::make_unique<docker::Client>(daemon_->host());
    ASSERT_TRUE(docker_->connect().ok());
    nats_.start();
    redis_.start();
    static int n = 0;
    db_ = "docker_" + std::to_string(::getpid()) + "_" + std::to_string(++n);
    pg().create_database(db_);
    auto ao = testenv::api_options(nats_, redis_, pg().admin_dsn(db_), std::string(40, 's'));
    ao.admin_email = "admin@example.com";
    ao.admin_password = "admin-password";
    ao.master_key = kMasterKey;
    ao.base_domain = kDomain;
    api_ = std::make_unique<api::ApiApp>(ao);
    ASSERT_TRUE(api_->start().ok());
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(api_->grpc_port()),
                                   grpc::InsecureChannelCredentials());
    accounts_ = v1::AccountService::NewStub(channel_);
    tenants_ = v1::TenantService::NewStub(channel_);
  }

  void TearDown() override {
    router_.reset();
    prov_.reset();
    api_.reset();
    // Nothing of this test's tenants may outlive it (the daemon is shared).
    if (docker_) {
      driver::DockerDriver d(driver_options());
      std::vector<std::thread> removers;
      for (const auto& ref : refs_) removers.emplace_back([&d, ref] { (void)d.remove(ref); });
      for (auto& t : removers) t.join();
    }
  }

  /// A driver of the test's own on the shared daemon, with the test stack.
  driver::DockerDriverOptions driver_options() const {
    driver::DockerDriverOptions o;
    o.docker_host = daemon_->host();
    o.spec = driver::load_stack_spec(test_spec()).value();
    o.edge_network = "sp-test-edge";
    return o;
  }

  provisioner::AppOptions prov_options(const std::string& spec, int resync_interval_ms = 0,
                                       int workers = 0) {
    provisioner::AppOptions o;
    o.nats_url = nats_.url();
    o.database_url = pg().admin_dsn(db_);
    o.master_key = kMasterKey;
    o.metrics_addr = "127.0.0.1:0";
    o.resync_interval_ms = resync_interval_ms;  // 0: tests call resync() themselves
    o.provisioner.backoff_base_ms = 20;
    if (workers > 0) o.provisioner.workers = workers;
    o.driver = "docker";
    o.docker_host = daemon_->host();
    o.stack_spec = spec;
    o.base_domain = kDomain;
    o.edge_network = "sp-test-edge";
    return o;
  }

  void start_provisioner(const std::string& spec = test_spec(), int resync_interval_ms = 0,
                         int workers = 0) {
    prov_ = std::make_unique<provisioner::App>(prov_options(spec, resync_interval_ms, workers));
    auto st = prov_->start();
    ASSERT_TRUE(st.ok()) << st.error().message;
    ASSERT_TRUE(eventually([&] { return prov_->readiness().empty() && api_->readiness().empty(); }))
        << prov_->readiness() << api_->readiness();
    if (token_.empty()) token_ = sign_up("owner@example.com", "owner-password");
  }

  void start_router() {
    router::AppOptions o;
    o.nats_url = nats_.url();
    o.redis_url = redis_.url();
    o.database_url = pg().admin_dsn(db_);
    o.master_key = kMasterKey;
    o.http_addr = "127.0.0.1:0";
    o.metrics_addr = "127.0.0.1:0";
    o.traefik_dir = traefik_dir_.path();
    o.render.base_domain = kDomain;
    router_ = std::make_unique<router::App>(o);
    auto st = router_->start();
    ASSERT_TRUE(st.ok()) << st.error().message;
    ASSERT_TRUE(eventually([&] { return router_->readiness().empty(); })) << router_->readiness();
  }

  std::string sign_up(const std::string& email, const std::string& password) {
    v1::SignUpRequest req;
    req.set_email(email);
    req.set_password(password);
    v1::SessionResponse resp;
    grpc::ClientContext c;
    auto s = accounts_->SignUp(&c, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.token();
  }

  std::unique_ptr<grpc::ClientContext> ctx(const std::string& token = "") {
    auto c = std::make_unique<grpc::ClientContext>();
    c->AddMetadata("authorization", "Bearer " + (token.empty() ? token_ : token));
    return c;
  }

  v1::TenantMutation call(const std::string& what, const std::string& ref,
                          const std::string& name = "", const std::string& token = "") {
    v1::TenantMutation m;
    grpc::Status s;
    if (what == "create") {
      v1::CreateTenantRequest req;
      req.set_name(name);
      s = tenants_->CreateTenant(ctx(token).get(), req, &m);
      if (s.ok()) refs_.push_back(m.tenant().ref());
    } else {
      v1::TenantRequest req;
      req.set_ref(ref);
      auto c = ctx(token);
      if (what == "pause") s = tenants_->PauseTenant(c.get(), req, &m);
      if (what == "resume") s = tenants_->ResumeTenant(c.get(), req, &m);
      if (what == "delete") s = tenants_->DeleteTenant(c.get(), req, &m);
      if (what == "rotate") s = tenants_->RotateTenantKeys(c.get(), req, &m);
    }
    EXPECT_TRUE(s.ok()) << what << ": " << s.error_message();
    return m;
  }

  /// Waits until the tenant, seen at least at `min_sequence`, has converged
  /// its latest generation into `phase`.
  v1::Tenant wait_settled(const std::string& ref, std::uint64_t min_sequence, v1::Phase phase,
                          const std::string& token = "") {
    v1::Tenant t;
    const bool ok = eventually([&] {
      v1::GetTenantRequest req;
      req.set_ref(ref);
      req.set_min_sequence(min_sequence);
      return tenants_->GetTenant(ctx(token).get(), req, &t).ok() && t.phase() == phase &&
             t.observed_generation() == t.generation();
    });
    EXPECT_TRUE(ok) << ref << " never settled in " << v1::Phase_Name(phase) << " (is "
                    << v1::Phase_Name(t.phase()) << ", " << t.last_error() << ")";
    return t;
  }

  v1::TenantCredentials credentials(const std::string& ref, const std::string& token = "") {
    v1::GetTenantRequest req;
    req.set_ref(ref);
    v1::TenantCredentials c;
    auto s = tenants_->GetTenantCredentials(ctx(token).get(), req, &c);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return c;
  }

  v1::TenantHealth health(const std::string& ref) {
    v1::GetTenantRequest req;
    req.set_ref(ref);
    v1::TenantHealth h;
    auto s = tenants_->GetTenantHealth(ctx().get(), req, &h);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return h;
  }

  /// The tenant's events, folded the way the provisioner folds them.
  std::vector<events::HistoryRecord> history(const std::string& ref) {
    v1::ListTenantEventsRequest req;
    req.set_ref(ref);
    req.set_page_size(1000);
    v1::ListTenantEventsResponse resp;
    EXPECT_TRUE(tenants_->ListTenantEvents(ctx().get(), req, &resp).ok());
    EXPECT_EQ(resp.next_page_token(), "") << "more than one page of history";
    std::vector<events::HistoryRecord> out;
    for (const auto& e : resp.events()) {
      events::HistoryRecord r;
      r.type = e.type();
      r.details = e.details();
      out.push_back(r);
    }
    return out;
  }

  int count_events(const std::string& ref, const std::string& type) {
    int n = 0;
    for (const auto& r : history(ref)) n += r.type == type;
    return n;
  }

  /// Containers of a tenant: service → inspect JSON.
  /// The test stack with storage taking `delay_ms` to turn healthy (a
  /// window mid-start), written into `dir`; its path.
  static std::string slow_spec(const testenv::TempDir& dir, int delay_ms) {
    std::string text = read_file(test_spec());
    const std::string fast = "STARTUP_DELAY_MS: \"0\"";
    text.replace(text.find(fast), fast.size(),
                 "STARTUP_DELAY_MS: \"" + std::to_string(delay_ms) + "\"");
    const std::string path = dir.path() + "/slow.yaml";
    std::ofstream(path) << text;
    return path;
  }

  static std::map<std::string, std::string> env_of(const Json& container) {
    std::map<std::string, std::string> out;
    for (const auto& e : container["Config"]["Env"]) {
      const std::string kv = e;
      const auto eq = kv.find('=');
      if (eq != std::string::npos) out[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    return out;
  }

  /// "<service>.<VAR>" -> value of every `*JWT_SECRET` in a tenant's containers.
  std::map<std::string, std::string> jwt_secrets(const std::string& ref) {
    std::map<std::string, std::string> out;
    const std::string suffix = "JWT_SECRET";
    for (const auto& [service, c] : containers(ref))
      for (const auto& [var, value] : env_of(c))
        if (var.size() >= suffix.size() &&
            var.compare(var.size() - suffix.size(), suffix.size(), suffix) == 0)
          out[service + "." + var] = value;
    return out;
  }

  std::map<std::string, Json> containers(const std::string& ref) {
    std::map<std::string, Json> out;
    const Json filters{{"label", Json::array({"supaplane.tenant=" + ref})}};
    auto list = docker_->call(
        "GET", "/containers/json?all=1&filters=" + docker::Client::url_encode(filters.dump()));
    EXPECT_TRUE(list.ok());
    if (!list) return out;
    for (const auto& c : list->body) {
      auto inspect = docker_->call("GET", "/containers/" + c.value("Id", "") + "/json");
      if (!inspect) continue;
      out[inspect->body["Config"]["Labels"].value("supaplane.service", "")] = inspect->body;
    }
    return out;
  }

  /// A container's health status from its inspect body; `none` while the
  /// daemon has no health record yet (a created or just-started container
  /// reports `"Health": null`).
  static std::string health_status(const Json& c, const std::string& none = "") {
    const auto state = c.find("State");
    if (state == c.end() || !state->is_object()) return none;
    const auto h = state->find("Health");
    if (h == state->end() || !h->is_object()) return none;
    return h->value("Status", none);
  }

  /// One line per container: service, state, health (for failure messages).
  std::string describe(const std::string& ref) {
    std::string out;
    for (const auto& [service, c] : containers(ref))
      out +=
          "\n  " + service + ": " + c["State"].value("Status", "?") + " " + health_status(c, "-");
    return out.empty() ? "no containers" : out;
  }

  /// The address of `container` on `network`, from the Engine API.
  std::string ip_of(const std::string& container, const std::string& network) {
    auto inspect = docker_->call("GET", "/containers/" + container + "/json");
    if (!inspect) return "";
    const auto& nets = inspect->body["NetworkSettings"]["Networks"];
    if (!nets.contains(network)) return "";
    return nets[network].value("IPAddress", "");
  }

  /// Runs `cmd` in `container` (Engine API exec) with the container's
  /// environment plus `env` ("NAME=value": secrets go there, not in `cmd`);
  /// its exit code.
  int exec(const std::string& container, const std::vector<std::string>& cmd,
           const std::vector<std::string>& env = {}) {
    Json body{{"Cmd", cmd}, {"AttachStdout", false}, {"AttachStderr", false}};
    if (!env.empty()) body["Env"] = env;
    auto made = docker_->call("POST", "/containers/" + container + "/exec", &body);
    if (!made) return -1;
    const std::string id = made->body.value("Id", "");
    Json start{{"Detach", true}};
    if (!docker_->call("POST", "/exec/" + id + "/start", &start)) return -1;
    int code = -1;
    eventually([&] {
      auto st = docker_->call("GET", "/exec/" + id + "/json");
      if (!st || st->body.value("Running", true)) return false;
      code = st->body.value("ExitCode", -1);
      return true;
    });
    return code;
  }

  /// Exit code of a login to `ref`'s db stand-in with `password`, from the
  /// container of `service` (the password in the exec's environment).
  int db_login(const std::string& ref, const std::string& service, const std::string& password) {
    return exec("sp-" + ref + "-" + service, {"/sp-standin", "db-login"},
                {"DB_PASSWORD=" + password});
  }

  testenv::DockerDaemon* daemon_{nullptr};
  std::unique_ptr<docker::Client> docker_;
  testenv::NatsServer nats_;
  testenv::RedisServer redis_;
  testenv::TempDir traefik_dir_{"sp-traefik"};
  std::string db_;
  std::unique_ptr<api::ApiApp> api_;
  std::unique_ptr<provisioner::App> prov_;
  std::unique_ptr<router::App> router_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::AccountService::Stub> accounts_;
  std::unique_ptr<v1::TenantService::Stub> tenants_;
  std::string token_;
  std::vector<std::string> refs_;
};

TEST_F(DockerTest, CreateConvergesAHealthyHardenedStackOnItsOwnNetwork) {
  start_provisioner();
  const auto m = call("create", "", "shop");
  const std::string ref = m.tenant().ref();
  const auto t = wait_settled(ref, m.sequence(), v1::PHASE_ACTIVE);
  EXPECT_EQ(t.status(), "ACTIVE_HEALTHY");

  // Per-service health, in the Management API's names.
  const auto h = health(ref);
  std::set<std::string> names;
  for (const auto& s : h.services()) {
    names.insert(s.name());
    EXPECT_EQ(s.status(), "ACTIVE_HEALTHY") << s.name();
    EXPECT_TRUE(s.healthy());
  }
  EXPECT_EQ(names, kManagementApiNames);

  const auto cs = containers(ref);
  ASSERT_EQ(cs.size(), kContainers);
  const std::string net = "sp-" + ref;
  for (const auto& [service, c] : cs) {
    SCOPED_TRACE(service);
    EXPECT_EQ(c["Name"], "/sp-" + ref + "-" + service);
    EXPECT_TRUE(c["State"].value("Running", false));
    EXPECT_EQ(health_status(c), "healthy");
    EXPECT_FALSE(c["Config"]["Labels"].value("supaplane.config-hash", "").empty());
    const auto& hc = c["HostConfig"];
    EXPECT_EQ(hc["CapDrop"], Json::array({"ALL"}));
    EXPECT_EQ(hc["SecurityOpt"], Json::array({"no-new-privileges:true"}));
    EXPECT_TRUE(hc.value("ReadonlyRootfs", false));
    EXPECT_EQ(hc.value("Memory", 0LL), 32LL * 1024 * 1024);  // free plan
    EXPECT_EQ(hc.value("PidsLimit", 0LL), 64);
    const Json ports = hc.value("PortBindings", Json());
    EXPECT_TRUE(ports.is_null() || ports.empty()) << "no host ports";
    const auto& nets = c["NetworkSettings"]["Networks"];
    EXPECT_TRUE(nets.contains(net));
    const bool edge = service == "kong" || service == "pooler";
    EXPECT_EQ(nets.contains("sp-test-edge"), edge) << "only the gateway and the db route";
    EXPECT_EQ(nets.size(), edge ? 2u : 1u);
  }
  auto tenant_net = docker_->call("GET", "/networks/" + net);
  ASSERT_TRUE(tenant_net.ok());
  EXPECT_TRUE(tenant_net->body.value("Internal", false));

  // The endpoints the api hands out are the ones the driver reported.
  const auto c = credentials(ref);
  EXPECT_EQ(c.db_host(), "db." + ref + "." + kDomain);
  EXPECT_EQ(c.db_port(), 5432);
  EXPECT_EQ(c.db_user(), "postgres." + ref);

  // The driver's watch hears state changes, not health checks: over 4 s of
  // checks every second on seven containers, a settled stack makes (almost)
  // no events. Without the watch's `event` filter it heard each check's
  // exec_create / exec_start / exec_die (about 60 here), and every one made
  // the provisioner re-check the tenant.
  driver::DockerDriver d(driver_options());
  ASSERT_TRUE(d.connect().ok());
  std::atomic<bool> stop{false};
  std::atomic<int> heard{0};
  std::thread watcher(
      [&] { d.watch([&](const std::string& r) { heard += r == ref ? 1 : 0; }, stop); });
  std::this_thread::sleep_for(std::chrono::seconds(4));
  const int quiet = heard.load();
  EXPECT_LE(quiet, 2) << "events heard from a settled stack in 4 s";
  // ... and it does hear a real change (so the quiet count is not a dead watch).
  ASSERT_TRUE(docker_->call("POST", "/containers/sp-" + ref + "-rest/pause").ok());
  ASSERT_TRUE(docker_->call("POST", "/containers/sp-" + ref + "-rest/unpause").ok());
  EXPECT_TRUE(eventually([&] { return heard.load() >= quiet + 2; })) << heard.load();
  stop = true;
  watcher.join();
}

TEST_F(DockerTest, EdgePathVerifiesTheTenantsOwnJwtAndRotationRecreates) {
  start_provisioner();
  start_router();
  const auto ma = call("create", "", "alpha");
  const auto mb = call("create", "", "beta");
  const std::string a = ma.tenant().ref(), b = mb.tenant().ref();
  wait_settled(a, ma.sequence(), v1::PHASE_ACTIVE);
  const auto tb = wait_settled(b, mb.sequence(), v1::PHASE_ACTIVE);
  const auto ca = credentials(a), cb = credentials(b);

  httplib::Client edge("127.0.0.1", router_->http_port());
  auto forward = [&](const std::string& ref, const std::string& key, std::string* authz) {
    auto r =
        edge.Get("/auth/forward", {{"X-Forwarded-Host", ref + "." + kDomain}, {"apikey", key}});
    if (!r) return -1;
    if (authz) *authz = r->get_header_value("Authorization");
    return r->status;
  };
  // The gateway at the URL of the outcome event, its host resolved through
  // the Engine API (the edge network's address of that container).
  auto gateway = [&](const std::string& ref, const std::string& authz) {
    v1::GetTenantRequest req;
    req.set_ref(ref);
    v1::Tenant t;
    EXPECT_TRUE(tenants_->GetTenant(ctx().get(), req, &t).ok());
    const auto states = history(ref);
    std::string url;
    for (const auto& r : states)
      if (r.type == "tenant.stack_converged" || r.type == "tenant.stack_resumed") {
        const auto j = Json::parse(r.details);
        url = j.value("gatewayUrl", j.value("gateway_url", ""));
      }
    EXPECT_EQ(url, "http://sp-" + ref + "-kong:8000");
    const std::string ip = ip_of("sp-" + ref + "-kong", "sp-test-edge");
    EXPECT_FALSE(ip.empty());
    httplib::Client gw(ip, 8000);
    gw.set_connection_timeout(2);
    auto r = gw.Get("/rest/v1/", {{"Authorization", authz}});
    return r ? std::make_pair(r->status, r->body) : std::make_pair(-1, std::string());
  };

  std::string authz;
  ASSERT_TRUE(eventually([&] { return forward(a, ca.publishable_key(), &authz) == 200; }));
  auto [status, body] = gateway(a, authz);
  EXPECT_EQ(status, 200) << body;
  EXPECT_NE(body.find("\"role\":\"anon\""), std::string::npos) << body;
  EXPECT_NE(body.find("\"ref\":\"" + a + "\""), std::string::npos) << body;
  // Tenant B's key on A's host, and B's JWT at A's gateway.
  EXPECT_EQ(forward(a, cb.publishable_key(), nullptr), 401);
  std::string authz_b;
  ASSERT_TRUE(eventually([&] { return forward(b, cb.secret_key(), &authz_b) == 200; }));
  EXPECT_EQ(gateway(a, authz_b).first, 401) << "A's gateway verified B's JWT";
  EXPECT_EQ(gateway(a, "Bearer not.a.jwt").first, 401);
  (void)tb;

  // Rotation: recreated containers with the new secret; the old key and
  // the old JWT stop working, the new ones work.
  const auto kong_before = containers(a)["kong"]["Id"];
  const auto secrets_before = jwt_secrets(a);
  const auto rot = call("rotate", a);
  wait_settled(a, rot.sequence(), v1::PHASE_ACTIVE);
  const auto ca2 = credentials(a);
  ASSERT_NE(ca2.publishable_key(), ca.publishable_key());
  EXPECT_NE(containers(a)["kong"]["Id"], kong_before) << "kong was not recreated";
  std::string authz2;
  ASSERT_TRUE(eventually([&] { return forward(a, ca2.publishable_key(), &authz2) == 200; }));
  EXPECT_EQ(forward(a, ca.publishable_key(), nullptr), 401);
  EXPECT_EQ(gateway(a, authz2).first, 200);
  EXPECT_EQ(gateway(a, authz).first, 401) << "the old JWT still verifies";
  // Every service that holds the secret holds the gateway's (the one the
  // edge's new JWTs verified with, above), a new one; the keys handed to
  // the services verify with it.
  const auto secrets = jwt_secrets(a);
  ASSERT_GE(secrets.size(), 4u);
  const std::string gateway_secret = secrets.at("kong.JWT_SECRET");
  for (const auto& [where, value] : secrets) {
    EXPECT_EQ(value, gateway_secret) << where << " disagrees with the gateway";
    EXPECT_NE(value, secrets_before.at(where)) << where << " kept the old secret";
  }
  const auto storage_env = env_of(containers(a)["storage"]);
  for (const auto& [var, role] :
       {std::pair<std::string, std::string>{"ANON_KEY", "anon"}, {"SERVICE_KEY", "service_role"}}) {
    auto claims = auth::verify_hs256(gateway_secret, storage_env.at(var), std::time(nullptr));
    ASSERT_TRUE(claims.ok()) << var << ": " << claims.error().message;
    EXPECT_EQ(claims->role, role);
    EXPECT_EQ(claims->ref, a);
  }
  // router-sync routes the API host to the gateway URL of the outcome event
  // (the one `gateway()` above reached) ...
  const auto cfg = router_->sync().merged();
  EXPECT_EQ(cfg["http"]["services"]["tenant-" + a + "-gateway"]["loadBalancer"]["servers"][0].value(
                "url", ""),
            "http://sp-" + a + "-kong:8000");
  // ... and the database host to A's own pooler.
  const auto& tcp = cfg["tcp"]["routers"]["tenant-" + a + "-db"];
  EXPECT_EQ(tcp.value("rule", ""), "HostSNI(`db." + a + "." + kDomain + "`)");
  EXPECT_EQ(cfg["tcp"]["services"]["tenant-" + a + "-db"]["loadBalancer"]["servers"][0].value(
                "address", ""),
            "sp-" + a + "-pooler:6543");
  // ... and that upstream is tenant A's pooler and no other container.
  const std::string pooler_ip = ip_of("sp-" + a + "-pooler", "sp-test-edge");
  httplib::Client pooler(pooler_ip, 6543);
  auto pr = pooler.Get("/whoami");
  ASSERT_TRUE(pr);
  EXPECT_NE(pr->body.find("\"service\":\"pooler\",\"ref\":\"" + a + "\""), std::string::npos)
      << pr->body;
}

TEST_F(DockerTest, RotationBringsTheKeptDatabaseToTheNewPasswordBeforeItsUsersStart) {
  start_provisioner();
  const auto m = call("create", "", "rotor");
  const std::string ref = m.tenant().ref();
  wait_settled(ref, m.sequence(), v1::PHASE_ACTIVE);
  const auto before = credentials(ref);
  ASSERT_FALSE(before.db_password().empty());
  // The db's volume was initialised with this password, and the db refuses
  // others. A file of the test's own marks the volume, to find it again.
  const std::string db = "sp-" + ref + "-db";
  const std::string marker = "/var/lib/postgresql/data/test-marker";
  ASSERT_EQ(exec(db, {"/bin/sh", "-c", ": > " + marker}), 0);
  const Json db_before = containers(ref).at("db")["Id"];
  ASSERT_EQ(db_login(ref, "auth", before.db_password()), 0);
  ASSERT_NE(db_login(ref, "auth", "not-the-password"), 0) << "the db accepts anything";

  const auto rot = call("rotate", ref);
  const auto t = wait_settled(ref, rot.sequence(), v1::PHASE_ACTIVE);
  EXPECT_EQ(t.status(), "ACTIVE_HEALTHY") << describe(ref);
  const auto after = credentials(ref);
  ASSERT_NE(after.db_password(), before.db_password());
  // A new db container with the new password, on the volume initialised
  // with the old one.
  const auto cs = containers(ref);
  EXPECT_NE(cs.at("db")["Id"], db_before) << "db was not recreated";
  EXPECT_EQ(exec(db, {"/bin/ls", marker}), 0) << "the volume was replaced";
  const auto report = health(ref);
  EXPECT_EQ(report.services_size(), static_cast<int>(kManagementApiNames.size()));
  for (const auto& s : report.services()) EXPECT_EQ(s.status(), "ACTIVE_HEALTHY") << s.name();
  // The services that use the database hold the new password (their health
  // checks log in with it), and the kept database accepts it, not the old.
  std::set<std::string> users;
  for (const auto& [service, c] : cs) {
    EXPECT_EQ(health_status(c), "healthy") << service;
    for (const auto& e : c["Config"]["Env"]) {
      const std::string kv = e;
      if (kv.rfind("DB_PASSWORD=", 0) != 0) continue;
      users.insert(service);
      EXPECT_TRUE(kv.substr(12) == after.db_password()) << service << " has another password";
    }
  }
  EXPECT_EQ(users, (std::set<std::string>{"auth", "pooler", "rest", "storage"}));
  for (const auto& service : users) {
    EXPECT_EQ(db_login(ref, service, after.db_password()), 0) << service;
    EXPECT_NE(db_login(ref, service, before.db_password()), 0)
        << service << ": the old password works";
  }
}

TEST_F(DockerTest, WithoutOnHealthyARotationLocksTheServicesOutOfTheKeptDatabase) {
  // The control of the test above: the stand-ins do show the failure the
  // on_healthy command prevents (a db that keeps the password of its first
  // start, and services that fail their health check without a login).
  testenv::TempDir dir("sp-spec");
  std::string text = read_file(test_spec());
  const std::string hook = "    on_healthy: {exec: [\"/sp-standin\", \"set-password\"]}\n";
  ASSERT_NE(text.find(hook), std::string::npos);
  text.erase(text.find(hook), hook.size());
  const std::string spec = dir.path() + "/no-hook.yaml";
  std::ofstream(spec) << text;
  start_provisioner(spec);
  const auto m = call("create", "", "lockedout");
  const std::string ref = m.tenant().ref();
  wait_settled(ref, m.sequence(), v1::PHASE_ACTIVE);
  const auto before = credentials(ref);
  call("rotate", ref);
  v1::TenantCredentials after;
  ASSERT_TRUE(eventually([&] {
    after = credentials(ref);
    return after.db_password() != before.db_password();
  }));
  // auth recreated with the new password, and unhealthy: it cannot log in.
  ASSERT_TRUE(eventually([&] {
    const auto cs = containers(ref);
    const auto auth = cs.find("auth");
    if (auth == cs.end() || health_status(auth->second) != "unhealthy") return false;
    for (const auto& e : auth->second["Config"]["Env"])
      if (e == "DB_PASSWORD=" + after.db_password()) return true;
    return false;
  })) << describe(ref);
  EXPECT_NE(db_login(ref, "auth", after.db_password()), 0);
  EXPECT_EQ(db_login(ref, "auth", before.db_password()), 0)
      << "the db took the new password by itself";
}

TEST_F(DockerTest, TenantsCannotReachEachOther) {
  start_provisioner();
  const auto ma = call("create", "", "alpha");
  const auto mb = call("create", "", "beta");
  const std::string a = ma.tenant().ref(), b = mb.tenant().ref();
  wait_settled(a, ma.sequence(), v1::PHASE_ACTIVE);
  wait_settled(b, mb.sequence(), v1::PHASE_ACTIVE);
  std::string from = "sp-" + a + "-db";
  auto wget = [&](const std::string& url) {
    // busybox wget's own -T crashes (static build); timeout(1) bounds it.
    return exec(from, {"/bin/timeout", "3", "/bin/wget", "-q", "-O", "/dev/null", url});
  };
  // Control: its own services answer by name (so a refusal below means something).
  EXPECT_EQ(wget("http://rest:3000/health"), 0);
  EXPECT_EQ(wget("http://sp-" + a + "-kong:8000/health"), 0);
  // From A's gateway, which is on the shared edge network as well: none of
  // B's services that live on B's network alone, by name or by address.
  // (B's gateway and pooler are on the edge network and answer there as
  // they answer the edge: with B's JWT or B's password only.)
  from = "sp-" + a + "-kong";
  EXPECT_EQ(wget("http://rest:3000/health"), 0) << "control from A's gateway";
  for (const std::string service : {"db", "rest", "auth", "storage"}) {
    const std::string name = "sp-" + b + "-" + service;
    const int port = service == "db"     ? 5432
                     : service == "rest" ? 3000
                     : service == "auth" ? 9999
                                         : 5000;
    EXPECT_NE(wget("http://" + name + ":" + std::to_string(port) + "/health"), 0) << name;
    const std::string ip = ip_of(name, "sp-" + b);
    ASSERT_FALSE(ip.empty()) << name;
    EXPECT_NE(wget("http://" + ip + ":" + std::to_string(port) + "/health"), 0)
        << name << " at " << ip << " from A's gateway";
  }
  from = "sp-" + a + "-db";
  for (const std::string service : {"db", "rest", "kong", "pooler"}) {
    const std::string name = "sp-" + b + "-" + service;
    const int port = service == "db"     ? 5432
                     : service == "rest" ? 3000
                     : service == "kong" ? 8000
                                         : 6543;
    EXPECT_NE(wget("http://" + name + ":" + std::to_string(port) + "/health"), 0) << name;
    for (const std::string& net : {"sp-" + b, std::string("sp-test-edge")}) {
      const std::string ip = ip_of(name, net);
      if (ip.empty()) continue;
      EXPECT_NE(wget("http://" + ip + ":" + std::to_string(port) + "/health"), 0)
          << name << " at " << ip;
    }
  }
}

TEST_F(DockerTest, PauseResumeDeleteInEveryPhaseIncludingMidStart) {
  // storage takes 3 s to become healthy, so kong waits: a window mid-start.
  testenv::TempDir dir("sp-spec");
  const std::string spec = slow_spec(dir, 3000);
  start_provisioner(spec);

  // Pause mid-start, then resume, then delete mid-start.
  const auto m = call("create", "", "slowpoke");
  const std::string ref = m.tenant().ref();
  ASSERT_TRUE(eventually([&] { return containers(ref).count("storage") == 1; }));
  v1::GetTenantRequest get;
  get.set_ref(ref);
  v1::Tenant t;
  ASSERT_TRUE(tenants_->GetTenant(ctx().get(), get, &t).ok());
  EXPECT_EQ(t.phase(), v1::PHASE_PROVISIONING) << "converged before the slow service was healthy";
  const auto p = call("pause", ref);
  wait_settled(ref, p.sequence(), v1::PHASE_PAUSED);
  for (const auto& [service, c] : containers(ref))
    EXPECT_FALSE(c["State"].value("Running", true)) << service << " runs while PAUSED";
  const auto r = call("resume", ref);
  const auto active = wait_settled(ref, r.sequence(), v1::PHASE_ACTIVE);
  EXPECT_EQ(active.status(), "ACTIVE_HEALTHY");
  for (const auto& [service, c] : containers(ref))
    EXPECT_TRUE(c["State"].value("Running", false)) << service;
  // Paused again, then deleted while paused.
  const auto p2 = call("pause", ref);
  wait_settled(ref, p2.sequence(), v1::PHASE_PAUSED);
  const auto d = call("delete", ref);
  wait_settled(ref, d.sequence(), v1::PHASE_DELETED);
  EXPECT_TRUE(containers(ref).empty());
  EXPECT_EQ(docker_->call("GET", "/networks/sp-" + ref).error().code, errc::not_found);
  const Json vf{{"label", Json::array({"supaplane.tenant=" + ref})}};
  auto vols = docker_->call("GET", "/volumes?filters=" + docker::Client::url_encode(vf.dump()));
  ASSERT_TRUE(vols.ok());
  EXPECT_TRUE(vols->body["Volumes"].is_null() || vols->body["Volumes"].empty());

  // Delete while provisioning.
  const auto m2 = call("create", "", "gone");
  const std::string ref2 = m2.tenant().ref();
  ASSERT_TRUE(eventually([&] { return containers(ref2).count("db") == 1; }));
  const auto d2 = call("delete", ref2);
  wait_settled(ref2, d2.sequence(), v1::PHASE_DELETED);
  EXPECT_TRUE(containers(ref2).empty());
  EXPECT_EQ(count_events(ref2, "tenant.converge_failed"), 0);
}

// A stack that takes long to turn healthy holds no worker: with a single
// worker, a second tenant's stack is made and started while the first still
// waits for its slow service.
TEST_F(DockerTest, OneTenantsSlowStartDoesNotHoldAnothersConverge) {
  testenv::TempDir dir("sp-spec");
  const std::string spec = slow_spec(dir, 45000);
  start_provisioner(spec, 0, /*workers=*/1);
  const std::size_t services = driver::load_stack_spec(spec).value().services.size();

  const auto ma = call("create", "", "first");
  const std::string a = ma.tenant().ref();
  ASSERT_TRUE(eventually([&] { return containers(a).count("storage") == 1; }));
  const auto mb = call("create", "", "second");
  const std::string b = mb.tenant().ref();
  ASSERT_TRUE(eventually([&] {
    const auto cs = containers(b);
    return cs.size() == services && cs.count("db") && cs.at("db")["State"].value("Running", false);
  })) << describe(b);
  v1::GetTenantRequest get;
  get.set_ref(a);
  v1::Tenant t;
  ASSERT_TRUE(tenants_->GetTenant(ctx().get(), get, &t).ok());
  EXPECT_EQ(t.phase(), v1::PHASE_PROVISIONING)
      << "the first stack finished before the second began: the test shows nothing";
  EXPECT_NE(health_status(containers(a).at("storage")), "healthy");
  // Both are deleted mid-start, on the one worker.
  const auto da = call("delete", a);
  const auto db = call("delete", b);
  wait_settled(a, da.sequence(), v1::PHASE_DELETED);
  wait_settled(b, db.sequence(), v1::PHASE_DELETED);
  EXPECT_TRUE(containers(a).empty());
  EXPECT_TRUE(containers(b).empty());
}

// The remaining transitions: a rotation while the stack is still starting,
// a resume right behind a pause, and a delete of a running stack.
TEST_F(DockerTest, RotateMidStartResumeBehindAPauseAndDeleteWhileActive) {
  testenv::TempDir dir("sp-spec");
  const std::string spec = slow_spec(dir, 3000);
  start_provisioner(spec);
  const std::size_t services = driver::load_stack_spec(spec).value().services.size();

  const auto m = call("create", "", "turnstile");
  const std::string ref = m.tenant().ref();
  ASSERT_TRUE(eventually([&] { return containers(ref).size() == services; }));
  const auto first = jwt_secrets(ref);
  const auto rot = call("rotate", ref);
  auto t = wait_settled(ref, rot.sequence(), v1::PHASE_ACTIVE);
  EXPECT_EQ(t.status(), "ACTIVE_HEALTHY");
  const auto rotated = jwt_secrets(ref);
  ASSERT_EQ(rotated.size(), first.size());
  for (const auto& [where, value] : rotated) {
    EXPECT_EQ(value, rotated.at("kong.JWT_SECRET")) << where;
    EXPECT_NE(value, first.at(where)) << where << " kept the secret of before the rotation";
  }

  call("pause", ref);
  const auto r = call("resume", ref);
  t = wait_settled(ref, r.sequence(), v1::PHASE_ACTIVE);
  EXPECT_EQ(t.status(), "ACTIVE_HEALTHY");
  for (const auto& [service, c] : containers(ref)) {
    EXPECT_TRUE(c["State"].value("Running", false)) << service;
    EXPECT_EQ(health_status(c), "healthy") << service;
  }

  const auto d = call("delete", ref);
  wait_settled(ref, d.sequence(), v1::PHASE_DELETED);
  EXPECT_TRUE(containers(ref).empty());
  EXPECT_EQ(docker_->call("GET", "/networks/sp-" + ref).error().code, errc::not_found);
  EXPECT_EQ(count_events(ref, "tenant.converge_failed"), 0);
}

TEST_F(DockerTest, HealthShowsEachServiceComingUpWhileTheStackStartsAndResumes) {
  // storage takes 3 s to become healthy (and kong waits for it): a window
  // in which some services are healthy and others still coming up.
  testenv::TempDir dir("sp-spec");
  const std::string spec = slow_spec(dir, 3000);
  start_provisioner(spec);

  const auto m = call("create", "", "progress");
  const std::string ref = m.tenant().ref();
  auto statuses = [&] {
    std::map<std::string, std::string> out;
    const auto report = health(ref);
    for (const auto& s : report.services()) out[s.name()] = s.status();
    return out;
  };
  auto names = [](const std::map<std::string, std::string>& h) {
    std::set<std::string> out;
    for (const auto& [n, _] : h) out.insert(n);
    return out;
  };
  auto phase = [&] {
    v1::GetTenantRequest req;
    req.set_ref(ref);
    v1::Tenant t;
    return tenants_->GetTenant(ctx().get(), req, &t).ok() ? t.phase() : v1::PHASE_UNSPECIFIED;
  };
  // Mid-start: every service listed, db up, storage still coming up.
  auto mid_start = [&](v1::Phase during) {
    std::map<std::string, std::string> h;
    const bool seen = eventually([&] {
      h = statuses();
      return names(h) == kManagementApiNames && h["db"] == "ACTIVE_HEALTHY" &&
             h["storage"] == "COMING_UP" && phase() == during;
    });
    std::string got;
    for (const auto& [n, st] : h) got += " " + n + "=" + st;
    return seen ? std::string() : "never seen mid-start in " + v1::Phase_Name(during) + ":" + got;
  };
  auto all_healthy = [&] {
    const auto h = statuses();
    if (names(h) != kManagementApiNames) return false;
    for (const auto& [n, st] : h)
      if (st != "ACTIVE_HEALTHY") return false;
    return true;
  };
  // The api has the tenant (its health is asked for without a sequence).
  ASSERT_TRUE(eventually([&] {
    v1::GetTenantRequest req;
    req.set_ref(ref);
    req.set_min_sequence(m.sequence());
    v1::Tenant t;
    return tenants_->GetTenant(ctx().get(), req, &t).ok();
  }));
  EXPECT_EQ(mid_start(v1::PHASE_PROVISIONING), "");
  wait_settled(ref, m.sequence(), v1::PHASE_ACTIVE);
  EXPECT_TRUE(all_healthy()) << describe(ref);

  // Paused: nothing runs, nothing reported; resuming shows progress again.
  const auto p = call("pause", ref);
  wait_settled(ref, p.sequence(), v1::PHASE_PAUSED);
  EXPECT_TRUE(statuses().empty());
  const auto r = call("resume", ref);
  EXPECT_EQ(mid_start(v1::PHASE_RESUMING), "");
  wait_settled(ref, r.sequence(), v1::PHASE_ACTIVE);
  EXPECT_TRUE(all_healthy()) << describe(ref);
}

TEST_F(DockerTest, DriftKilledAndRemovedContainersAreRepaired) {
  start_provisioner();
  const auto m = call("create", "", "drifty");
  const std::string ref = m.tenant().ref();
  wait_settled(ref, m.sequence(), v1::PHASE_ACTIVE);
  const auto before = containers(ref);
  ASSERT_TRUE(docker_->call("POST", "/containers/sp-" + ref + "-rest/kill").ok());
  ASSERT_TRUE(docker_->call("DELETE", "/containers/sp-" + ref + "-auth?force=1").ok());
  // The daemon's events wake the provisioner; resync is the backstop.
  ASSERT_TRUE(eventually([&] { return count_events(ref, "tenant.drift_detected") >= 1; }))
      << "no DriftDetected";
  ASSERT_TRUE(eventually([&] {
    auto cs = containers(ref);
    if (cs.size() != kContainers) return false;
    for (const auto& [s, c] : cs)
      if (health_status(c) != "healthy") return false;
    v1::GetTenantRequest req;
    req.set_ref(ref);
    v1::Tenant t;
    return tenants_->GetTenant(ctx().get(), req, &t).ok() && t.phase() == v1::PHASE_ACTIVE;
  })) << "not repaired";
  const auto after = containers(ref);
  EXPECT_NE(after.at("auth")["Id"], before.at("auth")["Id"]);
  EXPECT_EQ(after.at("rest")["Id"], before.at("rest")["Id"]) << "a killed container is restarted";
  EXPECT_EQ(after.at("kong")["Id"], before.at("kong")["Id"]) << "untouched ones stay";
}

TEST_F(DockerTest, DriftDisconnectedNetworkAndChangedLimitsAreRepaired) {
  start_provisioner();
  const auto m = call("create", "", "handmade");
  const std::string ref = m.tenant().ref();
  wait_settled(ref, m.sequence(), v1::PHASE_ACTIVE);
  const std::string kong = "sp-" + ref + "-kong", rest = "sp-" + ref + "-rest";
  // A drift event whose reason names `what`; resync (off here) is the
  // backstop for what the daemon's events do not announce (a network
  // disconnect is a network event, without the tenant's label).
  auto drift_named = [&](const std::string& what) {
    return eventually([&] {
      (void)prov_->provisioner().resync();
      for (const auto& r : history(ref))
        if (r.type == "tenant.drift_detected" && r.details.find(what) != std::string::npos)
          return true;
      return false;
    });
  };
  auto repaired = [&] {
    return eventually([&] {
      auto cs = containers(ref);
      if (cs.size() != kContainers) return false;
      for (const auto& [s, c] : cs)
        if (health_status(c) != "healthy") return false;
      v1::GetTenantRequest req;
      req.set_ref(ref);
      v1::Tenant t;
      return tenants_->GetTenant(ctx().get(), req, &t).ok() && t.phase() == v1::PHASE_ACTIVE &&
             t.observed_generation() == t.generation() && t.status() == "ACTIVE_HEALTHY";
    });
  };

  // The gateway taken off the edge network: Traefik cannot reach it.
  Json disconnect{{"Container", kong}, {"Force", true}};
  ASSERT_TRUE(docker_->call("POST", "/networks/sp-test-edge/disconnect", &disconnect).ok());
  ASSERT_EQ(ip_of(kong, "sp-test-edge"), "");
  ASSERT_TRUE(drift_named(kong + " changed by hand: disconnected from network sp-test-edge"))
      << "no DriftDetected naming the network";
  ASSERT_TRUE(repaired()) << describe(ref);
  EXPECT_NE(ip_of(kong, "sp-test-edge"), "") << "the gateway is not back on the edge network";

  // Another service's memory limit raised by `docker update` (Engine API).
  Json update{{"Memory", 48LL * 1024 * 1024}};
  ASSERT_TRUE(docker_->call("POST", "/containers/" + rest + "/update", &update).ok());
  ASSERT_EQ(containers(ref).at("rest")["HostConfig"].value("Memory", 0LL), 48LL * 1024 * 1024);
  ASSERT_TRUE(drift_named(rest + " changed by hand: memory limit 50331648 instead of 33554432"))
      << "no DriftDetected naming the memory limit";
  ASSERT_TRUE(repaired()) << describe(ref);
  EXPECT_EQ(containers(ref).at("rest")["HostConfig"].value("Memory", 0LL), 32LL * 1024 * 1024);

  // Repaired means settled: more checks find nothing more to record.
  const int drifts = count_events(ref, "tenant.drift_detected");
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(prov_->provisioner().resync().ok());
  EXPECT_EQ(count_events(ref, "tenant.drift_detected"), drifts);
}

/// What the named loggers print while it lives (added before the threads
/// that log start, removed after they stop).
class CapturedLog {
 public:
  explicit CapturedLog(std::vector<std::string> loggers)
      : loggers_(std::move(loggers)),
        sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(out_)) {
    for (const auto& l : loggers_) logging::get(l)->sinks().push_back(sink_);
  }
  ~CapturedLog() {
    for (const auto& l : loggers_) {
      auto& sinks = logging::get(l)->sinks();
      sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
    }
  }
  std::string text() {
    sink_->flush();
    return out_.str();
  }

 private:
  std::vector<std::string> loggers_;
  std::ostringstream out_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
};

TEST_F(DockerTest, AnImageThatCannotBePulledFailsTheTenantNamingItAndLeaksNothing) {
  // A registry that refuses at once (nothing listens on port 1): no network
  // needed. Credentials for it in the auth file, so the failure path runs
  // with them and must never show them.
  testenv::TempDir dir("sp-pull");
  const std::string image = "127.0.0.1:1/supaplane/missing:1";
  std::string text = read_file(test_spec());
  const std::string db_image = "image: supaplane-test/standin:1\n    health_name: db";
  ASSERT_NE(text.find(db_image), std::string::npos);
  text.replace(text.find(db_image), db_image.size(), "image: " + image + "\n    health_name: db");
  const std::string spec = dir.path() + "/unpullable.yaml";
  std::ofstream(spec) << text;
  const std::string password = "pull-secret-Zq8x";
  const std::string userpass = "puller:" + password;
  std::string auth(sodium_base64_ENCODED_LEN(userpass.size(), sodium_base64_VARIANT_ORIGINAL),
                   '\0');
  sodium_bin2base64(auth.data(), auth.size(),
                    reinterpret_cast<const unsigned char*>(userpass.data()), userpass.size(),
                    sodium_base64_VARIANT_ORIGINAL);
  auth.resize(auth.find('\0'));
  const std::string auth_file = dir.path() + "/config.json";
  std::ofstream(auth_file) << Json{{"auths", {{"127.0.0.1:1", {{"auth", auth}}}}}}.dump();
  // The same lookup the pull makes finds them (so the check below means
  // something); its X-Registry-Auth value is a secret as well.
  const std::string header = docker::Client(daemon_->host(), auth_file).registry_auth_for(image);
  ASSERT_FALSE(header.empty());

  CapturedLog log({"docker", "docker_driver", "provisioner"});
  auto o = prov_options(spec);
  o.registry_auth_file = auth_file;
  prov_ = std::make_unique<provisioner::App>(o);
  ASSERT_TRUE(prov_->start().ok());
  ASSERT_TRUE(eventually([&] { return prov_->readiness().empty(); })) << prov_->readiness();
  token_ = sign_up("owner@example.com", "owner-password");

  const auto m = call("create", "", "unpullable");
  const std::string ref = m.tenant().ref();
  const auto t = wait_settled(ref, m.sequence(), v1::PHASE_FAILED);
  EXPECT_NE(t.last_error().find("image " + image + " cannot be pulled"), std::string::npos)
      << t.last_error();
  // Docker's own reason, not only ours.
  EXPECT_NE(t.last_error().find("connection refused"), std::string::npos) << t.last_error();
  EXPECT_EQ(containers(ref).count("db"), 0u);

  // Deleting the failed tenant leaves nothing of it on the daemon.
  const auto d = call("delete", ref);
  wait_settled(ref, d.sequence(), v1::PHASE_DELETED);
  EXPECT_TRUE(containers(ref).empty());
  EXPECT_EQ(docker_->call("GET", "/networks/sp-" + ref).error().code, errc::not_found);
  const Json vf{{"label", Json::array({"supaplane.tenant=" + ref})}};
  auto vols = docker_->call("GET", "/volumes?filters=" + docker::Client::url_encode(vf.dump()));
  ASSERT_TRUE(vols.ok());
  EXPECT_TRUE(vols->body["Volumes"].is_null() || vols->body["Volumes"].empty());

  prov_.reset();  // its threads stop logging before the capture ends
  const std::string logged = log.text();
  EXPECT_NE(logged.find(image), std::string::npos) << "the capture saw nothing";
  std::string trail;
  for (const auto& r : history(ref)) trail += r.details + "\n";
  for (const std::string& secret : {password, auth, header}) {
    EXPECT_EQ(t.last_error().find(secret), std::string::npos);
    EXPECT_EQ(trail.find(secret), std::string::npos);
    EXPECT_EQ(logged.find(secret), std::string::npos);
  }
}

TEST_F(DockerTest, AnUnhealthyServiceMakesTheTenantActiveUnhealthy) {
  start_provisioner();
  const auto m = call("create", "", "sickly");
  const std::string ref = m.tenant().ref();
  wait_settled(ref, m.sequence(), v1::PHASE_ACTIVE);
  const std::string storage = "sp-" + ref + "-storage";
  ASSERT_EQ(exec(storage, {"/bin/sh", "-c", ": > /tmp/fail"}), 0);
  auto status = [&] {
    v1::GetTenantRequest req;
    req.set_ref(ref);
    v1::Tenant t;
    return tenants_->GetTenant(ctx().get(), req, &t).ok() ? t.status() : std::string();
  };
  ASSERT_TRUE(eventually([&] { return status() == "ACTIVE_UNHEALTHY"; })) << status();
  bool storage_unhealthy = false;
  const auto report = health(ref);
  for (const auto& s : report.services())
    if (s.name() == "storage") storage_unhealthy = s.status() == "UNHEALTHY" && !s.healthy();
  EXPECT_TRUE(storage_unhealthy);
  ASSERT_EQ(exec(storage, {"/bin/sh", "-c", "rm /tmp/fail"}), 0);
  EXPECT_TRUE(eventually([&] { return status() == "ACTIVE_HEALTHY"; })) << status();
}

TEST_F(DockerTest, DaemonAwayForTenSecondsDuringConvergesNoneFail) {
  start_provisioner(test_spec(), /*resync_interval_ms=*/1000);
  std::vector<v1::TenantMutation> ms;
  for (int i = 0; i < 2; ++i) ms.push_back(call("create", "", "outage" + std::to_string(i)));
  daemon_->stop_keep();  // containers die with the daemon (no live-restore)
  std::this_thread::sleep_for(std::chrono::seconds(10));
  daemon_->start();
  // Stacks that were running came back stopped: the provisioner's own
  // periodic resync (every second here) repairs what the events missed.
  for (auto& m : ms) {
    const std::string ref = m.tenant().ref();
    ASSERT_TRUE(eventually(
        [&] {
          v1::GetTenantRequest req;
          req.set_ref(ref);
          v1::Tenant t;
          if (!tenants_->GetTenant(ctx().get(), req, &t).ok() || t.phase() != v1::PHASE_ACTIVE ||
              t.observed_generation() != t.generation() || t.status() != "ACTIVE_HEALTHY")
            return false;
          const auto cs = containers(ref);
          return cs.size() == kContainers && std::all_of(cs.begin(), cs.end(), [](const auto& c) {
                   return c.second["State"].value("Running", false) &&
                          health_status(c.second) == "healthy";
                 });
        },
        std::chrono::seconds(180)))
        << ref << ": " << describe(ref);
    EXPECT_EQ(count_events(ref, "tenant.converge_failed"), 0) << ref;
  }
}

TEST_F(DockerTest, ProvisionerKilledTwiceMidConvergeLeavesNothingBehind) {
  // The real binary, so SIGKILL is real; the api stays in-process.
  testenv::TempDir logs("sp-crash");
  testenv::Process prov;
  auto start = [&] {
    ::setenv("SUPAPLANE_MASTER_KEY", kMasterKey, 1);
    prov.start({SUPAPLANE_PROVISIONER_BIN,
                "--nats-url",
                nats_.url(),
                "--database-url",
                pg().admin_dsn(db_),
                "--driver",
                "docker",
                "--docker-host",
                daemon_->host(),
                "--stack-spec",
                test_spec(),
                "--edge-network",
                "sp-test-edge",
                "--base-domain",
                kDomain,
                "--metrics-addr",
                "127.0.0.1:" + std::to_string(testenv::free_port()),
                "--resync-interval-ms",
                "2000",
                "--log-level",
                "warn"},
               logs.path() + "/provisioner.log");
  };
  start();
  token_ = sign_up("owner@example.com", "owner-password");
  // Six tenants; then each gets a last desire while stacks are being built.
  std::vector<std::string> refs;
  for (int i = 0; i < 6; ++i)
    refs.push_back(call("create", "", "crash" + std::to_string(i)).tenant().ref());
  ASSERT_TRUE(eventually([&] { return containers(refs[0]).size() >= 2; })) << "nothing started";
  prov.stop(SIGKILL);
  std::map<std::string, std::uint64_t> last;
  for (int i = 0; i < 6; ++i) {
    const std::string what = i % 3 == 0 ? "delete" : i % 3 == 1 ? "pause" : "rotate";
    last[refs[i]] = call(what, refs[i]).sequence();
  }
  start();
  ASSERT_TRUE(eventually([&] {
    for (const auto& r : refs)
      for (const auto& [s, c] : containers(r))
        if (c["State"].value("Running", false)) return true;
    return false;
  }));
  prov.stop(SIGKILL);
  start();
  for (int i = 0; i < 6; ++i) {
    const v1::Phase want = i % 3 == 0   ? v1::PHASE_DELETED
                           : i % 3 == 1 ? v1::PHASE_PAUSED
                                        : v1::PHASE_ACTIVE;
    wait_settled(refs[i], last[refs[i]], want);
    const auto cs = containers(refs[i]);
    if (want == v1::PHASE_DELETED) {
      EXPECT_TRUE(cs.empty()) << refs[i] << " leaked containers";
      EXPECT_FALSE(docker_->call("GET", "/networks/sp-" + refs[i]).ok())
          << refs[i] << " leaked its network";
      const Json vf{{"label", Json::array({"supaplane.tenant=" + refs[i]})}};
      auto vols = docker_->call("GET", "/volumes?filters=" + docker::Client::url_encode(vf.dump()));
      ASSERT_TRUE(vols.ok());
      EXPECT_TRUE(vols->body["Volumes"].is_null() || vols->body["Volumes"].empty())
          << refs[i] << " leaked volumes";
    } else {
      EXPECT_EQ(cs.size(), kContainers) << refs[i];
      for (const auto& [s, c] : cs)
        EXPECT_EQ(c["State"].value("Running", false), want == v1::PHASE_ACTIVE)
            << refs[i] << " " << s;
    }
  }
  // Nothing of anyone else's: every managed container belongs to a live tenant.
  const Json mf{{"label", Json::array({"supaplane.managed=true"})}};
  auto all = docker_->call(
      "GET", "/containers/json?all=1&filters=" + docker::Client::url_encode(mf.dump()));
  ASSERT_TRUE(all.ok());
  std::set<std::string> live;
  for (int i = 0; i < 6; ++i)
    if (i % 3 != 0) live.insert(refs[i]);
  for (const auto& c : all->body) {
    const std::string ref = c["Labels"].value("supaplane.tenant", "");
    if (std::find(refs.begin(), refs.end(), ref) != refs.end()) {
      EXPECT_TRUE(live.count(ref)) << "container of deleted tenant " << ref;
    }
  }
  prov.stop();
}

TEST_F(DockerTest, DockerDriverKeepsTheDriverContract) {
  driver::DockerDriver d(driver_options());
  ASSERT_TRUE(d.connect().ok());
  driver::StackRequest r;
  r.ref = "contractdockeraaaaaa";
  refs_.push_back(r.ref);
  r.keys = secrets::generate_tenant_keys(r.ref, "supaplane", 1'700'000'000).value();
  r.db_password = r.keys.db_password;
  auto rotated = r;
  rotated.keys = secrets::generate_tenant_keys(r.ref, "supaplane", 1'700'000'100).value();
  rotated.keys.stack_seed = r.keys.stack_seed;
  rotated.db_password = rotated.keys.db_password;
  testenv::driver_contract(d, r, rotated, [&] {
    ASSERT_TRUE(docker_->call("DELETE", "/containers/sp-" + r.ref + "-rest?force=1").ok());
  });
}

// A registry that accepts and never answers: the daemon's pull of an image
// from it hangs until the registry goes.
class SilentRegistry {
 public:
  SilentRegistry() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(fd_, 16), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] {
      for (;;) {
        const int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        std::lock_guard lk(mu_);
        held_.push_back(c);
      }
    });
  }
  ~SilentRegistry() { close(); }
  int port() const { return port_; }
  /// Connections the daemon opened and still waits on (not closed by it).
  std::size_t held() {
    std::lock_guard lk(mu_);
    std::size_t open = 0;
    char b;
    for (int c : held_) open += ::recv(c, &b, 1, MSG_PEEK | MSG_DONTWAIT) != 0 ? 1 : 0;
    return open;
  }
  void close() {
    if (fd_ < 0) return;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    fd_ = -1;
    thread_.join();
    std::lock_guard lk(mu_);
    for (int c : held_) ::close(c);
    held_.clear();
  }

 private:
  int fd_{-1};
  int port_{0};
  std::thread thread_;
  std::mutex mu_;
  std::vector<int> held_;
};

// A pull is long work: the driver starts it and returns, the services
// whose images are there start meanwhile, a pause does not wait for it,
// and a pull that fails is a converge error naming the image.
TEST_F(DockerTest, APullInFlightHoldsNoCallAndAFailedPullNamesTheImage) {
  SilentRegistry registry;
  auto o = driver_options();
  const std::string image = "127.0.0.1:" + std::to_string(registry.port()) + "/supaplane/slow:1";
  for (auto& svc : o.spec.services)
    if (svc.name == "kong") svc.image = image;
  driver::DockerDriver d(o);
  ASSERT_TRUE(d.connect().ok());
  driver::StackRequest r;
  r.ref = "pullsilentaaaaaaaaaa";
  refs_.push_back(r.ref);
  r.keys = secrets::generate_tenant_keys(r.ref, "supaplane", 1'700'000'000).value();
  r.db_password = r.keys.db_password;

  auto p = d.provision(r);
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_FALSE(p->done);
  // The call came back while the pull it started is still waiting on the
  // registry (a call that waited for the pull would still be waiting).
  ASSERT_TRUE(eventually([&] { return registry.held() > 0; })) << "the pull never started";
  // Every service but the gateway comes up meanwhile.
  ASSERT_TRUE(eventually(
      [&] {
        p = d.provision(r);
        if (!p.ok()) return false;
        const auto cs = containers(r.ref);
        return cs.size() == kContainers - 1 && !cs.count("kong") &&
               std::all_of(cs.begin(), cs.end(),
                           [](const auto& c) { return health_status(c.second) == "healthy"; });
      },
      std::chrono::seconds(120)))
      << (p.ok() ? p->waiting_on : p.error().message);
  // (The daemon gives up on a silent registry after some 30 s; the failure
  // is the answer for 30 s, then the next step pulls again, so this is a
  // pull.)
  EXPECT_FALSE(p->done);
  EXPECT_NE(p->waiting_on.find(image), std::string::npos) << p->waiting_on;
  // A pause does not wait for the pull either.
  ASSERT_TRUE(d.pause(r).ok());
  for (const auto& [service, c] : containers(r.ref))
    EXPECT_FALSE(c["State"].value("Running", true)) << service;
  // The registry goes: the pull fails, and the converge says which image.
  registry.close();
  std::string error;
  ASSERT_TRUE(eventually(
      [&] {
        auto q = d.provision(r);
        if (q.ok()) return false;
        error = q.error().message;
        return true;
      },
      std::chrono::seconds(120)));
  EXPECT_NE(error.find(image), std::string::npos) << error;
  ASSERT_TRUE(d.remove(r.ref).ok());
  EXPECT_TRUE(containers(r.ref).empty());
}

TEST(DockerSpec, ABadSpecRefusesTheStartNamingFileServiceAndField) {
  testenv::TempDir dir("sp-spec");
  std::string text = read_file(test_spec());
  text.replace(text.find("depends_on: {db: healthy}"), 25, "depends_on: {db: ready}");
  const std::string path = dir.path() + "/bad.yaml";
  std::ofstream(path) << text;
  provisioner::AppOptions o;
  o.driver = "docker";
  o.stack_spec = path;
  o.master_key = kMasterKey;
  provisioner::App app(o);
  auto st = app.start();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find(path), std::string::npos) << st.error().message;
  EXPECT_NE(st.error().message.find("auth.depends_on.db"), std::string::npos) << st.error().message;
  EXPECT_NE(st.error().message.find("healthy or started"), std::string::npos);

  provisioner::AppOptions other;
  other.driver = "kubernetes";
  other.master_key = kMasterKey;
  provisioner::App app2(other);
  auto st2 = app2.start();
  ASSERT_FALSE(st2.ok());
  EXPECT_NE(st2.error().message.find("postgres or docker"), std::string::npos);
}

}  // namespace
