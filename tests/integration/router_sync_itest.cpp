// supaplane-router-sync against real NATS, Redis and PostgreSQL, with the api
// and the provisioner converging tenants: the Traefik directory and HTTP
// provider follow every phase, the edge key check follows keys and phases,
// restarts and a SIGKILL mid-burst leave the directory equal to the projection.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "alert_rules.hpp"
#include "api_options.hpp"
#include "app.hpp"
#include "eventually.hpp"
#include "provisioner_app.hpp"
#include "provisioner_options.hpp"
#include "render_state.hpp"
#include "router_app.hpp"
#include "servers.hpp"
#include "supaplane/auth/jwt.hpp"
#include "supaplane/v1/api.grpc.pb.h"
#include "traefik_check.hpp"

namespace {

using namespace supaplane;
namespace v1 = supaplane::v1;
using SteadyClock = std::chrono::steady_clock;
using nlohmann::json;

const char* kMasterKey = testenv::kTestMasterKey;
const char* kDomain = "supabase.localhost";

testenv::PostgresServer& pg() { return testenv::shared_postgres_with_passwords(); }

using testenv::eventually;

class RouterSyncTest : public ::testing::Test {
 protected:
  void SetUp() override {
    nats_.start();
    redis_.start();
    static int n = 0;
    db_ = "router_" + std::to_string(::getpid()) + "_" + std::to_string(++n);
    pg().create_database(db_);
    auto ao = testenv::api_options(nats_, redis_, pg().admin_dsn(db_), std::string(40, 's'));
    ao.admin_email = "admin@example.com";
    ao.admin_password = "admin-password";
    ao.master_key = kMasterKey;
    api_ = std::make_unique<api::ApiApp>(ao);
    ASSERT_TRUE(api_->start().ok());
    prov_ = std::make_unique<provisioner::App>(testenv::provisioner_options(nats_, pg(), db_));
    ASSERT_TRUE(prov_->start().ok());
    start_router();
    ASSERT_TRUE(eventually([&] {
      return api_->readiness().empty() && prov_->readiness().empty() &&
             router_->readiness().empty();
    })) << api_->readiness()
        << prov_->readiness() << router_->readiness();
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(api_->grpc_port()),
                                   grpc::InsecureChannelCredentials());
    accounts_ = v1::AccountService::NewStub(channel_);
    tenants_ = v1::TenantService::NewStub(channel_);
    admin_ = v1::AdminService::NewStub(channel_);
    token_ = sign_up("owner@example.com", "owner-password");
    // The api creates the admin account in the background after it is ready.
    ASSERT_TRUE(eventually([&] {
      v1::LoginRequest req;
      req.set_email("admin@example.com");
      req.set_password("admin-password");
      v1::SessionResponse resp;
      grpc::ClientContext c;
      if (!accounts_->Login(&c, req, &resp).ok()) return false;
      admin_token_ = resp.token();
      return true;
    }));
  }
  void TearDown() override {
    router_.reset();
    prov_.reset();
    api_.reset();
  }

  router::AppOptions router_options() {
    router::AppOptions o;
    o.nats_url = nats_.url();
    o.redis_url = redis_.url();
    o.database_url = pg().admin_dsn(db_);
    o.master_key = kMasterKey;
    o.http_addr = "127.0.0.1:0";
    o.metrics_addr = "127.0.0.1:0";
    o.public_url = "http://127.0.0.1:8082";  // fixed: restarts render the same bytes
    o.traefik_dir = dir_path();
    o.render.base_domain = kDomain;
    o.render.console_url = "http://console.internal:3000";
    return o;
  }
  void start_router() {
    router_ = std::make_unique<router::App>(router_options());
    ASSERT_TRUE(router_->start().ok());
  }
  std::string dir_path() const { return tmp_.path() + "/traefik"; }

