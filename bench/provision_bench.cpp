// Provisioning benchmark: N tenants created over gRPC until each is ACTIVE
// (seen through WatchTenants), with the provisioner converging them through
// the postgres driver, against a raw SQL script doing the same statements on
// the same cluster in the same run (psql, as many in parallel as the
// provisioner has workers). Database mode against raw; schema mode absolute.
// Starts its own nats-server, redis-server and PostgreSQL; prints Markdown.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "api_options.hpp"
#include "app.hpp"
#include "provisioner_app.hpp"
#include "provisioner_options.hpp"
#include "servers.hpp"
#include "supaplane/event_store/event_store.hpp"
#include "supaplane/logging/logging.hpp"
#include "supaplane/v1/api.grpc.pb.h"

namespace {

using namespace supaplane;
namespace v1 = supaplane::v1;
using SteadyClock = std::chrono::steady_clock;

struct Run {
  double seconds{0};
  int tenants{0};
  std::vector<double> latency_ms;  // create → ACTIVE, per tenant
  double rate() const { return seconds > 0 ? tenants / seconds : 0; }
  double pct(double p) {
    if (latency_ms.empty()) return 0;
    std::sort(latency_ms.begin(), latency_ms.end());
    return latency_ms[std::min(
        latency_ms.size() - 1,
        static_cast<std::size_t>(p * static_cast<double>(latency_ms.size())))];
  }
};

double ms_between(SteadyClock::time_point a, SteadyClock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

/// The statements the postgres driver runs for a new tenant in database
/// mode, as a plain script (no existence checks: the names are fresh): the
/// login role and its own API roles (t_<ref>_anon, _authenticated,
/// _service_role) granted to it, with the connection budget checked under
/// the driver's advisory lock, in one transaction; then the database, owned
/// by the driver's role (the admin here), its grants to the tenant's role
/// alone, and inside it the tenant's rights on `public` and the layout
/// comment. The driver sends a SCRAM verifier it computed; the script sends
/// the password and the server computes it: the same work, other side.
std::string raw_tenant_sql(const std::string& ref, int limit) {
  const std::string name = "t_" + ref;
  const std::string q = "\"" + name + "\"";
  const std::string lim = std::to_string(limit);
  std::string scoped;
  std::string sql = "BEGIN;\nCREATE ROLE " + q +
                    " LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS "
                    "CONNECTION LIMIT " +
                    lim + " PASSWORD 'raw-password-0123456789abcdef';\n";
  for (const char* suffix : {"_anon", "_authenticated", "_service_role"}) {
    const std::string role = "\"" + name + suffix + "\"";
    sql += "CREATE ROLE " + role + " NOLOGIN" +
           (std::string(suffix) == "_service_role" ? " BYPASSRLS" : "") + ";\n";
    scoped += (scoped.empty() ? "" : ", ") + role;
  }
  sql += "GRANT " + scoped + " TO " + q +
         ";\n"
         "SELECT pg_advisory_xact_lock(hashtext('supaplane.central.catalog'));\n"
         "SELECT current_setting('max_connections')::int, "
         "coalesce(sum(rolconnlimit) FILTER (WHERE rolconnlimit > 0), 0)::bigint "
         "FROM pg_roles WHERE rolname ~ '^t_[a-z]{20}$' AND rolname <> '" +
         name +
         "';\n"
         "COMMIT;\n"
         "CREATE DATABASE " +
         q + ";\nREVOKE ALL ON DATABASE " + q +
         " FROM PUBLIC;\nGRANT CONNECT, CREATE, TEMPORARY ON DATABASE " + q + " TO " + q +
         ";\nALTER DATABASE " + q + " WITH ALLOW_CONNECTIONS true CONNECTION LIMIT " + lim +
         ";\n\\connect " + q + "\nGRANT USAGE, CREATE ON SCHEMA public TO " + q +
         ";\nCOMMENT ON DATABASE " + q + " IS 'supaplane tenant database, layout 2';\n";
  return sql;
}

std::string letters(int n, char tag) {
  std::string out = std::string("raw") + tag;
  for (int v = n; out.size() < 20; v /= 26) out += static_cast<char>('a' + v % 26);
  return out;
}

/// `tenants` tenants through `workers` parallel psql sessions.
Run run_raw(testenv::PostgresServer& pg, const testenv::TempDir& dir, int tenants, int workers,
            int limit, char tag) {
  std::vector<std::string> files;
  for (int w = 0; w < workers; ++w) {
    const std::string f = dir.path() + "/raw-" + tag + std::to_string(w) + ".sql";
    std::ofstream out(f);
    for (int i = w; i < tenants; i += workers) out << raw_tenant_sql(letters(i, tag), limit);
    files.push_back(f);
  }
  const auto t0 = SteadyClock::now();
  std::vector<std::thread> ts;
  for (const auto& f : files)
    ts.emplace_back([&, f] {
      // The budget check's rows go to /dev/null; errors still reach stderr.
      const std::string cmd =
          "psql -q -v ON_ERROR_STOP=1 \"" + pg.admin_dsn() + "\" -f " + f + " >/dev/null";
      if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "raw script failed: %s\n", f.c_str());
    });
  for (auto& t : ts) t.join();
  Run r;
  r.seconds = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  r.tenants = tenants;
  return r;
}

std::unique_ptr<grpc::ClientContext> ctx(const std::string& token) {
  auto c = std::make_unique<grpc::ClientContext>();
  c->AddMetadata("authorization", "Bearer " + token);
  return c;
}

/// The platform: api + provisioner in this process, fresh NATS and Redis.
Run run_platform(testenv::PostgresServer& pg, const std::string& mode, int tenants, int workers,
                 int clients, int limit) {
  testenv::NatsServer nats;
  nats.start();
  testenv::RedisServer redis;
  redis.start();
  static int run = 0;
  const std::string db = "provbench_" + std::to_string(++run);
  pg.create_database(db);
  auto ao = testenv::api_options(nats, redis, pg.admin_dsn(db), std::string(40, 'b'));
  api::ApiApp api(ao);
  provisioner::AppOptions po = testenv::provisioner_options(nats, pg, db);
  // The service's own back-off (the suites' is shortened).
  po.provisioner.backoff_base_ms = provisioner::AppOptions{}.provisioner.backoff_base_ms;
  po.tenant_db_mode = mode;
  po.tenant_schema_db = "bench_central";
  po.provisioner.workers = workers;
  po.provisioner.connection_limit = limit;
  provisioner::App prov(po);
  if (!api.start() || !prov.start()) {
    std::fprintf(stderr, "cannot start the platform\n");
    std::exit(1);
  }
  while (!api.readiness().empty() || !prov.readiness().empty())
    std::this_thread::sleep_for(std::chrono::milliseconds(20));

  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(api.grpc_port()),
                                     grpc::InsecureChannelCredentials());
  auto accounts = v1::AccountService::NewStub(channel);
  auto stub = v1::TenantService::NewStub(channel);
  std::string token;
  {
    v1::SignUpRequest req;
    req.set_email("bench@example.com");
    req.set_password("bench-password");
    v1::SessionResponse resp;
    grpc::ClientContext c;
    if (!accounts->SignUp(&c, req, &resp).ok()) std::exit(1);
    token = resp.token();
  }

