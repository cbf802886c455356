// router-sync's pure parts: rendering (golden files per phase, consistency),
// the edge key table, the atomic directory writer.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "edge_auth.hpp"
#include "render.hpp"
#include "render_state.hpp"
#include "servers.hpp"
#include "supaplane/auth/jwt.hpp"
#include "supaplane/http/server.hpp"
#include "supaplane/secrets/secrets.hpp"
#include "traefik_check.hpp"
#include "traefik_dir.hpp"

namespace {

using namespace supaplane;
using namespace supaplane::router;

const std::string kRef = "abcdefghijklmnopqrst";
const std::string kOther = "zyxwvutsrqponmlkjihg";

RenderOptions options() {
  RenderOptions o;
  o.base_domain = "supabase.example.com";
  o.console_url = "http://console.internal:3000";
  o.self_url = "http://router-sync.internal:8082";
  return o;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// Compares with tests/golden/router-sync/<name>; SUPAPLANE_UPDATE_GOLDEN=1 rewrites it.
void expect_golden(const std::string& name, const std::string& actual) {
  const std::string path = std::string(SUPAPLANE_SOURCE_DIR) + "/tests/golden/router-sync/" + name;
  if (std::getenv("SUPAPLANE_UPDATE_GOLDEN")) {
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    std::ofstream(path) << actual;
  }
  ASSERT_TRUE(std::filesystem::exists(path)) << path << " missing";
  EXPECT_EQ(slurp(path), actual) << "golden " << name << " differs";
}

TEST(RouterRender, GoldenFilePerPhase) {
  const auto o = options();
  expect_golden("base.yml", to_yaml(render_base(o)));
  const std::pair<v1::Phase, const char*> phases[] = {
      {v1::PHASE_ACTIVE, "active.yml"},           {v1::PHASE_PAUSED, "paused.yml"},
      {v1::PHASE_SUSPENDED, "suspended.yml"},     {v1::PHASE_PROVISIONING, "provisioning.yml"},
      {v1::PHASE_RECONCILING, "reconciling.yml"}, {v1::PHASE_FAILED, "failed.yml"},
      {v1::PHASE_PAUSING, "pausing.yml"},         {v1::PHASE_RESUMING, "resuming.yml"},
      {v1::PHASE_DELETING, "deleting.yml"}};
  for (auto [phase, file] : phases) {
    RouteTenant t{kRef, phase, v1::PLAN_PRO, "http://" + kRef + ".gateway.internal:8000"};
    if (phase != v1::PHASE_ACTIVE)
      t.gateway_url = phase == v1::PHASE_PROVISIONING ? "" : t.gateway_url;
    expect_golden(file, to_yaml(render_tenant(t, o)));
    std::string yaml;
    ASSERT_TRUE(render_tenant_text(t, o, &yaml, nullptr));
    expect_golden(file, yaml);
  }
  EXPECT_TRUE(render_tenant({kRef, v1::PHASE_DELETED, v1::PLAN_PRO, "http://x"}, o).is_null())
      << "a deleted tenant has routes";
}

TEST(RouterRender, EveryPhaseParsesAndIsConsistentWithTheBase) {
  const auto o = options();
  std::map<std::string, std::string> files{{kBaseFile, to_yaml(render_base(o))}};
  int n = 0;
  for (int p = v1::Phase_MIN; p <= v1::Phase_MAX; ++p) {
    for (auto plan : {v1::PLAN_FREE, v1::PLAN_STARTER, v1::PLAN_PRO, v1::PLAN_UNSPECIFIED}) {
      // Distinct refs per (phase, plan): 20 lowercase letters.
      std::string ref(20, 'a');
      ref[0] = static_cast<char>('a' + p);
      ref[1] = static_cast<char>('a' + plan);
      auto j =
          render_tenant({ref, static_cast<v1::Phase>(p), plan, "http://gw-" + ref + ":8000"}, o);
      if (j.is_null()) continue;
      files[tenant_file(ref)] = to_yaml(j);
      ++n;
    }
  }
  EXPECT_GT(n, 30);
  std::vector<std::string> problems;
  auto merged = testenv::merge_yaml_files(files, problems);
  for (auto& p : testenv::consistency_problems(merged)) problems.push_back(p);
  EXPECT_TRUE(problems.empty()) << ::testing::PrintToString(problems);
  // Routers of every kind exist.
  EXPECT_TRUE(merged["http"]["routers"].size() > static_cast<std::size_t>(n));
}

// The edge sends a tenant's API prefixes to its gateway, and the shipped
// gateway (kong in deploy/stacks/supabase.yaml) routes each of them, and
// nothing else: in particular not postgres-meta (`/pg`), which works as the
// database's superuser and would give anyone holding the public key the
// database.
TEST(RouterRender, TheShippedGatewayRoutesExactlyTheEdgesPrefixes) {
  const auto spec = slurp(std::string(SUPAPLANE_SOURCE_DIR) + "/deploy/stacks/supabase.yaml");
  ASSERT_FALSE(spec.empty());
  const std::regex service(R"re(\{"name":"[^"]+","url":"http://([a-z]+):[0-9]+[^"]*")re");
  const std::regex paths(R"re("paths":\["([^"]+)"\])re");
  std::set<std::string> upstreams;
  for (std::sregex_iterator it(spec.begin(), spec.end(), service), end; it != end; ++it)
    upstreams.insert((*it)[1]);
  EXPECT_EQ(upstreams, (std::set<std::string>{"auth", "rest", "realtime", "storage", "functions"}));
  std::set<std::string> routed;
  for (std::sregex_iterator it(spec.begin(), spec.end(), paths), end; it != end; ++it) {
    const std::string path = (*it)[1];
    const auto& prefixes = api_prefixes();
    const bool under = std::any_of(prefixes.begin(), prefixes.end(),
                                   [&](const std::string& p) { return path.rfind(p, 0) == 0; });
    EXPECT_TRUE(under) << "the gateway routes " << path << ", which the edge never sends it";
    routed.insert(path);
  }
  for (const auto& p : api_prefixes()) {
    const bool has = std::any_of(routed.begin(), routed.end(),
                                 [&](const std::string& r) { return r.rfind(p, 0) == 0; });
    EXPECT_TRUE(has) << "the edge sends " << p << " to a gateway with no route for it";
    EXPECT_NE(p, "/pg");
  }
}

TEST(RouterRender, YamlOfAFileEqualsItsJson) {
  const auto o = options();
  auto j = render_tenant({kRef, v1::PHASE_ACTIVE, v1::PLAN_FREE, "http://gw:8000"}, o);
  EXPECT_EQ(testenv::yaml_to_json(YAML::Load(to_yaml(j))), j);
  auto b = render_base(o);
  EXPECT_EQ(testenv::yaml_to_json(YAML::Load(to_yaml(b))), b);
}

// The text writer router-sync runs gives the bytes of the document
// rendering (the reference the golden files pin) for every phase, plan and
// option, the file as YAML and the HTTP provider's body as JSON.
TEST(RouterRender, TextRenderingEqualsTheDocumentEverywhere) {
  std::vector<RenderOptions> opts{options(), options()};
  opts[1].entry_points = {"web", "websecure"};
  opts[1].db_entry_point = "pg-edge";
  int n = 0;
  for (const auto& o : opts) {
    std::map<std::string, TenantJson> parts;
    auto want = render_base(o);
    for (int p = v1::Phase_MIN; p <= v1::Phase_MAX; ++p) {
      for (auto plan : {v1::PLAN_FREE, v1::PLAN_PRO, v1::PLAN_UNSPECIFIED}) {
        for (int variant = 0; variant < 3; ++variant) {
          std::string ref(20, 'a');
          ref[0] = static_cast<char>('a' + p);
          ref[1] = static_cast<char>('a' + plan);
          ref[2] = static_cast<char>('a' + variant);
          RouteTenant t{ref, static_cast<v1::Phase>(p), plan,
                        variant == 0 ? "" : "http://sp-" + ref + "-kong:8000"};
          if (variant == 2) {
            t.db_host = "db." + ref + "." + o.base_domain;
            t.db_upstream = "sp-" + ref + "-pooler:6543";
          }
          const auto doc = render_tenant(t, o);
          std::string yaml;
          TenantJson j;
          ASSERT_EQ(render_tenant_text(t, o, &yaml, &j), !doc.is_null()) << p;
          if (doc.is_null()) {
            EXPECT_TRUE(yaml.empty());
            continue;
          }
          EXPECT_EQ(yaml, to_yaml(doc)) << "phase " << p << " plan " << plan << " v" << variant;
          merge_config(want, doc);
          parts[ref] = std::move(j);
          ++n;
        }
      }
    }
    EXPECT_EQ(nlohmann::json::parse(dynamic_json(render_base(o), parts)), want);
  }
  EXPECT_GT(n, 100);
}

// Values reach the text through one YAML and one JSON escaper. Refs and
// endpoints are validated before rendering (the projection keeps only
// valid refs, endpoints must match their patterns), so these values never
// get there in the service; the escapers must hold anyway.
TEST(RouterRender, EscapersKeepHostileValuesInsideTheirString) {
  const std::vector<std::string> hostile{
      "plain",
      "\"quoted\" \\ back\\slash",
      "http://x:1\"\n      - url: \"http://evil:80",
      "line\nbreak\r\ttab\x01\x1f\x7f",
      "`) || Host(`evil.com",
      "{\"json\": [1, 2]}, \"x\": \"y",
      "# comment: - [ ] & * ! | > ' % @",
      "caf\xc3\xa9 \xe2\x80\xa8 sep",
      "",
  };
  for (const auto& v : hostile) {
    std::string y = "k: ";
    yaml_quoted(y, v);
    const auto node = YAML::Load(y);
    ASSERT_TRUE(node.IsMap()) << y;
    EXPECT_EQ(node.size(), 1u) << y;
    EXPECT_EQ(node["k"].as<std::string>(), v) << y;
    std::string j;
    json_quoted(j, v);
    EXPECT_EQ(nlohmann::json::parse(j).get<std::string>(), v) << j;
  }
  // And through the whole rendering: a hostile gateway URL stays one value.
  RouteTenant t{kRef, v1::PHASE_ACTIVE, v1::PLAN_PRO, hostile[2]};
  std::string yaml;
  TenantJson parts;
  ASSERT_TRUE(render_tenant_text(t, options(), &yaml, &parts));
  const auto doc = render_tenant(t, options());
  EXPECT_EQ(testenv::yaml_to_json(YAML::Load(yaml)), doc);
  EXPECT_EQ(nlohmann::json::parse(
                dynamic_json(render_base(options()),
                             {{kRef, parts}}))["http"]["services"]["tenant-" + kRef + "-gateway"],
            doc["http"]["services"]["tenant-" + kRef + "-gateway"]);
}

TEST(RouterRender, RuleCheckerRefusesBadRules) {
  EXPECT_EQ(testenv::RuleParser("Host(`a.b`) && (PathPrefix(`/x`) || PathPrefix(`/y`))").validate(),
            "");
  EXPECT_NE(testenv::RuleParser("Host(a.b)").validate(), "");
  EXPECT_NE(testenv::RuleParser("Host(`a`) && (PathPrefix(`/x`)").validate(), "");
  EXPECT_NE(testenv::RuleParser("Hots(`a`)").validate(), "");
}

TEST(RouterRender, EndpointPatternsBindTheTenantsOwnRef) {
  auto gw = EndpointPattern::compile(kDefaultGatewayUrlPattern, "gateway_url_pattern");
  ASSERT_TRUE(gw.ok()) << gw.error().message;
  EXPECT_TRUE(gw->allows(kRef, "http://sp-" + kRef + "-kong:8000"));
  EXPECT_TRUE(gw->allows(kRef, "http://" + kRef + ".gateway.internal:8000"));
  EXPECT_FALSE(gw->allows(kRef, "http://sp-" + kOther + "-kong:8000")) << "another tenant";
  EXPECT_FALSE(gw->allows(kRef, "http://evil.example.com:8000"));
  EXPECT_FALSE(gw->allows(kRef, "http://sp-" + kRef + "-kong:8000.evil.com"));
  EXPECT_FALSE(gw->allows(kRef, "http://" + kRef + ".gateway.internal:8000/../x"));
  auto db = EndpointPattern::compile(kDefaultDbUpstreamPattern, "db_upstream_pattern");
  ASSERT_TRUE(db.ok());
  EXPECT_TRUE(db->allows(kRef, "sp-" + kRef + "-pooler:6543"));
  EXPECT_FALSE(db->allows(kRef, "sp-" + kOther + "-pooler:6543"));
  EXPECT_FALSE(EndpointPattern::compile("http://anything", "gateway_url_pattern").ok());
  EXPECT_FALSE(EndpointPattern::compile("http://({ref}", "gateway_url_pattern").ok());
}

TEST(RouterRender, DatabaseRouteIsATcpRouterBySni) {
  RouteTenant t{kRef,
                v1::PHASE_ACTIVE,
                v1::PLAN_FREE,
                "http://sp-" + kRef + "-kong:8000",
                "db." + kRef + ".supabase.example.com",
                "sp-" + kRef + "-pooler:5432"};
  const auto c = render_tenant(t, options());
  const auto& r = c["tcp"]["routers"]["tenant-" + kRef + "-db"];
  EXPECT_EQ(r["rule"], "HostSNI(`db." + kRef + ".supabase.example.com`)");
  EXPECT_EQ(r["entryPoints"], nlohmann::json::array({"postgres"}));
  EXPECT_TRUE(r.contains("tls"));
  EXPECT_EQ(c["tcp"]["services"]["tenant-" + kRef + "-db"]["loadBalancer"]["servers"][0]["address"],
            "sp-" + kRef + "-pooler:5432");
  std::map<std::string, TenantJson> parts;
  ASSERT_TRUE(render_tenant_text(t, options(), nullptr, &parts[kRef]));
  const auto merged = nlohmann::json::parse(dynamic_json(render_base(options()), parts));
  EXPECT_EQ(merged["tcp"]["routers"]["tenant-" + kRef + "-db"], r);
  EXPECT_TRUE(merged["http"]["routers"].contains("tenant-" + kRef + "-api"));
  t.phase = v1::PHASE_PAUSED;
  EXPECT_FALSE(render_tenant(t, options()).contains("tcp")) << "a paused tenant has no db route";
}

TEST(RouterRender, HostsAndFileNamesMapBackToRefs) {
  EXPECT_EQ(ref_of_host(kRef + ".supabase.localhost", "supabase.localhost"), kRef);
  EXPECT_EQ(ref_of_host(kRef + ".supabase.localhost:443", "supabase.localhost"), kRef);
  EXPECT_EQ(ref_of_host("x." + kRef + ".supabase.localhost", "supabase.localhost"), "");
  EXPECT_EQ(ref_of_host(kRef + ".evil.localhost", "supabase.localhost"), "");
  EXPECT_EQ(ref_of_host(kRef + "supabase.localhost", "supabase.localhost"), "");
  EXPECT_EQ(ref_of_host("", "supabase.localhost"), "");
  EXPECT_EQ(ref_of_file(tenant_file(kRef)), kRef);
  EXPECT_EQ(ref_of_file("tenant-../../etc.yml"), "");
  EXPECT_EQ(ref_of_file(kBaseFile), "");
}

class FixedClock final : public Clock {
 public:
  std::int64_t now_unix_ms() const override { return now; }
  std::int64_t now{1'800'000'000'000};
};

struct EdgeFixture : ::testing::Test {
  FixedClock clock;
  EdgeAuth edge{"supaplane", "supabase.localhost", clock};
  std::string host = kRef + ".supabase.localhost";
  std::string pub = "sb_publishable_" + std::string(32, 'p');
  std::string sec = "sb_secret_" + std::string(40, 's');
  std::string jwt_secret = std::string(43, 'j');
  void SetUp() override {
    edge.set_phase(kRef, v1::PHASE_ACTIVE);
    edge.set_keys(kRef, {1, secrets::key_hash(pub), secrets::key_hash(sec), jwt_secret});
    edge.set_phase(kOther, v1::PHASE_ACTIVE);
    edge.set_keys(kOther, {1, secrets::key_hash("sb_publishable_" + std::string(32, 'o')),
                           secrets::key_hash("sb_secret_" + std::string(40, 'o')), "other"});
  }
};

TEST_F(EdgeFixture, RightKeysGetAShortLivedJwtOfTheirRole) {
  for (auto [key, role] : {std::pair{pub, "anon"}, std::pair{sec, "service_role"}}) {
    auto d = edge.check(host, key, "");
    ASSERT_EQ(d.status, 200);
    ASSERT_EQ(d.authorization.rfind("Bearer ", 0), 0u);
    auto c = auth::verify_hs256(jwt_secret, d.authorization.substr(7), clock.now / 1000);
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(c->role, role);
    EXPECT_EQ(c->ref, kRef);
    EXPECT_EQ(c->iss, "supaplane");
    EXPECT_EQ(c->exp - c->iat, 300);
    // The same key as a bearer.
    EXPECT_EQ(edge.check(host, "", "Bearer " + key).status, 200);
  }
}

TEST_F(EdgeFixture, AUserSessionJwtNextToAValidApikeyIsPassedThrough) {
  auth::JwtClaims user;
  user.sub = "user-1";
  user.role = "authenticated";
  user.exp = clock.now / 1000 + 3600;
  const std::string session = auth::sign_hs256(jwt_secret, user).value();
  auto d = edge.check(host, pub, "Bearer " + session);
  EXPECT_EQ(d.status, 200);
  EXPECT_EQ(d.authorization, "Bearer " + session);
  // Not without a valid key of this tenant.
  EXPECT_EQ(edge.check(host, "", "Bearer " + session).status, 401);
  EXPECT_EQ(edge.check(host, "sb_publishable_" + std::string(32, 'x'), "Bearer " + session).status,
            401);
}

TEST_F(EdgeFixture, ASessionJwtTheTenantDidNotIssueIsRefusedAtTheEdge) {
  auth::JwtClaims user;
  user.role = "authenticated";
  user.exp = clock.now / 1000 + 3600;
  // Signed with another secret (another tenant's, or a forger's).
  const std::string foreign =
      auth::sign_hs256("other-secret-other-secret-other-secr", user).value();
  EXPECT_EQ(edge.check(host, pub, "Bearer " + foreign).status, 401);
  // Shaped like a JWT, signed by nobody.
  EXPECT_EQ(edge.check(host, pub, "Bearer eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYSJ9.c2ln").status, 401);
  // Expired, or without an expiry.
  auth::JwtClaims old = user;
  old.exp = clock.now / 1000 - 1;
  EXPECT_EQ(edge.check(host, pub, "Bearer " + auth::sign_hs256(jwt_secret, old).value()).status,
            401);
  auth::JwtClaims forever = user;
  forever.exp = 0;
  EXPECT_EQ(edge.check(host, pub, "Bearer " + auth::sign_hs256(jwt_secret, forever).value()).status,
            401);
  // This tenant's secret, another tenant's ref.
  auth::JwtClaims elsewhere = user;
  elsewhere.ref = kOther;
  EXPECT_EQ(
      edge.check(host, pub, "Bearer " + auth::sign_hs256(jwt_secret, elsewhere).value()).status,
      401);
  elsewhere.ref = kRef;
  EXPECT_EQ(
      edge.check(host, pub, "Bearer " + auth::sign_hs256(jwt_secret, elsewhere).value()).status,
      200);
}

TEST_F(EdgeFixture, WrongUnknownAndMalformedKeysAre401) {
  EXPECT_EQ(edge.check(host, "sb_publishable_" + std::string(32, 'o'), "").status, 401);
  EXPECT_EQ(edge.check(host, "sb_publishable_" + std::string(32, 'x'), "").status, 401);
  EXPECT_EQ(edge.check(host, "", "").status, 401);
  EXPECT_EQ(edge.check(host, "sb_publishable_short", "").status, 401);
  EXPECT_EQ(edge.check(host, "sb_publishable_" + std::string(31, 'p') + "!", "").status, 401);
  EXPECT_EQ(edge.check(host, "", "Basic " + pub).status, 401);
  EXPECT_EQ(edge.check(host, "", "Bearer").status, 401);
  EXPECT_EQ(edge.check("unknown.example.com", pub, "").status, 401);
  EXPECT_EQ(edge.check("", pub, "").status, 401);
}

TEST_F(EdgeFixture, ReconcilingKeepsServingOtherPhasesAre503) {
  edge.set_phase(kRef, v1::PHASE_RECONCILING);  // e.g. a rotation or plan change converging
  EXPECT_EQ(edge.check(host, pub, "").status, 200);
  for (auto p : {v1::PHASE_PROVISIONING, v1::PHASE_PAUSING, v1::PHASE_RESUMING, v1::PHASE_DELETING,
                 v1::PHASE_FAILED}) {
    edge.set_phase(kRef, p);
    EXPECT_EQ(edge.check(host, pub, "").status, 503) << v1::Phase_Name(p);
  }
}

TEST_F(EdgeFixture, PausedOrSuspendedIs503AndDeletedIs401) {
  edge.set_phase(kRef, v1::PHASE_PAUSED);
  EXPECT_EQ(edge.check(host, pub, "").status, 503);
  edge.set_phase(kRef, v1::PHASE_SUSPENDED);
  EXPECT_EQ(edge.check(host, pub, "").status, 503);
  edge.forget(kRef);
  EXPECT_EQ(edge.check(host, pub, "").status, 401);
}

TEST_F(EdgeFixture, RotationRetiresOldKeysAndCachedTokens) {
  auto before = edge.check(host, pub, "");
  ASSERT_EQ(before.status, 200);
  edge.drop_keys(kRef);  // what a rotation outcome does at once
  EXPECT_EQ(edge.check(host, pub, "").status, 401);
  const std::string pub2 = "sb_publishable_" + std::string(32, 'q');
  edge.set_keys(kRef, {2, secrets::key_hash(pub2), secrets::key_hash(sec + "2"), "new-secret"});
  EXPECT_EQ(edge.check(host, pub, "").status, 401);
  auto after = edge.check(host, pub2, "");
  ASSERT_EQ(after.status, 200);
  EXPECT_TRUE(
      auth::verify_hs256("new-secret", after.authorization.substr(7), clock.now / 1000).ok());
}

TEST_F(EdgeFixture, ABulkInstallIsTheSameAsOneTenantAtATime) {
  // A cached token of the old keys, to be retired by the install.
  ASSERT_EQ(edge.check(host, pub, "").status, 200);
  const std::string pub2 = "sb_publishable_" + std::string(32, 'q');
  const std::string third = "cccccccccccccccccccc";
  const std::string third_pub = "sb_publishable_" + std::string(32, 't');
  std::vector<EdgeTenant> batch;
  batch.push_back({kRef,
                   v1::PHASE_ACTIVE,
                   {2, secrets::key_hash(pub2), secrets::key_hash(sec + "2"), "new-secret"}});
  batch.push_back({kOther, v1::PHASE_PAUSED, {}});  // phase only: its keys stay
  batch.push_back({third,
                   v1::PHASE_ACTIVE,
                   {1, secrets::key_hash(third_pub), secrets::key_hash(sec + "3"), "third"}});
  edge.install(std::move(batch));
  // The replaced keys no longer open anything; the new ones sign with the new secret.
  EXPECT_EQ(edge.check(host, pub, "").status, 401);
  auto after = edge.check(host, pub2, "");
  ASSERT_EQ(after.status, 200);
  EXPECT_TRUE(
      auth::verify_hs256("new-secret", after.authorization.substr(7), clock.now / 1000).ok());
  EXPECT_EQ(edge.keys_generation(kRef), 2);
  // Phase only.
  EXPECT_EQ(edge.check(kOther + ".supabase.localhost", "sb_publishable_" + std::string(32, 'o'), "")
                .status,
            503);
  EXPECT_EQ(edge.keys_generation(kOther), 1);
  // A new tenant, and its key only on its own host.
  auto d = edge.check(third + ".supabase.localhost", third_pub, "");
  ASSERT_EQ(d.status, 200);
  EXPECT_TRUE(auth::verify_hs256("third", d.authorization.substr(7), clock.now / 1000).ok());
  EXPECT_EQ(edge.check(host, third_pub, "").status, 401);
}

TEST_F(EdgeFixture, TokensAreReissuedAsTimePasses) {
  auto a = edge.check(host, pub, "");
  clock.now += 10'000;
  EXPECT_EQ(edge.check(host, pub, "").authorization, a.authorization) << "cached within 30 s";
  clock.now += 30'000;
  auto b = edge.check(host, pub, "");
  EXPECT_NE(b.authorization, a.authorization);
  EXPECT_TRUE(auth::verify_hs256(jwt_secret, b.authorization.substr(7), clock.now / 1000).ok());
}

/// Keys installed as a start installs them from Redis: only the sealed secret.
struct LazyEdgeFixture : ::testing::Test {
  FixedClock clock;
  EdgeAuth edge{"supaplane", "supabase.localhost", clock};
  secrets::MasterKey master =
      secrets::MasterKey::from_base64("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").value();
  std::vector<std::string> opened;      // refs, in the order the opener was asked
  std::vector<std::string> unopenable;  // refs told to on_unopenable
  std::string pub_of(const std::string& ref) { return "sb_publishable_" + ref + ref.substr(0, 12); }
  std::string secret_of(const std::string& ref) { return "jwt-secret-of-" + ref; }
  void install(const std::string& ref, std::int64_t gen, const std::string& sealed) {
    edge.set_phase(ref, v1::PHASE_ACTIVE);
    EdgeKeys k{gen, secrets::key_hash(pub_of(ref)), secrets::key_hash("sb_secret_" + ref + ref),
               ""};
    k.sealed_jwt_secret = sealed;
    edge.set_keys(ref, std::move(k));
  }
  void install(const std::string& ref, std::int64_t gen = 1) {
    install(ref, gen, secrets::seal(master, ref, secret_of(ref)));
  }
  void lazy(std::size_t capacity) {
    LazySecrets l;
    l.open = [this](const std::string& ref, std::string_view sealed) {
      opened.push_back(ref);
      return secrets::open(master, ref, sealed);
    };
    l.on_unopenable = [this](const std::string& ref) { unopenable.push_back(ref); };
    l.capacity = capacity;
    edge.set_lazy_secrets(std::move(l));
  }
  std::string host(const std::string& ref) { return ref + ".supabase.localhost"; }
};

TEST_F(LazyEdgeFixture, ASealedSecretIsOpenedOnFirstUseOnceAndSignsTheSameTokens) {
  lazy(10);
  install(kRef);
  EXPECT_TRUE(opened.empty()) << "installing keys opens nothing";
  auto d = edge.check(host(kRef), pub_of(kRef), "");
  ASSERT_EQ(d.status, 200);
  auto c = auth::verify_hs256(secret_of(kRef), d.authorization.substr(7), clock.now / 1000);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->ref, kRef);
  // A user's session signed with the tenant's secret passes; reissues and
  // the session check use the opened secret kept in memory.
  auth::JwtClaims user;
  user.ref = kRef;
  user.role = "authenticated";
  user.exp = clock.now / 1000 + 60;
  const auto session = auth::sign_hs256(secret_of(kRef), user).value();
  EXPECT_EQ(edge.check(host(kRef), pub_of(kRef), "Bearer " + session).status, 200);
  clock.now += 60'000;
  auto later = edge.check(host(kRef), pub_of(kRef), "");
  ASSERT_EQ(later.status, 200);
  EXPECT_NE(later.authorization, d.authorization);
  EXPECT_EQ(opened.size(), 1u);
  EXPECT_EQ(edge.counters().secrets_opened.load(), 1u);
  EXPECT_EQ(edge.counters().secrets_cached.load(), 1u);
}

TEST_F(LazyEdgeFixture, OpenedSecretsAreBoundedLeastRecentlyUsedFirst) {
  lazy(2);
  const std::string refs[] = {"aaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbb",
                              "cccccccccccccccccccc"};
  for (const auto& r : refs) install(r);
  // Each check needs the secret: a user's session is verified on every request.
  auto session = [&](const std::string& ref) {
    auth::JwtClaims user;
    user.ref = ref;
    user.exp = clock.now / 1000 + 60;
    return "Bearer " + auth::sign_hs256(secret_of(ref), user).value();
  };
  auto ask = [&](const std::string& ref) {
    EXPECT_EQ(edge.check(host(ref), pub_of(ref), session(ref)).status, 200) << ref;
  };
  ask(refs[0]);
  ask(refs[1]);
  ask(refs[0]);  // a is now the most recently used
  ask(refs[2]);  // evicts b
  EXPECT_EQ(edge.counters().secrets_cached.load(), 2u);
  EXPECT_EQ(opened.size(), 3u);
  ask(refs[0]);  // still held
  EXPECT_EQ(opened.size(), 3u);
  ask(refs[1]);  // opened again
  EXPECT_EQ(opened.size(), 4u);
  EXPECT_EQ(opened.back(), refs[1]);
  EXPECT_EQ(edge.counters().secrets_cached.load(), 2u);
}

TEST_F(LazyEdgeFixture, RotationNeverServesTheOldOpenedSecret) {
  lazy(10);
  install(kRef, 1);
  ASSERT_EQ(edge.check(host(kRef), pub_of(kRef), "").status, 200);
  // New keys, same opaque keys for the test, a new secret.
  edge.set_phase(kRef, v1::PHASE_ACTIVE);
  EdgeKeys k{2, secrets::key_hash(pub_of(kRef)), secrets::key_hash("sb_secret_x"), ""};
  k.sealed_jwt_secret = secrets::seal(master, kRef, "rotated-secret");
  edge.set_keys(kRef, std::move(k));
  auto d = edge.check(host(kRef), pub_of(kRef), "");
  ASSERT_EQ(d.status, 200);
  EXPECT_TRUE(
      auth::verify_hs256("rotated-secret", d.authorization.substr(7), clock.now / 1000).ok());
  EXPECT_EQ(opened.size(), 2u);
}

TEST_F(LazyEdgeFixture, AnUnopenableSecretDropsTheKeysAndAsksForAReload) {
  lazy(10);
  // Sealed under another master key (e.g. a retired one), and a mangled one.
  auto other =
      secrets::MasterKey::from_base64("ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=").value();
  install(kRef, 1, secrets::seal(other, kRef, "s"));
  install(kOther, 1, "not-a-sealed-value");
  for (const auto& r : {kRef, kOther}) {
    auto d = edge.check(host(r), pub_of(r), "");
    EXPECT_EQ(d.status, 401) << r;
    EXPECT_EQ(d.reason, "invalid key");
    EXPECT_EQ(edge.keys_generation(r), -1) << "keys dropped until reloaded";
  }
  EXPECT_EQ(unopenable, (std::vector<std::string>{kRef, kOther}));
  EXPECT_EQ(edge.counters().secrets_unopenable.load(), 2u);
  EXPECT_EQ(edge.counters().secrets_cached.load(), 0u);
  // Asked again: no further open (the keys are gone), the same 401.
  EXPECT_EQ(edge.check(host(kRef), pub_of(kRef), "").status, 401);
  EXPECT_EQ(opened.size(), 2u);
  // The reload installs working keys.
  install(kRef);
  EXPECT_EQ(edge.check(host(kRef), pub_of(kRef), "").status, 200);
}

TEST_F(LazyEdgeFixture, WithoutAnOpenerASealedOnlySecretCannotSign) {
  install(kRef);
  EXPECT_EQ(edge.check(host(kRef), pub_of(kRef), "").status, 401);
}

RenderState sample_state() {
  RenderState s;
  s.generation = "g0123456789ab";
  s.checkpoint = 4242;
  auto gw = EndpointPattern::compile(kDefaultGatewayUrlPattern, "gw").value();
  auto db = EndpointPattern::compile(kDefaultDbUpstreamPattern, "db").value();
  s.fingerprint = render_fingerprint(options(), gw, db);
  for (const auto& [ref, phase] : {std::pair{kRef, v1::PHASE_ACTIVE}, {kOther, v1::PHASE_PAUSED}}) {
    SavedTenant t;
    t.route = RouteTenant{ref, phase, v1::PLAN_PRO, "http://" + ref + ".gateway.internal:8000"};
    t.want = 3;
    std::string yaml;
    EXPECT_TRUE(render_tenant_text(t.route, options(), &yaml, &t.json)) << ref;
    t.yaml_hash = TraefikDir::content_hash(yaml);
    t.yaml_size = yaml.size();
    if (phase == v1::PHASE_ACTIVE) t.keys = EdgeKeys{3, "pubhash", "sechash", "", "sealed-value"};
    s.tenants.push_back(std::move(t));
  }
  return s;
}

TEST(RenderState, RoundTripsEveryField) {
  const RenderState s = sample_state();
  auto back = decode_render_state(encode_render_state(s));
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_TRUE(back->matches(s.generation, s.checkpoint, s.fingerprint));
  ASSERT_EQ(back->tenants.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    const auto &a = s.tenants[i], &b = back->tenants[i];
    EXPECT_EQ(b.route.ref, a.route.ref);
    EXPECT_EQ(b.route.phase, a.route.phase);
    EXPECT_EQ(b.route.plan, a.route.plan);
    EXPECT_EQ(b.route.gateway_url, a.route.gateway_url);
    EXPECT_EQ(b.want, a.want);
    EXPECT_EQ(b.yaml_hash, a.yaml_hash);
    EXPECT_EQ(b.yaml_size, a.yaml_size);
    EXPECT_EQ(b.json.text(), a.json.text());
    for (int k = 0; k < TenantJson::kSections; ++k)
      EXPECT_EQ(b.json.section(TenantJson::Section(k)), a.json.section(TenantJson::Section(k)));
    EXPECT_EQ(b.keys.keys_generation, a.keys.keys_generation);
    EXPECT_EQ(b.keys.publishable_hash, a.keys.publishable_hash);
    EXPECT_EQ(b.keys.sealed_jwt_secret, a.keys.sealed_jwt_secret);
    EXPECT_TRUE(b.keys.jwt_secret.empty());
  }
  // The HTTP body from the decoded parts is the one from the rendered parts.
  std::map<std::string, TenantJson> x, y;
  for (const auto& t : s.tenants) x.emplace(t.route.ref, t.json);
  for (const auto& t : back->tenants) y.emplace(t.route.ref, t.json);
  EXPECT_EQ(dynamic_json(render_base(options()), y), dynamic_json(render_base(options()), x));
}

TEST(RenderState, AnyChangedOrMissingByteIsCorrupt) {
  const std::string bytes = encode_render_state(sample_state());
  // Every byte flipped in turn (header, checksum, body), and every cut.
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    std::string bad = bytes;
    bad[i] = static_cast<char>(bad[i] ^ 0x20);
    auto r = decode_render_state(bad);
    ASSERT_FALSE(r.ok()) << "byte " << i;
    EXPECT_EQ(r.error().code, errc::corrupt);
  }
  for (std::size_t n = 0; n < bytes.size(); n += 7)
    EXPECT_FALSE(decode_render_state(std::string_view(bytes).substr(0, n)).ok()) << n;
  EXPECT_FALSE(decode_render_state(bytes + "x").ok());
}

TEST(RenderState, StaleForAnotherGenerationCheckpointOrOptions) {
  const RenderState s = sample_state();
  EXPECT_TRUE(s.matches("g0123456789ab", 4242, s.fingerprint));
  EXPECT_FALSE(s.matches("g0123456789ab", 4243, s.fingerprint));
  EXPECT_FALSE(s.matches("g0123456789ac", 4242, s.fingerprint));
  auto gw = EndpointPattern::compile(kDefaultGatewayUrlPattern, "gw").value();
  auto db = EndpointPattern::compile(kDefaultDbUpstreamPattern, "db").value();
  RenderOptions other = options();
  other.base_domain = "other.example.com";
  EXPECT_FALSE(s.matches("g0123456789ab", 4242, render_fingerprint(other, gw, db)));
  other = options();
  other.entry_points = {"websecure"};
  EXPECT_FALSE(s.matches("g0123456789ab", 4242, render_fingerprint(other, gw, db)));
  auto gw2 = EndpointPattern::compile("http://{ref}:8000", "gw").value();
  EXPECT_FALSE(s.matches("g0123456789ab", 4242, render_fingerprint(options(), gw2, db)));
}

TEST(TraefikDirTest, WritesAtomicallyOnlyOnChangeAndReconciles) {
  testenv::TempDir tmp("router-dir");
  TraefikDir dir(tmp.path() + "/traefik");
  ASSERT_TRUE(dir.prepare().ok());
  std::ofstream(tmp.path() + "/traefik/.tenant-x.yml.tmp") << "half";
  ASSERT_TRUE(dir.prepare().ok());
  EXPECT_FALSE(std::filesystem::exists(tmp.path() + "/traefik/.tenant-x.yml.tmp"));
  EXPECT_TRUE(dir.put("a.yml", "one").value());
  EXPECT_FALSE(dir.put("a.yml", "one").value()) << "unchanged bytes were rewritten";
  EXPECT_TRUE(dir.put("a.yml", "two").value());
  std::ofstream(tmp.path() + "/traefik/" + tenant_file(kOther)) << "stale";
  std::ofstream(tmp.path() + "/traefik/keep-me.yml") << "someone else's";
  auto n = dir.reconcile({{tenant_file(kRef), "t"}, {"a.yml", "two"}},
                         [](const std::string& f) { return !ref_of_file(f).empty(); });
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n->changed, 2);
  auto all = dir.read_all().value();
  EXPECT_EQ(all,
            (std::map<std::string, std::string>{
                {"a.yml", "two"}, {"keep-me.yml", "someone else's"}, {tenant_file(kRef), "t"}}));
}