  std::string sign_up(const std::string& email, const std::string& pw) {
    v1::SessionResponse resp;
    grpc::ClientContext c;
    v1::SignUpRequest req;
    req.set_email(email);
    req.set_password(pw);
    const auto s = accounts_->SignUp(&c, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.token();
  }
  std::unique_ptr<grpc::ClientContext> ctx(const std::string& token) {
    auto c = std::make_unique<grpc::ClientContext>();
    c->AddMetadata("authorization", "Bearer " + token);
    return c;
  }

  v1::TenantMutation call(const std::string& what, const std::string& ref) {
    v1::TenantMutation m;
    grpc::Status s;
    v1::TenantRequest req;
    req.set_ref(ref);
    if (what == "create") {
      v1::CreateTenantRequest cr;
      static int n = 0;
      cr.set_name("shop " + std::to_string(++n));
      cr.set_plan(v1::PLAN_STARTER);
      s = tenants_->CreateTenant(ctx(token_).get(), cr, &m);
    } else if (what == "pause") {
      s = tenants_->PauseTenant(ctx(token_).get(), req, &m);
    } else if (what == "resume") {
      s = tenants_->ResumeTenant(ctx(token_).get(), req, &m);
    } else if (what == "delete") {
      s = tenants_->DeleteTenant(ctx(token_).get(), req, &m);
    } else if (what == "rotate") {
      s = tenants_->RotateTenantKeys(ctx(token_).get(), req, &m);
    } else if (what == "suspend") {
      v1::SuspendTenantRequest sr;
      sr.set_ref(ref);
      sr.set_reason("unpaid");
      s = admin_->SuspendTenant(ctx(admin_token_).get(), sr, &m);
    } else if (what == "unsuspend") {
      s = admin_->UnsuspendTenant(ctx(admin_token_).get(), req, &m);
    }
    EXPECT_TRUE(s.ok()) << what << ": " << s.error_message();
    return m;
  }

  /// Waits until the tenant converged its latest generation into `phase`.
  void wait_settled(const std::string& ref, std::uint64_t min_sequence, v1::Phase phase) {
    const bool ok = eventually([&] {
      v1::GetTenantRequest req;
      req.set_ref(ref);
      req.set_min_sequence(min_sequence);
      v1::Tenant t;
      return tenants_->GetTenant(ctx(token_).get(), req, &t).ok() && t.phase() == phase &&
             t.observed_generation() == t.generation();
    });
    ASSERT_TRUE(ok) << ref << " never settled in " << v1::Phase_Name(phase);
  }
  std::string create_active() {
    auto m = call("create", "");
    const std::string ref = m.tenant().ref();
    wait_settled(ref, m.sequence(), v1::PHASE_ACTIVE);
    if (::testing::Test::HasFailure()) throw std::runtime_error("tenant " + ref + " not active");
    return ref;
  }

  v1::TenantCredentials credentials(const std::string& ref) {
    v1::GetTenantRequest req;
    req.set_ref(ref);
    v1::TenantCredentials c;
    EXPECT_TRUE(tenants_->GetTenantCredentials(ctx(token_).get(), req, &c).ok());
    return c;
  }

  httplib::Result get(const std::string& path, const httplib::Headers& h, int port = 0) {
    httplib::Client c("127.0.0.1", port ? port : router_->http_port());
    c.set_read_timeout(10, 0);
    return c.Get(path, h);
  }
  int forward(const std::string& ref, const std::string& key, std::string* authz = nullptr) {
    auto r = get("/auth/forward", {{"X-Forwarded-Host", ref + "." + kDomain}, {"apikey", key}});
    if (!r) return -1;
    if (authz) *authz = r->get_header_value("Authorization");
    return r->status;
  }

  /// The directory merged as Traefik's file provider merges it; problems noted.
  json directory_config(std::vector<std::string>* problems = nullptr) {
    TraefikDirFiles files = read_dir();
    std::vector<std::string> p;
    auto j = testenv::merge_yaml_files(files, p);
    if (problems) *problems = p;
    return j;
  }
  using TraefikDirFiles = std::map<std::string, std::string>;
  TraefikDirFiles read_dir() {
    router::TraefikDir d(dir_path());
    return d.read_all().value();
  }
  json http_config() {
    auto r = get("/traefik/dynamic", {});
    EXPECT_TRUE(r && r->status == 200);
    return r ? json::parse(r->body) : json();
  }
  bool has_router(const json& config, const std::string& name) {
    return config.contains("http") && config["http"].contains("routers") &&
           config["http"]["routers"].contains(name);
  }
  /// The tenant's API router sends traffic to its gateway: router-sync has
  /// applied the tenant's ACTIVE state (a provisioning tenant already has an
  /// "-api" router, pointed at the maintenance handler).
  bool routes_to_gateway(const json& config, const std::string& ref) {
    const std::string name = "tenant-" + ref + "-api";
    return has_router(config, name) &&
           config["http"]["routers"][name].value("service", "") == "tenant-" + ref + "-gateway";
  }
  /// Waits until router-sync has written everything it has seen.
  void settle_router() { ASSERT_TRUE(router_->sync().wait_flushed(std::chrono::seconds(30))); }
  /// Two active tenants, the second then paused, everything written.
  std::pair<std::string, std::string> active_and_paused() {
    const std::string a = create_active();
    const std::string b = create_active();
    wait_settled(b, call("pause", b).sequence(), v1::PHASE_PAUSED);
    EXPECT_TRUE(
        eventually([&] { return has_router(directory_config(), "tenant-" + b + "-maintenance"); }));
    settle_router();
    return {a, b};
  }

  testenv::TempDir tmp_{"router-sync-itest"};
  testenv::NatsServer nats_;
  testenv::RedisServer redis_;
  std::string db_;
  std::unique_ptr<api::ApiApp> api_;
  std::unique_ptr<provisioner::App> prov_;
  std::unique_ptr<router::App> router_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::AccountService::Stub> accounts_;
  std::unique_ptr<v1::TenantService::Stub> tenants_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
  std::string token_, admin_token_;
};

TEST_F(RouterSyncTest, RoutesFollowEveryPhaseInTheDirectoryAndTheHttpProvider) {
  const std::string a = create_active();
  const std::string b = create_active();
  ASSERT_TRUE(eventually([&] { return routes_to_gateway(directory_config(), a); }));
  settle_router();
  auto check_consistent = [&](const char* when) {
    settle_router();
    std::vector<std::string> problems;
    auto dir = directory_config(&problems);
    for (auto& p : testenv::consistency_problems(dir)) problems.push_back(p);
    EXPECT_TRUE(problems.empty()) << when << ": " << ::testing::PrintToString(problems);
    EXPECT_EQ(http_config(), dir) << when << ": the HTTP provider differs from the directory";
    return dir;
  };
  auto dir = check_consistent("active");
  const auto& api_router = dir["http"]["routers"]["tenant-" + a + "-api"];
  EXPECT_EQ(api_router["service"], "tenant-" + a + "-gateway");
  EXPECT_EQ(api_router["middlewares"],
            json::array({"supaplane-forward-auth", "supaplane-strip-apikey",
                         "supaplane-ratelimit-starter"}));
  // The opaque key never reaches the tenant's services: the header is removed.
  EXPECT_EQ(dir["http"]["middlewares"]["supaplane-strip-apikey"]["headers"]["customRequestHeaders"],
            (json{{"apikey", ""}}));
  EXPECT_EQ(
      dir["http"]["services"]["tenant-" + a + "-gateway"]["loadBalancer"]["servers"][0]["url"],
      "http://" + a + ".gateway.internal:8000");
  EXPECT_EQ(dir["http"]["routers"]["tenant-" + b + "-console"]["service"], "supaplane-console");

  // ETag: 304 when unchanged.
  auto first = get("/traefik/dynamic", {});
  ASSERT_TRUE(first && first->status == 200);
  const auto etag = first->get_header_value("ETag");
  ASSERT_FALSE(etag.empty());
  auto again = get("/traefik/dynamic", {{"If-None-Match", etag}});
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 304);