  // Who became ACTIVE when, as a user sees it.
  std::mutex mu;
  std::map<std::string, SteadyClock::time_point> created, active;
  auto watch_ctx = ctx(token);
  std::thread watcher([&] {
    v1::WatchTenantsRequest req;
    auto reader = stub->WatchTenants(watch_ctx.get(), req);
    v1::TenantChange change;
    while (reader->Read(&change)) {
      if (change.tenant().phase() != v1::PHASE_ACTIVE) continue;
      std::lock_guard lk(mu);
      active.emplace(change.tenant().ref(), SteadyClock::now());
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the watch is open

  const auto t0 = SteadyClock::now();
  std::vector<std::thread> ts;
  for (int c = 0; c < clients; ++c)
    ts.emplace_back([&, c] {
      for (int i = c; i < tenants; i += clients) {
        v1::CreateTenantRequest req;
        req.set_name("bench-" + std::to_string(i));
        v1::TenantMutation m;
        const auto start = SteadyClock::now();
        if (!stub->CreateTenant(ctx(token).get(), req, &m).ok()) continue;
        std::lock_guard lk(mu);
        created.emplace(m.tenant().ref(), start);
      }
    });
  for (auto& t : ts) t.join();
  const auto deadline = SteadyClock::now() + std::chrono::minutes(5);
  for (;;) {
    {
      std::lock_guard lk(mu);
      std::size_t done = 0;
      for (const auto& [ref, at] : created) done += active.count(ref);
      if (done == created.size() || SteadyClock::now() > deadline) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  Run r;
  {
    std::lock_guard lk(mu);
    SteadyClock::time_point last = t0;
    for (const auto& [ref, at] : created) {
      auto it = active.find(ref);
      if (it == active.end()) continue;
      r.latency_ms.push_back(ms_between(at, it->second));
      last = std::max(last, it->second);
      ++r.tenants;
    }
    r.seconds = std::chrono::duration<double>(last - t0).count();
  }
  watch_ctx->TryCancel();
  watcher.join();
  prov.stop();
  api.stop();
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const supaplane::event_store::LibraryScope nats_library;  // destroyed last
  int tenants = 200, workers = 4, clients = 4, schema_workers = 8, limit = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--tenants")) tenants = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--workers")) workers = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--clients")) clients = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--schema-workers")) schema_workers = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--connection-limit")) limit = std::atoi(argv[i + 1]);
  }
  // Every tenant of the four runs stays on the cluster (max_connections 1000)
  // and is promised `limit` connections: the driver refuses a tenant beyond
  // max_connections minus its reserve (20).
  if (tenants < 1 || limit < 1 || 4L * tenants * limit > 1000 - 20) {
    std::fprintf(stderr,
                 "4 runs x %d tenants x a connection limit of %d exceed the cluster's budget "
                 "of 980 connections: lower --tenants or --connection-limit\n",
                 tenants, limit);
    return 2;
  }
  spdlog::set_level(spdlog::level::err);
  testenv::PostgresServer pg;
  pg.start();
  testenv::TempDir dir("supaplane-provbench");
  // Raw before and after the platform run: the machine's weather shows.
  Run raw = run_raw(pg, dir, tenants, workers, limit, 'x');
  Run db = run_platform(pg, "database", tenants, workers, clients, limit);
  Run raw2 = run_raw(pg, dir, tenants, workers, limit, 'y');
  raw.seconds = (raw.seconds + raw2.seconds) / 2;
  // No CREATE DATABASE in schema mode: short statements, more can overlap.
  Run schema = run_platform(pg, "schema", tenants, schema_workers, clients, limit);