// A first start writes every tenant's file in one pass (one sync for all):
// the directory then holds exactly the wanted files, no temp file is left,
// and a second pass changes nothing.
TEST(TraefikDirTest, ReconcilesManyFilesInOnePass) {
  testenv::TempDir tmp("router-dir");
  TraefikDir dir(tmp.path() + "/traefik");
  ASSERT_TRUE(dir.prepare().ok());
  std::map<std::string, std::string> want;
  for (int i = 0; i < 300; ++i) {
    std::string ref(20, 'a');
    for (int v = i, p = 19; v > 0; v /= 26, --p) ref[static_cast<std::size_t>(p)] += v % 26;
    want[tenant_file(ref)] = "tenant " + std::to_string(i) + "\n";
  }
  std::ofstream(tmp.path() + "/traefik/" + tenant_file(kOther)) << "deleted while we were down";
  const auto ours = [](const std::string& f) { return !ref_of_file(f).empty(); };
  auto n = dir.reconcile(want, ours);
  ASSERT_TRUE(n.ok()) << n.error().message;
  EXPECT_EQ(n->changed, 301);
  std::size_t entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(tmp.path() + "/traefik"))
    if (e.path().filename() != TraefikDir::kManifest) ++entries;
  EXPECT_EQ(entries, want.size()) << "temp files left behind, or the stale file kept";
  EXPECT_EQ(dir.read_all().value(), want);
  want.begin()->second = "changed\n";
  EXPECT_EQ(dir.reconcile(want, ours).value().changed, 1);
  const auto again = dir.reconcile(want, ours).value();
  EXPECT_EQ(again.changed, 0);
  EXPECT_EQ(again.read_back, 0) << "files the manifest vouches for were read back";
  EXPECT_EQ(again.trusted, static_cast<int>(want.size()));
  EXPECT_EQ(dir.read_all().value(), want);
}