  // Paused: every path of the host goes to the maintenance answer.
  wait_settled(a, call("pause", a).sequence(), v1::PHASE_PAUSED);
  ASSERT_TRUE(
      eventually([&] { return has_router(directory_config(), "tenant-" + a + "-maintenance"); }));
  dir = check_consistent("paused");
  EXPECT_FALSE(has_router(dir, "tenant-" + a + "-api"));
  auto changed = get("/traefik/dynamic", {{"If-None-Match", etag}});
  ASSERT_TRUE(changed);
  EXPECT_EQ(changed->status, 200);
  EXPECT_NE(changed->get_header_value("ETag"), etag);
  auto m = get("/rest/v1/todos", {{"Host", a + "." + kDomain}});
  ASSERT_TRUE(m);
  EXPECT_EQ(m->status, 503);
  EXPECT_EQ(json::parse(m->body)["phase"], "paused");

  // Suspended likewise; resumed / unsuspended back to the gateway.
  wait_settled(b, call("suspend", b).sequence(), v1::PHASE_SUSPENDED);
  ASSERT_TRUE(
      eventually([&] { return has_router(directory_config(), "tenant-" + b + "-maintenance"); }));
  check_consistent("suspended");
  auto s = get("/auth/v1/health", {{"Host", b + "." + kDomain}});
  ASSERT_TRUE(s);
  EXPECT_EQ(json::parse(s->body)["phase"], "suspended");
  wait_settled(a, call("resume", a).sequence(), v1::PHASE_ACTIVE);
  ASSERT_TRUE(eventually([&] { return routes_to_gateway(directory_config(), a); }));
  check_consistent("resumed");

