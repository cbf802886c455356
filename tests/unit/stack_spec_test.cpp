// The stack spec: the shipped files parse, templates render, and every kind
// of mistake is refused naming the file, the service and the field.
#include "supaplane/driver/stack_spec.hpp"

#include <gtest/gtest.h>

#include <string>

#include "supaplane/secrets/secrets.hpp"

namespace {

using namespace supaplane;
using driver::parse_stack_spec;

const std::string kMinimal = R"(version: 1
gateway: {service: gw, port: 8000}
database: {service: db, port: 5432}
services:
  gw:
    image: x/gw:1
    depends_on: {db: healthy}
    environment: {SECRET: "{{jwt_secret}}", URL: "{{api_url}}"}
  db:
    image: x/db:1
    health_name: db
    healthcheck: {test: ["CMD", "probe"], interval_ms: 250}
)";

std::string with(std::string text, const std::string& from, const std::string& to) {
  const auto at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

void expect_refused(const std::string& text, const std::string& field, const std::string& what) {
  auto r = parse_stack_spec(text, "spec.yaml");
  ASSERT_FALSE(r.ok()) << "accepted; expected " << field;
  EXPECT_EQ(r.error().code, errc::invalid_argument);
  EXPECT_NE(r.error().message.find("spec.yaml"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find(field), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find(what), std::string::npos) << r.error().message;
}

TEST(StackSpec, ShippedSpecsParse) {
  for (const char* file : {"/deploy/stacks/supabase.yaml", "/tests/stacks/test-stack.yaml"}) {
    auto s = driver::load_stack_spec(std::string(SUPAPLANE_SOURCE_DIR) + file);
    ASSERT_TRUE(s.ok()) << s.error().message;
    EXPECT_EQ(s->gateway_service, "kong");
    EXPECT_GE(s->services.size(), 6u);
  }
  auto s =
      driver::load_stack_spec(std::string(SUPAPLANE_SOURCE_DIR) + "/deploy/stacks/supabase.yaml")
          .value();
  std::set<std::string> health;
  for (const auto& svc : s.services) health.insert(svc.health_name);
  for (const char* n : {"auth", "db", "pooler", "realtime", "rest", "storage"})
    EXPECT_TRUE(health.count(n)) << n;
  for (const char* n : {"db", "kong", "auth", "rest", "realtime", "storage", "imgproxy", "meta",
                        "functions", "pooler"})
    EXPECT_NE(s.find(n), nullptr) << n;
  // The kept database follows a rotated password: db sets its roles'
  // passwords at every start, from its environment (never a template).
  EXPECT_FALSE(s.find("db")->on_healthy.exec.empty());
}

TEST(StackSpec, ServicesAreOrderedDependenciesFirst) {
  auto s = parse_stack_spec(kMinimal, "spec.yaml");
  ASSERT_TRUE(s.ok()) << s.error().message;
  ASSERT_EQ(s->services.size(), 2u);
  EXPECT_EQ(s->services[0].name, "db");
  EXPECT_EQ(s->services[1].name, "gw");
  EXPECT_EQ(s->services[0].healthcheck.interval_ms, 250);
}

TEST(StackSpec, MistakesNameFileServiceAndField) {
  expect_refused(with(kMinimal, "version: 1", "version: 2"), "version", "must be 1");
  expect_refused(with(kMinimal, "db: healthy", "db: ready"), "gw.depends_on.db",
                 "healthy or started");
  expect_refused(with(kMinimal, "db: healthy", "nope: healthy"), "gw.depends_on.nope",
                 "no such service");
  expect_refused(with(kMinimal, "{{jwt_secret}}", "{{jwt_secrte}}"), "gw.environment.SECRET",
                 "unknown template name");
  expect_refused(with(kMinimal, "image: x/db:1", "imag: x/db:1"), "db.imag", "unknown field");
  expect_refused(with(kMinimal, "    image: x/db:1\n", ""), "db.image", "is required");
  expect_refused(with(kMinimal, "[\"CMD\", \"probe\"]", "[\"probe\"]"), "db.healthcheck.test",
                 "CMD or CMD-SHELL");
  expect_refused(with(kMinimal, "interval_ms: 250", "interval_ms: 1"), "db.healthcheck.interval_ms",
                 "between");
  expect_refused(with(kMinimal, "service: gw,", "service: nope,"), "gateway.service", "no service");
  expect_refused(kMinimal + "    capabilities: [SYS_ADMIN]\n", "db.capabilities", "never granted");
  expect_refused(kMinimal + "    resources: {gold: {cpus: 1}}\n", "db.resources.gold",
                 "unknown plan");
  expect_refused(kMinimal + "    volumes: {data: relative/path}\n", "db.volumes.data", "absolute");
  expect_refused(with(kMinimal, "  db:\n    image: x/db:1\n",
                      "  db:\n    image: x/db:1\n    depends_on: {gw: started}\n"),
                 "depends_on", "cycle");
  expect_refused("services: [", "yaml", "");
}

TEST(StackSpec, OnHealthyIsAnArgvWithoutTemplatesOnAServiceWithAHealthCheck) {
  const std::string hook = "    on_healthy: {exec: [sh, -c, 'sync \"$POSTGRES_PASSWORD\"']}\n";
  auto s = parse_stack_spec(kMinimal + hook, "spec.yaml");
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->find("db")->on_healthy.exec,
            (std::vector<std::string>{"sh", "-c", "sync \"$POSTGRES_PASSWORD\""}));
  EXPECT_TRUE(s->find("gw")->on_healthy.exec.empty());

  // A rendered secret would be in the exec's command line, which the
  // daemon shows to all its clients (events, inspect).
  expect_refused(kMinimal + "    on_healthy: {exec: [sync, \"{{db_password}}\"]}\n",
                 "db.on_healthy.exec", "cannot be a template");
  expect_refused(kMinimal + "    on_healthy: {exec: [sync, \"{{ref}}\"]}\n", "db.on_healthy.exec",
                 "cannot be a template");
  expect_refused(kMinimal + "    on_healthy: {exec: []}\n", "db.on_healthy.exec", "is required");
  expect_refused(kMinimal + "    on_healthy: {}\n", "db.on_healthy.exec", "is required");
  expect_refused(kMinimal + "    on_healthy: {exec: \"sh -c sync\"}\n", "db.on_healthy.exec",
                 "list of strings");
  expect_refused(kMinimal + "    on_healthy: {exec: [sh, [x]]}\n", "db.on_healthy.exec",
                 "list of strings");
  expect_refused(kMinimal + "    on_healthy: {run: [sync]}\n", "db.on_healthy.run",
                 "unknown field");
  expect_refused(kMinimal + "    on_healthy: [sync]\n", "db.on_healthy", "must be a map");
  // It runs once the service is healthy: without a health check it could not.
  expect_refused(with(kMinimal, "    environment: {SECRET",
                      "    on_healthy: {exec: [sync]}\n    environment: {SECRET"),
                 "gw.on_healthy", "needs a healthcheck");
}

TEST(StackSpec, TemplatesRenderAndDeriveStableSecrets) {
  const std::map<std::string, std::string> values{{"ref", "abcdefghijklmnopqrst"}};
  EXPECT_EQ(driver::render_template("postgres.{{ref}}", values, "").value(),
            "postgres.abcdefghijklmnopqrst");
  EXPECT_EQ(driver::render_template("{{ ref }}-x", values, "").value(), "abcdefghijklmnopqrst-x");
  EXPECT_FALSE(driver::render_template("{{nope}}", values, "").ok());
  EXPECT_FALSE(driver::render_template("{{ref", values, "").ok());
  const auto a = driver::render_template("{{secret.vault}}", values, "seed-one").value();
  EXPECT_EQ(a.size(), 64u);
  EXPECT_EQ(a, driver::render_template("{{secret.vault}}", values, "seed-one").value());
  EXPECT_NE(a, driver::render_template("{{secret.vault}}", values, "seed-two").value());
  EXPECT_NE(a, driver::render_template("{{secret.other}}", values, "seed-one").value());
}

TEST(StackSpec, PlanLimitsFallBackToTheDefaults) {
  auto s = parse_stack_spec(kMinimal + "    resources: {pro: {cpus: 2, memory_mb: 64}}\n" +
                                "default_resources: {free: {cpus: 0.5, memory_mb: 32, pids: 9}}\n",
                            "spec.yaml")
               .value();
  const auto& db = *s.find("db");
  EXPECT_EQ(s.resources_for(db, v1::PLAN_PRO).cpus, 2);
  EXPECT_EQ(s.resources_for(db, v1::PLAN_FREE).pids, 9);
  EXPECT_EQ(s.resources_for(*s.find("gw"), v1::PLAN_STARTER).memory_mb, 0);
}

}  // namespace