// The manifest spares a start from reading every file back, but never hides
// a file changed or removed behind router-sync's back, even one edited in
// place with the same size and its mtime put back, and an unreadable
// manifest is ignored (everything read back), never trusted.
TEST(TraefikDirTest, TheManifestNeverHidesAFileChangedBehindItsBack) {
  testenv::TempDir tmp("router-dir");
  const std::string path = tmp.path() + "/traefik";
  const auto ours = [](const std::string& f) { return !ref_of_file(f).empty(); };
  std::map<std::string, std::string> want;
  for (const char* r : {"aaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbb", "cccccccccccccccccccc",
                        "dddddddddddddddddddd"})
    want[tenant_file(r)] = std::string("routes of ") + r + "\n";
  {
    TraefikDir dir(path);
    ASSERT_TRUE(dir.prepare().ok());
    ASSERT_EQ(dir.reconcile(want, ours).value().changed, 4);
  }
  ASSERT_TRUE(std::filesystem::exists(path + "/" + TraefikDir::kManifest));
  // Behind its back: one file edited in place (same size, same inode, its
  // modification time put back), one replaced, one removed.
  const std::string a = path + "/" + tenant_file("aaaaaaaaaaaaaaaaaaaa");
  struct stat before {};
  ASSERT_EQ(::stat(a.c_str(), &before), 0);
  {
    std::fstream f(a, std::ios::in | std::ios::out);
    f << "ROUTES";
  }
  const timespec times[2] = {before.st_atim, before.st_mtim};
  ASSERT_EQ(::utimensat(AT_FDCWD, a.c_str(), times, 0), 0);
  std::filesystem::remove(path + "/" + tenant_file("bbbbbbbbbbbbbbbbbbbb"));
  { std::ofstream(path + "/" + tenant_file("cccccccccccccccccccc")) << "evil\n"; }
  {
    TraefikDir dir(path);
    const auto st = dir.reconcile(want, ours).value();
    EXPECT_EQ(st.changed, 3);
    EXPECT_EQ(st.trusted, 1) << "only the untouched file may go unread";
    EXPECT_FALSE(st.manifest_bad);
    EXPECT_EQ(dir.read_all().value(), want);
  }
  // A damaged manifest is ignored: every file is read back, then it is rewritten.
  {
    std::ofstream(path + "/" + TraefikDir::kManifest) << "supaplane-router-sync manifest 1\nx y\n";
  }
  { std::ofstream(path + "/" + tenant_file("dddddddddddddddddddd")) << "evil\n"; }
  {
    TraefikDir dir(path);
    const auto st = dir.reconcile(want, ours).value();
    EXPECT_TRUE(st.manifest_bad);
    EXPECT_EQ(st.read_back, 4);
    EXPECT_EQ(st.changed, 1);
    EXPECT_EQ(dir.read_all().value(), want);
  }
  {
    TraefikDir dir(path);
    const auto st = dir.reconcile(want, ours).value();
    EXPECT_FALSE(st.manifest_bad) << "the manifest was not rewritten";
    EXPECT_EQ(st.read_back, 0);
    EXPECT_EQ(st.changed, 0);
  }
  // Files put at run time are recorded once the manifest is saved.
  {
    TraefikDir dir(path);
    ASSERT_TRUE(dir.reconcile(want, ours).ok());
    want[tenant_file("aaaaaaaaaaaaaaaaaaaa")] = "paused\n";
    ASSERT_TRUE(dir.put(tenant_file("aaaaaaaaaaaaaaaaaaaa"), "paused\n").value());
    ASSERT_TRUE(dir.save_manifest().ok());
  }
  TraefikDir dir(path);
  const auto st = dir.reconcile(want, ours).value();
  EXPECT_EQ(st.read_back, 0);
  EXPECT_EQ(st.changed, 0);
  EXPECT_EQ(dir.read_all().value(), want);
}
}  // namespace