  // Deleted: no routes, no file.
  wait_settled(a, call("delete", a).sequence(), v1::PHASE_DELETED);
  ASSERT_TRUE(eventually([&] { return !read_dir().count("tenant-" + a + ".yml"); }));
  dir = check_consistent("deleted");
  for (const auto& [name, r] : dir["http"]["routers"].items())
    EXPECT_EQ(name.find(a), std::string::npos) << name << " outlived the tenant";
  auto gone = get("/", {{"Host", a + "." + kDomain}});
  ASSERT_TRUE(gone);
  EXPECT_EQ(gone->status, 404);
}

TEST_F(RouterSyncTest, DeployAlertRulesAndDashboardUseOnlyMetricsRouterSyncExports) {
  auto m = get("/metrics", {}, router_->metrics_port());
  ASSERT_TRUE(m);
  // Its alert group and the Grafana dashboard's panels, against one scrape.
  const auto mon = testenv::check_monitoring("supaplane-router-sync", "supaplane_router_", m->body);
  EXPECT_GE(mon.alert_uses, 3u);
  EXPECT_GT(mon.panel_uses, 0u);
  EXPECT_EQ(mon.missing, std::vector<std::string>{});
}

TEST_F(RouterSyncTest, ForwardAuthMatrix) {
  const std::string a = create_active();
  const std::string b = create_active();
  const auto ca = credentials(a), cb = credentials(b);
  // The keys reach router-sync through the KeyStore after the outcome.
  ASSERT_TRUE(eventually([&] { return forward(a, ca.publishable_key()) == 200; }));
  ASSERT_TRUE(eventually([&] { return forward(b, cb.publishable_key()) == 200; }));
  auto secret_of = [&](const std::string& ref) {
    return prov_->keys().load(ref).value().value().keys.jwt_secret;
  };
  const auto now_s = [] {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  };

  std::string authz;
  ASSERT_EQ(forward(a, ca.publishable_key(), &authz), 200);
  auto claims = auth::verify_hs256(secret_of(a), authz.substr(7), now_s());
  ASSERT_TRUE(claims.ok()) << "not signed with the tenant's JWT secret";
  EXPECT_EQ(claims->role, "anon");
  EXPECT_EQ(claims->ref, a);
  EXPECT_EQ(claims->exp - claims->iat, 300);
  ASSERT_EQ(forward(a, ca.secret_key(), &authz), 200);
  EXPECT_EQ(auth::verify_hs256(secret_of(a), authz.substr(7), now_s())->role, "service_role");
  auto bearer = get("/auth/forward", {{"X-Forwarded-Host", a + "." + kDomain},
                                      {"Authorization", "Bearer " + ca.secret_key()}});
  ASSERT_TRUE(bearer);
  EXPECT_EQ(bearer->status, 200);

  // Another tenant's key, an unknown key, malformed headers.
  EXPECT_EQ(forward(a, cb.publishable_key()), 401);
  EXPECT_EQ(forward(b, ca.secret_key()), 401);
  EXPECT_EQ(forward(a, "sb_publishable_" + std::string(32, 'x')), 401);
  EXPECT_EQ(forward(a, "sb_publishable_!!"), 401);
  EXPECT_EQ(forward(a, ""), 401);
  EXPECT_EQ(forward("not-a-ref", ca.publishable_key()), 401);
  auto basic = get("/auth/forward", {{"X-Forwarded-Host", a + "." + kDomain},
                                     {"Authorization", "Basic " + ca.secret_key()}});
  ASSERT_TRUE(basic);
  EXPECT_EQ(basic->status, 401);
  EXPECT_EQ(basic->body.find(ca.secret_key()), std::string::npos) << "a key in an answer";

  // Rotation: once router-sync has the new keys, the old ones are refused.
  const auto rot = call("rotate", a);
  wait_settled(a, rot.sequence(), v1::PHASE_ACTIVE);
  const auto ca2 = credentials(a);
  ASSERT_NE(ca2.publishable_key(), ca.publishable_key());
  ASSERT_TRUE(eventually([&] { return forward(a, ca2.publishable_key()) == 200; }));
  EXPECT_EQ(forward(a, ca.publishable_key()), 401);
  EXPECT_EQ(forward(a, ca.secret_key()), 401);
  ASSERT_EQ(forward(a, ca2.secret_key(), &authz), 200);
  EXPECT_TRUE(auth::verify_hs256(secret_of(a), authz.substr(7), now_s()).ok());

  // Paused / suspended: 503; deleted: 401.
  wait_settled(a, call("pause", a).sequence(), v1::PHASE_PAUSED);
  ASSERT_TRUE(eventually([&] { return forward(a, ca2.publishable_key()) == 503; }));
  wait_settled(b, call("suspend", b).sequence(), v1::PHASE_SUSPENDED);
  ASSERT_TRUE(eventually([&] { return forward(b, cb.publishable_key()) == 503; }));
  wait_settled(b, call("unsuspend", b).sequence(), v1::PHASE_ACTIVE);
  ASSERT_TRUE(eventually([&] { return forward(b, cb.publishable_key()) == 200; }));
  wait_settled(a, call("delete", a).sequence(), v1::PHASE_DELETED);
  ASSERT_TRUE(eventually([&] { return forward(a, ca2.publishable_key()) == 401; }));
  // The stored hashes go with the tenant: the edge forgets it at once, the
  // key store entry is dropped by router-sync's next pass.
  auto redis = projection::RedisConnection(projection::parse_redis_url(redis_.url()).value(), {});
  EXPECT_TRUE(eventually([&] {
    auto exists = redis.command({"EXISTS", "sp:router:keys:" + a});
    return exists.ok() && (*exists)->integer == 0;
  })) << "the deleted tenant's keys stay in Redis";
  auto kept = redis.command({"HGET", "sp:router:keys:" + b, "jwt"});
  ASSERT_TRUE(kept.ok());
  ASSERT_EQ((*kept)->type, REDIS_REPLY_STRING);
  EXPECT_NE(std::string((*kept)->str, (*kept)->len), secret_of(b)) << "JWT secret in plain text";
}