  std::printf("\n| run | tenants | seconds | tenants/s | p50 create→ACTIVE ms | p99 ms |\n");
  std::printf("|---|---|---|---|---|---|\n");
  std::printf(
      "| raw SQL script, database mode (%d psql; mean of a run before and after) | %d | "
      "%.2f | %.1f | — | — |\n",
      workers, raw.tenants, raw.seconds, raw.rate());
  std::printf("| supaplane, database mode (%d workers) | %d | %.2f | %.1f | %.0f | %.0f |\n",
              workers, db.tenants, db.seconds, db.rate(), db.pct(0.5), db.pct(0.99));
  std::printf("| supaplane, schema mode (%d workers) | %d | %.2f | %.1f | %.0f | %.0f |\n",
              schema_workers, schema.tenants, schema.seconds, schema.rate(), schema.pct(0.5),
              schema.pct(0.99));
  std::printf(
      "\ndatabase mode vs raw: %.2f (target >= 0.7); schema mode: %.1f tenants/s "
      "(target >= 100)\n",
      raw.rate() > 0 ? db.rate() / raw.rate() : 0, schema.rate());
  const bool complete = db.tenants == tenants && schema.tenants == tenants;
  if (!complete) std::fprintf(stderr, "not every tenant reached ACTIVE\n");
  return complete ? 0 : 1;
}