// ---- the epoll HTTP server under router-sync's endpoints
namespace {

/// Sends `raw` on a fresh connection and reads until `want` bytes or EOF.
std::string exchange(int port, const std::string& raw, std::size_t want) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string got;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::send(fd, raw.data(), raw.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(raw.size())) {
    char buf[65536];
    while (got.size() < want) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      got.append(buf, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  return got;
}

std::size_t count(const std::string& hay, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = hay.find(needle); at != std::string::npos; at = hay.find(needle, at + 1)) ++n;
  return n;
}

TEST(EpollHttp, PipelinedRequestsLargeBodiesAndRefusals) {
  const std::string big(8 << 20, 'b');  // larger than any socket buffer: EPOLLOUT path
  http::EpollHttpServer server(
      [&](const http::HttpRequest& req, http::HttpResponse& res) {
        if (req.path == "/big") {
          res.body = big;
          return;
        }
        res.body = req.method + " " + req.path + " host=" + req.header("host");
      },
      2);
  const int port = server.bind("127.0.0.1", 0).value();
  server.start();

  // Two pipelined requests in one write, then one with an ignored body.
  const std::string two = exchange(
      port,
      "GET /a?x=1 HTTP/1.1\r\nHost: one\r\n\r\nGET /b HTTP/1.1\r\nHOST: two\r\n\r\n"
      "POST /c HTTP/1.1\r\nHost: three\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
      1 << 20);
  EXPECT_EQ(count(two, "HTTP/1.1 200 OK"), 3u) << two;
  EXPECT_NE(two.find("GET /a host=one"), std::string::npos);
  EXPECT_NE(two.find("GET /b host=two"), std::string::npos);
  EXPECT_NE(two.find("POST /c host=three"), std::string::npos);

  const std::string large =
      exchange(port, "GET /big HTTP/1.1\r\nConnection: close\r\n\r\n", big.size() + 1024);
  EXPECT_EQ(large.size() - large.find("\r\n\r\n") - 4, big.size());

  EXPECT_EQ(exchange(port, "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 1 << 16)
                .rfind("HTTP/1.1 411", 0),
            0u);
  EXPECT_EQ(exchange(port, "POST /x HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 1 << 16)
                .rfind("HTTP/1.1 413", 0),
            0u);
  EXPECT_EQ(exchange(port, "garbage\r\n\r\n", 1 << 16).rfind("HTTP/1.1 400", 0), 0u);
  // HEAD: the length of what GET would send, no body.
  const std::string head =
      exchange(port, "HEAD /big HTTP/1.1\r\nConnection: close\r\n\r\n", 1 << 16);
  EXPECT_EQ(head.rfind("HTTP/1.1 200", 0), 0u);
  EXPECT_EQ(head.size(), head.find("\r\n\r\n") + 4) << "HEAD sent a body";
  EXPECT_NE(head.find("Content-Length: " + std::to_string(big.size())), std::string::npos);
  server.stop();
}

}  // namespace