TEST_F(RouterSyncTest, RestartReconcilesTheDirectoryByteForByte) {
  const auto [a, b] = active_and_paused();
  const auto before = read_dir();
  ASSERT_EQ(before.size(), 3u);  // base + two tenants

  router_.reset();
  // What it wrote is recorded, so this restart reads nothing back.
  ASSERT_TRUE(std::filesystem::exists(dir_path() + "/" + router::TraefikDir::kManifest));
  start_router();
  ASSERT_TRUE(eventually([&] { return router_->readiness().empty(); })) << router_->readiness();
  EXPECT_EQ(router_->sync().counters().start_read_back.load(), 0u);
  settle_router();
  router_.reset();
  // Damage while it is down: a stale tenant file, a missing one, a half
  // write, and the base file edited in place (same size, same inode, its
  // modification time put back: only the change time and the bytes differ).
  std::filesystem::remove(dir_path() + "/tenant-" + a + ".yml");
  { std::ofstream(dir_path() + "/tenant-zzzzzzzzzzzzzzzzzzzz.yml") << "stale"; }
  { std::ofstream(dir_path() + "/.tenant-" + b + ".yml.tmp") << "half"; }
  const std::string base = dir_path() + "/" + router::kBaseFile;
  struct stat st {};
  ASSERT_EQ(::stat(base.c_str(), &st), 0);
  {
    std::fstream f(base, std::ios::in | std::ios::out);
    f << "# EDITED";
  }
  const timespec times[2] = {st.st_atim, st.st_mtim};
  ASSERT_EQ(::utimensat(AT_FDCWD, base.c_str(), times, 0), 0);
  start_router();
  ASSERT_TRUE(eventually([&] { return router_->readiness().empty(); })) << router_->readiness();
  settle_router();
  EXPECT_EQ(read_dir(), before);
  EXPECT_FALSE(std::filesystem::exists(dir_path() + "/.tenant-" + b + ".yml.tmp"));
  EXPECT_EQ(http_config(), directory_config());
  // And the keys came back from Redis, not from memory.
  EXPECT_EQ(forward(a, credentials(a).publishable_key()), 200);
}

TEST_F(RouterSyncTest, RestartUsesTheSavedRenderStateOnlyWhenCurrentAndWhole) {
  const auto [a, b] = active_and_paused();
  const auto files = read_dir();
  const auto body = http_config();
  const std::string state = dir_path() + "/" + router::RenderState::kFile;

  auto same_as_before = [&] {
    EXPECT_EQ(read_dir(), files);
    EXPECT_EQ(http_config(), body);
    EXPECT_EQ(forward(a, credentials(a).publishable_key()), 200);
    EXPECT_EQ(forward(b, credentials(b).publishable_key()), 503);
  };
  // A clean stop saves it (readable by its owner only); the restart uses it.
  router_.reset();
  struct stat st {};
  ASSERT_EQ(::stat(state.c_str(), &st), 0) << "no render state saved";
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  start_router();
  ASSERT_TRUE(eventually([&] { return router_->readiness().empty(); })) << router_->readiness();
  settle_router();
  EXPECT_EQ(router_->sync().counters().state_used.load(), 1u);
  same_as_before();
  // Routes keep following the log after a start from the saved state.
  wait_settled(b, call("resume", b).sequence(), v1::PHASE_ACTIVE);
  ASSERT_TRUE(eventually([&] { return routes_to_gateway(directory_config(), b); }));
  wait_settled(b, call("pause", b).sequence(), v1::PHASE_PAUSED);
  ASSERT_TRUE(
      eventually([&] { return has_router(directory_config(), "tenant-" + b + "-maintenance"); }));
  settle_router();
  EXPECT_EQ(read_dir(), files);

  // One byte changed while stopped: rejected, every tenant rendered again.
  router_.reset();
  {
    std::fstream f(state, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(0, std::ios::end);
    const auto mid = static_cast<std::streamoff>(f.tellg()) / 2;
    f.seekg(mid);
    char c = 0;
    f.get(c);
    f.seekp(mid);
    f.put(static_cast<char>(c ^ 0x01));
  }
  start_router();
  ASSERT_TRUE(eventually([&] { return router_->readiness().empty(); })) << router_->readiness();
  settle_router();
  EXPECT_EQ(router_->sync().counters().state_corrupt.load(), 1u);
  EXPECT_EQ(router_->sync().counters().state_used.load(), 0u);
  same_as_before();

  // The projection rebuilt while stopped (another generation): stale.
  router_.reset();
  {
    projection::TenantProjection proj("sp:router:");
    projection::RedisConnection c(projection::parse_redis_url(redis_.url()).value(),
                                  proj.scripts().all());
    ASSERT_TRUE(proj.remove_pointer(c).ok());
  }
  start_router();
  ASSERT_TRUE(eventually([&] { return router_->readiness().empty(); })) << router_->readiness();
  settle_router();
  EXPECT_EQ(router_->sync().counters().state_stale.load(), 1u);
  EXPECT_EQ(router_->sync().counters().state_used.load(), 0u);
  same_as_before();
  EXPECT_TRUE(eventually([&] {
    auto m = get("/metrics", {}, router_->metrics_port());
    return m && m->body.find("supaplane_router_start_render_state_total{outcome=\"stale\"} 1") !=
                    std::string::npos;
  })) << "the stale render state is not counted in /metrics";
}

// A state from the log that names a gateway or a database upstream outside
// the configured patterns (a forged or broken outcome event) is not routed:
// the tenant's traffic, with the JWTs minted for it, never goes there.
TEST_F(RouterSyncTest, ALogStateNamingAForeignGatewayOrDatabaseIsNotRouted) {
  const std::string a = create_active();
  ASSERT_TRUE(eventually([&] { return routes_to_gateway(directory_config(), a); }));
  settle_router();
  auto& sync = router_->sync();
  const auto refused_before = sync.counters().refused_endpoints.load();
  v1::TenantState s;
  s.set_ref(a);
  s.set_plan(v1::PLAN_STARTER);
  s.set_phase(v1::PHASE_ACTIVE);
  s.set_gateway_url("http://attacker.example:8000");
  s.set_db_host("db." + a + "." + kDomain);
  s.set_db_upstream("attacker.example:5432");
  sync.on_applied(s, 0, "test");
  settle_router();
  const auto dir = directory_config();
  EXPECT_FALSE(routes_to_gateway(dir, a));
  EXPECT_EQ(dir.dump().find("attacker"), std::string::npos) << dir.dump();
  EXPECT_EQ(http_config().dump().find("attacker"), std::string::npos);
  EXPECT_EQ(sync.counters().refused_endpoints.load() - refused_before, 2u);
  EXPECT_TRUE(eventually([&] {
    auto m = get("/metrics", {}, router_->metrics_port());
    return m && m->status == 200 &&
           m->body.find("supaplane_router_refused_endpoints_total " +
                        std::to_string(sync.counters().refused_endpoints.load())) !=
               std::string::npos;
  })) << "refusals not exported";
  // Another tenant's gateway is refused the same way.
  s.set_gateway_url("http://zzzzzzzzzzzzzzzzzzzz.gateway.internal:8000");
  s.clear_db_upstream();
  sync.on_applied(s, 0, "test");
  settle_router();
  EXPECT_EQ(directory_config().dump().find("zzzzzzzzzzzzzzzzzzzz"), std::string::npos);
  // The tenant's own gateway is routed again.
  s.set_gateway_url("http://" + a + ".gateway.internal:8000");
  sync.on_applied(s, 0, "test");
  EXPECT_TRUE(eventually([&] { return routes_to_gateway(directory_config(), a); }));
}

TEST_F(RouterSyncTest, BurstsAreCoalesced) {
  const std::string a = create_active();
  ASSERT_TRUE(eventually([&] { return routes_to_gateway(directory_config(), a); }));
  settle_router();
  auto& sync = router_->sync();
  const auto writes_before = sync.counters().file_writes.load();
  const auto flushes_before = sync.counters().flushes.load();
  // 1,000 phase changes of one tenant, as fast as the observer is told.
  v1::TenantState s;
  s.set_ref(a);
  s.set_plan(v1::PLAN_STARTER);
  s.set_gateway_url("http://" + a + ".gateway.internal:8000");
  const auto t0 = SteadyClock::now();
  for (int i = 0; i < 1000; ++i) {
    s.set_phase(i % 2 ? v1::PHASE_PAUSED : v1::PHASE_ACTIVE);
    sync.on_applied(s, 0, "test");
  }
  const auto elapsed_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - t0).count();
  settle_router();
  const auto writes = sync.counters().file_writes.load() - writes_before;
  const auto flushes = sync.counters().flushes.load() - flushes_before;
  // At most one pass per 50 ms interval while the burst lasted, plus the last one.
  EXPECT_LE(flushes, static_cast<std::uint64_t>(elapsed_ms / 50 + 2)) << elapsed_ms << " ms";
  EXPECT_LE(writes, flushes);
  EXPECT_LT(writes, 100u);
  // The last state (PAUSED, i = 999) is what is on disk.
  EXPECT_TRUE(has_router(directory_config(), "tenant-" + a + "-maintenance"));
  // And the passes are visible to operators.
  EXPECT_TRUE(eventually([&] {
    auto m = get("/metrics", {}, router_->metrics_port());
    return m && m->status == 200 &&
           m->body.find("supaplane_router_flushes_total " +
                        std::to_string(sync.counters().flushes.load())) != std::string::npos;
  })) << "flushes not exported";
}

TEST_F(RouterSyncTest, SigkillDuringABurstThenRestartEqualsTheProjection) {
  router_.reset();  // this case runs the binary as its own process
  const int http_port = testenv::free_port();
  const int metrics_port = testenv::free_port();
  auto start = [&](testenv::Process& p) {
    p.start({ROUTER_SYNC_BINARY,
             "--nats-url",
             nats_.url(),
             "--redis-url",
             redis_.url(),
             "--database-url",
             pg().admin_dsn(db_),
             "--master-key",
             kMasterKey,
             "--http-addr",
             "127.0.0.1:" + std::to_string(http_port),
             "--metrics-addr",
             "127.0.0.1:" + std::to_string(metrics_port),
             "--traefik-dir",
             dir_path(),
             "--public-url",
             "http://127.0.0.1:8082",
             "--base-domain",
             kDomain,
             "--console-url",
             "http://console.internal:3000"},
            tmp_.path() + "/router.log");
  };
  auto ready = [&] {
    auto r = get("/readyz", {}, metrics_port);
    return r && r->status == 200;
  };
  testenv::Process proc;
  start(proc);
  ASSERT_TRUE(eventually(ready));

  std::vector<std::string> refs;
  for (int i = 0; i < 4; ++i) refs.push_back(create_active());
  // The burst: pause / resume rounds on every tenant, router-sync killed in the middle.
  std::vector<std::uint64_t> last(refs.size());
  for (int round = 0; round < 6; ++round) {
    for (std::size_t i = 0; i < refs.size(); ++i) {
      const bool pause = round % 2 == 0;
      last[i] = call(pause ? "pause" : "resume", refs[i]).sequence();
      wait_settled(refs[i], last[i], pause ? v1::PHASE_PAUSED : v1::PHASE_ACTIVE);
      ASSERT_FALSE(HasFailure());
    }
    if (round == 2) proc.stop(SIGKILL);
  }
  call("delete", refs[0]);
  call("suspend", refs[1]);

  start(proc);
  ASSERT_TRUE(eventually(ready));
  // What the directory must hold: the rendering of router-sync's projection
  // once it has caught up with the log.
  RouterSyncTest::TraefikDirFiles expected;
  auto render_projection = [&] {
    projection::TenantProjection proj("sp:router:");
    projection::RedisConnection c(projection::parse_redis_url(redis_.url()).value(),
                                  proj.scripts().all());
    router::RenderOptions o = router_options().render;
    o.self_url = "http://127.0.0.1:8082";
    RouterSyncTest::TraefikDirFiles files{
        {router::kBaseFile, router::to_yaml(router::render_base(o))}};
    projection::ListQuery q;
    q.limit = 1000;
    auto page = proj.list(c, q);
    if (!page) return files;
    for (const auto& s : page->tenants) {
      auto j = router::render_tenant(router::route_tenant(s), o);
      if (!j.is_null()) files[router::tenant_file(s.ref())] = router::to_yaml(j);
    }
    return files;
  };
  const auto settled = eventually([&] {
    expected = render_projection();
    return expected.count(router::tenant_file(refs[1])) &&
           expected.at(router::tenant_file(refs[1])).find("maintenance") != std::string::npos &&
           !expected.count(router::tenant_file(refs[0])) && read_dir() == expected;
  });
  EXPECT_TRUE(settled) << "directory never matched the projection";
  EXPECT_EQ(read_dir(), expected);
  EXPECT_EQ(expected.size(), 4u);  // base + three tenants
  for (const auto& [name, text] : read_dir()) EXPECT_NE(name.front(), '.') << name;
  proc.stop();
}

}  // namespace

// Redis is a cache of the log: FLUSHALL, then a redis-server killed and
// restarted empty, each while router-sync runs. Its projection comes back
// from the log without a new event, and the routes keep following commands.
TEST_F(RouterSyncTest, RedisLostAtRunTimeIsRebuiltAndRoutesKeepFollowing) {
  const std::string a = create_active();
  settle_router();
  projection::TenantProjection proj("sp:router:");
  projection::RedisConnection c(projection::parse_redis_url(redis_.url()).value(),
                                proj.scripts().all());
  auto router_sees = [&](v1::Phase phase) {
    auto s = proj.get(c, a);
    return s.ok() && s->has_value() && (*s)->phase() == phase;
  };
  ASSERT_TRUE(router_sees(v1::PHASE_ACTIVE));
  ASSERT_TRUE(c.command({"FLUSHALL"}).ok());
  ASSERT_TRUE(eventually([&] { return router_sees(v1::PHASE_ACTIVE); }))
      << "router-sync's projection not rebuilt after FLUSHALL";
  // Counted just after the new generation goes live.
  EXPECT_TRUE(eventually(
      [&] { return router_->guard().rebuilds(projection::RebuildReason::pointer_missing) >= 1u; }));
  wait_settled(a, call("pause", a).sequence(), v1::PHASE_PAUSED);
  ASSERT_TRUE(eventually([&] { return router_sees(v1::PHASE_PAUSED); }));
  ASSERT_TRUE(
      eventually([&] { return has_router(directory_config(), "tenant-" + a + "-maintenance"); }));

  redis_.stop(9);
  redis_.start();
  ASSERT_TRUE(eventually([&] { return router_sees(v1::PHASE_PAUSED); }))
      << "router-sync's projection not rebuilt after Redis came back empty";
  // Counted just after the new generation goes live.
  EXPECT_TRUE(eventually(
      [&] { return router_->guard().rebuilds(projection::RebuildReason::pointer_missing) >= 2u; }));
  wait_settled(a, call("resume", a).sequence(), v1::PHASE_ACTIVE);
  ASSERT_TRUE(eventually([&] { return router_sees(v1::PHASE_ACTIVE); }));
  ASSERT_TRUE(eventually([&] { return routes_to_gateway(directory_config(), a); }));
}
