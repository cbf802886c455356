// Scale benchmark (docs/benchmarks.md): fills a real nats-server's PLATFORM
// stream with N tenants (default 100,000) and about E events each (default
// 10: 1,000,000 events), asynchronously and with the real event encoding,
// then measures in the same run, each service in a child process of its own
// (so that its resident memory is its own):
//   - the api: start with an empty Redis → projection rebuilt → ready; an
//     operator rebuild (RebuildProjection) while it runs; resident memory;
//   - the provisioner: start → ready → first resync done, with a driver that
//     reports every tenant converged (a bench fake of our Driver interface:
//     the postgres driver would need 100,000 databases); resident memory;
//   - router-sync: start with an empty Redis (rebuild + full render of the
//     directory), the HTTP provider's body; then two restarts, each a new
//     process: from the render state the clean stop saved, and with it
//     removed (full render from the projection); resident memory of each;
//   - Redis `used_memory`, and raw baselines (ordered replay, pull + ack).
// Each service's durable consumer is caught up before it starts (a restart,
// not a first start on a full log). Prints a Markdown table.
//
//   supaplane_scale_bench [--tenants 100000] [--events-per-tenant 10] [--logs DIR]
//                         [--only api|provisioner|router]  (one service: quicker iterations)
// (--logs keeps the services' own output: DIR/api.log, provisioner.log, router.log)
#include <hiredis/hiredis.h>
#include <nats/nats.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "app.hpp"
#include "provisioner_app.hpp"
#include "render_state.hpp"
#include "router_app.hpp"
#include "servers.hpp"
#include "supaplane/core/ids.hpp"
#include "supaplane/domain/converge.hpp"
#include "supaplane/domain/tenant.hpp"
#include "supaplane/event_store/consumer.hpp"
#include "supaplane/event_store/event_store.hpp"
#include "supaplane/events/tenant_events.hpp"
#include "supaplane/logging/logging.hpp"
#include "supaplane/secrets/secrets.hpp"

namespace {

using namespace supaplane;
namespace v1 = supaplane::v1;
using SteadyClock = std::chrono::steady_clock;

const char* kMasterKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const char* kJwtSecret = "scale-bench-jwt-secret-0123456789abcdefgh";

double secs_since(SteadyClock::time_point t0) {
  return std::chrono::duration<double>(SteadyClock::now() - t0).count();
}

std::string arg_str(int argc, char** argv, const char* name, const std::string& def) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  return def;
}

int arg_int(int argc, char** argv, const char* name, int def) {
  const auto s = arg_str(argc, argv, name, "");
  return s.empty() ? def : std::atoi(s.c_str());
}

/// CPU time (user + system) this process has used, seconds: with the wall
/// time it separates the work from the waiting on a loaded machine.
double process_cpu_s() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  auto s = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  };
  return s(ru.ru_utime) + s(ru.ru_stime);
}

/// VmRSS and VmHWM (peak) of this process, MiB.
std::pair<double, double> memory_mib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  double rss = 0, hwm = 0;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) rss = std::atof(line.c_str() + 6) / 1024.0;
    if (line.rfind("VmHWM:", 0) == 0) hwm = std::atof(line.c_str() + 6) / 1024.0;
  }
  return {rss, hwm};
}

/// One line the parent reads back from a child's output.
void result(const std::string& key, double value) {
  std::printf("RESULT %s %.6f\n", key.c_str(), value);
  std::fflush(stdout);
}

bool wait_until(const std::function<bool()>& ready, double timeout_s) {
  const auto t0 = SteadyClock::now();
  while (!ready()) {
    if (secs_since(t0) > timeout_s) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

// ---------------------------------------------------------------------------
// The tenants' histories.

/// Where every tenant lives: what the fill's outcome events record and what
/// the bench driver answers, so the resync finds nothing to repair.
driver::Endpoints endpoints_of(const std::string& ref) {
  driver::Endpoints e;
  e.gateway_url = "http://" + ref + ".gateway.internal:8000";
  e.db_host = "db.internal";
  e.db_port = 5432;
  e.db_name = "t_" + ref;
  e.db_user = "t_" + ref;
  e.db_schema = "public";
  return e;
}

struct HistoryEvent {
  v1::TenantEvent event;
  bool outcome{false};  ///< appended by the provisioner (system actor)
};

struct History {
  std::vector<HistoryEvent> events;
  v1::TenantState state;  ///< the fold of `events`
};

/// A realistic settled history of about `target` events: created, the first
/// provisioning, then pauses / resumes, key rotations and plan changes, each
/// answered by the provisioner's outcome (now and then after a failed
/// attempt); every hundredth tenant ends deleted.
History make_history(const std::string& ref, int index, int target, std::mt19937& rng) {
  History h;
  std::uint64_t seq = 0;
  auto push = [&](const v1::TenantEvent& e, bool outcome) {
    h.events.push_back({e, outcome});
    h.state = domain::fold(std::move(h.state), e, {ref, ++seq, 0});
  };
  auto command = [&](domain::TenantCommand c) {
    auto r = domain::decide(h.state, c);
    if (!r) {
      std::fprintf(stderr, "decide %s: %s\n", domain::to_string(c.kind), r.error().message.c_str());
      std::exit(1);
    }
    for (const auto& e : *r) push(e, false);
  };
  auto outcome = [&](bool fail_first) {
    const auto action = domain::plan_convergence(h.state);
    if (action == domain::StackAction::none) return;
    if (domain::announce_start(h.state, action)) {
      v1::TenantEvent started;
      started.mutable_provisioning_started()->set_observed_generation(h.state.generation());
      push(started, true);
    }
    if (fail_first)
      push(domain::failure_event(h.state.generation(), "connection refused", 1, false), true);
    domain::Applied a;
    if (action != domain::StackAction::remove) {
      const auto where = endpoints_of(ref);
      a.keys_generation = h.state.keys_generation();
      a.gateway_url = where.gateway_url;
      a.db_name = where.db_name;
      a.db_user = where.db_user;
      a.db_schema = where.db_schema;
      a.db_host = where.db_host;
      a.db_port = where.db_port;
    }
    push(domain::outcome_event(action, h.state.generation(), a), true);
  };
  domain::TenantCommand create;
  create.kind = domain::CommandKind::create;
  create.name = "project-" + std::to_string(index);
  create.plan = index % 3 == 0 ? v1::PLAN_PRO : v1::PLAN_FREE;
  create.owner_account_id = "acct_" + std::string(20, static_cast<char>('a' + index % 26));
  command(create);
  outcome(false);
  const bool deleted = index % 100 == 99;
  const int keep = deleted ? 2 : 0;
  while (static_cast<int>(h.events.size()) + keep < target) {
    domain::TenantCommand c;
    if (h.state.phase() == v1::PHASE_PAUSED) {
      c.kind = domain::CommandKind::resume;
    } else {
      switch (rng() % 3) {
        case 0:
          c.kind = domain::CommandKind::pause;
          break;
        case 1:
          c.kind = domain::CommandKind::rotate_keys;
          break;
        default:
          c.kind = domain::CommandKind::change_plan;
          c.plan = h.state.plan() == v1::PLAN_PRO ? v1::PLAN_STARTER : v1::PLAN_PRO;
          break;
      }
    }
    command(c);
    outcome(rng() % 10 == 0);  // now and then after a failed attempt
  }
  if (deleted) {
    domain::TenantCommand del;
    del.kind = domain::CommandKind::remove;
    command(del);
    outcome(false);
  }
  return h;
}

struct Fill {
  std::uint64_t events{0};
  std::uint64_t errors{0};
  double seconds{0};
  std::vector<std::pair<std::string, std::int64_t>> keys;  ///< ref → applied keys generation
};

/// Appends every history asynchronously (at most 4,096 in flight), tenants
/// interleaved in blocks of 1,000 as many clients would write them.
Fill fill(event_store::EventStore& es, int tenants, int per_tenant) {
  Fill f;
  std::mt19937 rng(2026);
  std::mutex mu;
  std::condition_variable cv;
  std::uint64_t inflight = 0;
  v1::Actor owner;
  owner.set_kind(v1::ACTOR_KIND_ACCOUNT);
  owner.set_id("acct_aaaaaaaaaaaaaaaaaaaa");
  v1::Actor system;
  system.set_kind(v1::ACTOR_KIND_SYSTEM);
  system.set_id("provisioner");
  std::set<std::string> seen;
  const auto t0 = SteadyClock::now();
  for (int first = 0; first < tenants; first += 1000) {
    std::vector<std::pair<std::string, History>> block;
    for (int i = first; i < std::min(tenants, first + 1000); ++i) {
      std::string ref;
      do ref = ids::random_tenant_ref().str();
      while (!seen.insert(ref).second);
      block.emplace_back(ref, make_history(ref, i, per_tenant, rng));
    }
    std::size_t longest = 0;
    for (const auto& [ref, h] : block) longest = std::max(longest, h.events.size());
    for (std::size_t step = 0; step < longest; ++step) {
      for (const auto& [ref, h] : block) {
        if (step >= h.events.size()) continue;
        const auto& he = h.events[step];
        auto out = events::make_tenant_event(
            ref, he.event, he.outcome ? system : owner, "", event_store::Expected::any(),
            ids::random_hex_id(), "", 1'700'000'000'000 + static_cast<std::int64_t>(f.events));
        {
          std::unique_lock lk(mu);
          cv.wait(lk, [&] { return inflight < 4096; });
          ++inflight;
        }
        ++f.events;
        es.append_async(out, [&](Result<event_store::AppendResult> r) {
          std::lock_guard lk(mu);
          if (!r) ++f.errors;
          --inflight;
          cv.notify_all();
        });
      }
    }
    for (const auto& [ref, h] : block)
      if (h.state.phase() != v1::PHASE_DELETED)
        f.keys.emplace_back(ref, h.state.applied_keys_generation());
  }
  std::unique_lock lk(mu);
  cv.wait(lk, [&] { return inflight == 0; });
  f.seconds = secs_since(t0);
  return f;
}

/// Acknowledges everything on `durable` (made with the service's own consumer
/// settings), so the service starts as after a restart. Returns seconds.
class AckAll final : public event_store::BatchHandler {
 public:
  void handle(std::vector<event_store::InboundMessage>& batch) override { count += batch.size(); }
  std::atomic<std::uint64_t> count{0};
};

double catch_up(event_store::EventStore& es, event_store::ConsumerOptions cons,
                std::uint64_t expect) {
  AckAll h;
  cons.batch = 256;
  event_store::ConsumerRunner runner(es, cons, h);
  const auto t0 = SteadyClock::now();
  runner.start();
  if (!wait_until([&] { return h.count.load() >= expect; }, 600)) {
    std::fprintf(stderr, "durable %s: %llu of %llu acked\n", cons.durable.c_str(),
                 static_cast<unsigned long long>(h.count.load()),
                 static_cast<unsigned long long>(expect));
    std::exit(1);
  }
  const double s = secs_since(t0);
  runner.stop();
  return s;
}

/// Raw read of the whole stream by an ephemeral pull consumer with no acks
/// (AckNone), in Fetch batches of `batch` messages (at most 16 MiB each),
/// each message's metadata parsed as the replay does. Returns seconds.
double raw_pull_read(const std::string& url, const std::string& stream, const std::string& filter,
                     int batch, bool no_wait, std::uint64_t expect) {
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  natsSubscription* sub = nullptr;
  if (natsConnection_ConnectTo(&nc, url.c_str()) != NATS_OK ||
      natsConnection_JetStream(&js, nc, nullptr) != NATS_OK)
    std::exit(1);
  const auto t0 = SteadyClock::now();
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = stream.c_str();
  so.Config.AckPolicy = js_AckNone;
  so.Config.DeliverPolicy = js_DeliverAll;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  if (js_PullSubscribe(&sub, js, filter.c_str(), nullptr, nullptr, &so, &jerr) != NATS_OK) {
    std::fprintf(stderr, "pull subscribe: %d\n", static_cast<int>(jerr));
    std::exit(1);
  }
  std::uint64_t got = 0, last = 0;
  while (got < expect) {
    jsFetchRequest req;
    jsFetchRequest_Init(&req);
    req.Batch = batch;
    req.NoWait = no_wait;
    req.MaxBytes = 16 << 20;
    req.Expires = 5'000'000'000LL;
    natsMsgList list{};
    const natsStatus st = natsSubscription_FetchRequest(&list, sub, &req);
    if (st != NATS_OK && st != NATS_TIMEOUT && st != NATS_NOT_FOUND) {
      std::fprintf(stderr, "fetch: %s\n", natsStatus_GetText(st));
      std::exit(1);
    }
    if (st != NATS_OK && list.Count == 0) {
      std::fprintf(stderr, "pull read stalled at %llu of %llu\n",
                   static_cast<unsigned long long>(got), static_cast<unsigned long long>(expect));
      std::exit(1);
    }
    for (int i = 0; i < list.Count; ++i) {
      jsMsgMetaData* meta = nullptr;
      if (natsMsg_GetMetaData(&meta, list.Msgs[i]) == NATS_OK) {
        last = meta->Sequence.Stream;
        jsMsgMetaData_Destroy(meta);
      }
      ++got;
    }
    natsMsgList_Destroy(&list);
  }
  const double s = secs_since(t0);
  (void)last;
  natsSubscription_Unsubscribe(sub);
  natsSubscription_Destroy(sub);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return s;
}

/// router-sync's stored keys (as it writes them after loading them from the
/// key store), pipelined: the start-up then finds every tenant's keys.
void store_router_keys(const testenv::RedisServer& redis,
                       const std::vector<std::pair<std::string, std::int64_t>>& keys) {
  redisContext* c = redisConnect("127.0.0.1", redis.port());
  if (!c || c->err) std::exit(1);
  const auto master = secrets::MasterKey::from_base64(kMasterKey).value();
  std::size_t queued = 0;
  auto drain = [&] {
    for (; queued > 0; --queued) {
      void* reply = nullptr;
      if (redisGetReply(c, &reply) != REDIS_OK) std::exit(1);
      freeReplyObject(reply);
    }
  };
  for (const auto& [ref, gen] : keys) {
    const std::string key = "sp:router:keys:" + ref;
    const std::string g = std::to_string(gen);
    const std::string pub = secrets::key_hash("pub-" + ref);
    const std::string sec = secrets::key_hash("sec-" + ref);
    const std::string jwt = secrets::seal(master, ref, "jwt-secret-of-" + ref + "-0123456789");
    const char* argv[] = {"HSET",      key.c_str(), "gen",       g.c_str(), "pub",
                          pub.c_str(), "sec",       sec.c_str(), "jwt",     jwt.c_str()};
    std::size_t lens[10];
    for (int i = 0; i < 10; ++i) lens[i] = std::strlen(argv[i]);
    redisAppendCommandArgv(c, 10, argv, lens);
    if (++queued == 512) drain();
  }
  drain();
  redisFree(c);
}

double redis_used_memory_mib(const testenv::RedisServer& redis) {
  redisContext* c = redisConnect("127.0.0.1", redis.port());
  if (!c || c->err) return -1;
  auto* r = static_cast<redisReply*>(redisCommand(c, "INFO memory"));
  double mib = -1;
  if (r && r->type == REDIS_REPLY_STRING) {
    const char* p = std::strstr(r->str, "used_memory:");
    if (p) mib = std::atof(p + 12) / (1024.0 * 1024.0);
  }
  if (r) freeReplyObject(r);
  redisFree(c);
  return mib;
}

// ---------------------------------------------------------------------------
// The services, each in a child process (`role ...`).

/// A driver that finds every tenant's stack exactly as the log says it is:
/// what is left of a resync is reading the log and deciding.
class ConvergedDriver final : public driver::Driver {
 public:
  const char* name() const override { return "bench"; }
  Result<driver::Progress> provision(const driver::StackRequest&) override { return done(); }
  Status pause(const driver::StackRequest&) override {
    ++actions;
    return Status::Ok();
  }
  Result<driver::Progress> resume(const driver::StackRequest&) override { return done(); }
  Status remove(const std::string&) override {
    ++actions;
    return Status::Ok();
  }
  Result<driver::StackStatus> observe(const std::string&, bool want_running) override {
    ++observes;
    driver::StackStatus s;
    s.exists = true;
    s.accepting_connections = want_running;
    return s;
  }
  driver::Endpoints endpoints(const std::string& ref) const override { return endpoints_of(ref); }
  std::atomic<std::uint64_t> actions{0};
  std::atomic<std::uint64_t> observes{0};

 private:
  Result<driver::Progress> done() {
    ++actions;
    driver::Progress p;
    p.done = true;
    return p;
  }
};

api::ApiOptions api_options(const std::string& nats, const std::string& redis,
                            const std::string& pg) {
  api::ApiOptions o;
  o.nats_url = nats;
  o.redis_url = redis;
  o.database_url = pg;
  o.grpc_addr = "127.0.0.1:0";
  o.metrics_addr = "127.0.0.1:0";
  o.jwt_secret = kJwtSecret;
  o.replica_id = "bench";
  return o;
}

/// The raw baseline of a router-sync full restart: the same bytes read from
/// Redis with bare hiredis and nothing done with them (the projection's refs,
/// then pipelined batches of one MGET of 500 states and 500 HMGETs of their
/// keys, one batch in flight ahead), on one connection. Returns seconds.
double raw_router_read(const testenv::RedisServer& redis, std::size_t* tenants_read) {
  redisContext* c = redisConnect("127.0.0.1", redis.port());
  if (!c || c->err) std::exit(1);
  const auto t0 = SteadyClock::now();
  auto* gen = static_cast<redisReply*>(redisCommand(c, "GET sp:router:active"));
  if (!gen || gen->type != REDIS_REPLY_STRING) std::exit(1);
  const std::string p = "sp:router:" + std::string(gen->str, gen->len) + ":";
  freeReplyObject(gen);
  auto* all = static_cast<redisReply*>(redisCommand(c, "ZRANGE %s 0 -1", (p + "all").c_str()));
  if (!all || all->type != REDIS_REPLY_ARRAY) std::exit(1);
  std::vector<std::string> refs;
  for (std::size_t i = 0; i < all->elements; ++i)
    refs.emplace_back(all->element[i]->str, all->element[i]->len);
  freeReplyObject(all);
  constexpr std::size_t kBatch = 500;
  auto send = [&](std::size_t b) {
    const std::size_t e = std::min(refs.size(), b + kBatch);
    std::vector<std::string> keys;
    keys.reserve(e - b);
    for (std::size_t i = b; i < e; ++i) keys.push_back(p + "t:" + refs[i]);
    std::vector<const char*> argv{"MGET"};
    std::vector<std::size_t> lens{4};
    for (const auto& k : keys) {
      argv.push_back(k.c_str());
      lens.push_back(k.size());
    }
    redisAppendCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data());
    for (std::size_t i = b; i < e; ++i) {
      const std::string key = "sp:router:keys:" + refs[i];
      const char* hv[] = {"HMGET", key.c_str(), "gen", "pub", "sec", "jwt"};
      std::size_t hl[6];
      for (int k = 0; k < 6; ++k) hl[k] = std::strlen(hv[k]);
      redisAppendCommandArgv(c, 6, hv, hl);
    }
  };
  std::size_t got = 0;
  if (!refs.empty()) send(0);
  for (std::size_t b = 0; b < refs.size(); b += kBatch) {
    if (b + kBatch < refs.size()) send(b + kBatch);
    const std::size_t e = std::min(refs.size(), b + kBatch);
    for (std::size_t i = b; i <= e; ++i) {
      void* reply = nullptr;
      if (redisGetReply(c, &reply) != REDIS_OK) std::exit(1);
      freeReplyObject(reply);
    }
    got += e - b;
  }
  const double secs = secs_since(t0);
  redisFree(c);
  *tenants_read = got;
  return secs;
}

router::AppOptions router_options(const std::string& nats, const std::string& redis,
                                  const std::string& pg, const std::string& dir) {
  router::AppOptions o;
  o.nats_url = nats;
  o.redis_url = redis;
  o.database_url = pg;
  o.master_key = kMasterKey;
  o.http_addr = "127.0.0.1:0";
  o.metrics_addr = "127.0.0.1:0";
  o.traefik_dir = dir + "/traefik";
  return o;
}

provisioner::AppOptions provisioner_options(const std::string& nats, const std::string& pg) {
  provisioner::AppOptions o;
  o.nats_url = nats;
  o.database_url = pg;
  o.master_key = kMasterKey;
  o.metrics_addr = "127.0.0.1:0";
  o.resync_interval_ms = 24 * 3600 * 1000;  // the start-up resync only
  return o;
}

int role_api(const std::string& nats, const std::string& redis, const std::string& pg) {
  api::ApiApp app(api_options(nats, redis, pg));
  const auto t0 = SteadyClock::now();
  if (auto st = app.start(); !st) {
    std::fprintf(stderr, "api: %s\n", st.error().message.c_str());
    return 1;
  }
  if (!wait_until([&] { return app.readiness().empty(); }, 900)) {
    std::fprintf(stderr, "api not ready: %s\n", app.readiness().c_str());
    return 1;
  }
  result("api_ready_s", secs_since(t0));
  auto [rss, hwm] = memory_mib();
  result("api_rss_ready_mib", rss);
  auto r = app.guard().rebuild(projection::RebuildReason::operator_request);
  if (!r) {
    std::fprintf(stderr, "api rebuild: %s\n", r.error().message.c_str());
    return 1;
  }
  result("api_rebuild_s", r->seconds);
  result("api_rebuild_events", static_cast<double>(r->events));
  std::tie(rss, hwm) = memory_mib();
  result("api_rss_mib", rss);
  result("api_hwm_mib", hwm);
  app.stop();
  return 0;
}

int role_provisioner(const std::string& nats, const std::string& pg) {
  auto driver = std::make_unique<ConvergedDriver>();
  auto* d = driver.get();
  provisioner::App app(provisioner_options(nats, pg), SystemClock::instance(), std::move(driver));
  const auto t0 = SteadyClock::now();
  if (auto st = app.start(); !st) {
    std::fprintf(stderr, "provisioner: %s\n", st.error().message.c_str());
    return 1;
  }
  if (!wait_until([&] { return app.readiness().empty(); }, 900)) {
    std::fprintf(stderr, "provisioner not ready: %s\n", app.readiness().c_str());
    return 1;
  }
  result("prov_ready_s", secs_since(t0));
  const auto& k = app.provisioner().counters();
  if (!wait_until([&] { return k.resyncs.load() >= 1; }, 900)) {
    std::fprintf(stderr, "provisioner: no resync finished\n");
    return 1;
  }
  result("prov_resync_done_s", secs_since(t0));
  result("prov_resync_s", static_cast<double>(k.resync_ms.load()) / 1000.0);
  result("prov_resync_events", static_cast<double>(k.resync_events.load()));
  result("prov_resync_tenants", static_cast<double>(k.resync_tenants.load()));
  result("prov_history_reads", static_cast<double>(k.history_reads.load()));
  result("prov_drift", static_cast<double>(k.drift.load()));
  result("prov_health_changes", static_cast<double>(k.health_changes.load()));
  result("prov_driver_actions", static_cast<double>(d->actions.load()));
  result("prov_driver_observes", static_cast<double>(d->observes.load()));
  const auto [rss, hwm] = memory_mib();
  result("prov_rss_mib", rss);
  result("prov_hwm_mib", hwm);
  // The per-tenant path the resync used before, for a sample: a kick reads
  // the tenant's history alone (one ordered consumer each).
  const std::uint64_t sample = 500;
  std::vector<std::string> refs;
  {
    event_store::ConnectOptions co;
    co.url = nats;
    auto es = event_store::EventStore::connect(co).value();
    auto subjects = es->subjects("platform.tenant.>").value();
    for (std::size_t i = 0; i < subjects.size() && refs.size() < sample; ++i)
      refs.push_back(subjects[i].substr(std::strlen("platform.tenant.")));
  }
  const auto reads0 = k.history_reads.load();
  const auto t1 = SteadyClock::now();
  for (const auto& ref : refs) app.provisioner().kick(ref);
  if (!wait_until([&] { return k.history_reads.load() >= reads0 + refs.size(); }, 600)) return 1;
  result("prov_single_read_ms", secs_since(t1) * 1000.0 / static_cast<double>(refs.size()));
  app.stop();
  return 0;
}

int role_router(const std::string& nats, const std::string& redis, const std::string& pg,
                const std::string& dir) {
  double rss = 0, hwm = 0;
  {
    router::App app(router_options(nats, redis, pg, dir));
    const auto t0 = SteadyClock::now();
    if (auto st = app.start(); !st) {
      std::fprintf(stderr, "router-sync: %s\n", st.error().message.c_str());
      return 1;
    }
    if (!wait_until([&] { return app.readiness().empty(); }, 900)) {
      std::fprintf(stderr, "router-sync not ready: %s\n", app.readiness().c_str());
      return 1;
    }
    result("router_ready_s", secs_since(t0));
    auto t1 = SteadyClock::now();
    auto body = app.sync().snapshot();
    result("router_snapshot_s", secs_since(t1));
    result("router_snapshot_mib", static_cast<double>(body->json.size()) / (1024.0 * 1024.0));
    result("router_keys_errors", static_cast<double>(app.sync().counters().keys_errors.load()));
    std::tie(rss, hwm) = memory_mib();
    result("router_rss_mib", rss);
    result("router_hwm_mib", hwm);
    app.stop();
  }
  return 0;
}

/// A restart, a new process: with the render state the last clean stop saved
/// (nothing changed since), or with it removed first (`full`: every tenant
/// read from Redis and rendered again).
int role_router_restart(const std::string& nats, const std::string& redis, const std::string& pg,
                        const std::string& dir, bool full) {
  if (full) std::filesystem::remove(dir + "/traefik/" + router::RenderState::kFile);
  router::App app(router_options(nats, redis, pg, dir));
  const auto t0 = SteadyClock::now();
  const double cpu0 = process_cpu_s();
  if (auto st = app.start(); !st) return 1;
  if (!wait_until([&] { return app.readiness().empty(); }, 900)) return 1;
  result("router_restart_ready_s", secs_since(t0));
  result("router_restart_cpu_s", process_cpu_s() - cpu0);
  result("router_restart_state_used", static_cast<double>(app.sync().counters().state_used.load()));
  // ForwardAuth answers from the lazily opened secrets: every tenant's keys
  // are there, none opened yet.
  double rss = 0, hwm = 0;
  std::tie(rss, hwm) = memory_mib();
  result("router_restart_rss_mib", rss);
  result("router_restart_hwm_mib", hwm);
  app.stop();
  return 0;
}

// ---------------------------------------------------------------------------

std::string g_child_log_level = "warn";  ///< --log-level, handed to the children

/// How router-sync is deployed (deploy/compose, deploy/k8s, scripts/run): its
/// heap in transparent huge pages, grown 256 MiB at a time.
constexpr const char* kRouterTunables =
    "GLIBC_TUNABLES=glibc.malloc.hugetlb=1:glibc.malloc.top_pad=268435456";

std::map<std::string, double> run_child(std::vector<std::string> args, const std::string& log,
                                        const std::vector<std::string>& env = {}) {
  args.push_back("--log-level");
  args.push_back(g_child_log_level);
  char self[4096] = {};
  const auto n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) std::exit(1);
  std::vector<std::string> argv;
  // SCALE_BENCH_PERF_DIR=D: every child runs under `perf record` (DWARF call
  // graphs), its profile in D/<role>-<n>.data, for `perf report -i`.
  if (const char* perf_dir = std::getenv("SCALE_BENCH_PERF_DIR"); perf_dir && *perf_dir) {
    static int seq = 0;
    argv = {"perf",
            "record",
            "-q",
            "-F",
            "499",
            "--call-graph",
            "dwarf,16384",
            "-o",
            std::string(perf_dir) + "/" + args[1] + "-" + std::to_string(++seq) + ".data",
            "--"};
  }
  if (!env.empty()) {
    argv.emplace_back("env");
    argv.insert(argv.end(), env.begin(), env.end());
  }
  argv.emplace_back(self, static_cast<std::size_t>(n));
  argv.insert(argv.end(), args.begin(), args.end());
  testenv::Process p;
  p.start(argv, log);
  const int rc = p.wait();
  std::map<std::string, double> out;
  std::ifstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string tag, key;
    double v = 0;
    if (ls >> tag >> key >> v && tag == "RESULT") out[key] = v;
  }
  if (rc != 0) {
    std::fprintf(stderr, "%s failed (exit %d); its output is in %s\n", args[1].c_str(), rc,
                 log.c_str());
    std::exit(1);
  }
  return out;
}

int run(int tenants, int per_tenant, const std::string& logs_dir, const std::string& only) {
  logging::init("scale-bench", "warn");
  testenv::NatsServer nats;
  testenv::RedisServer redis;
  testenv::PostgresServer pg;
  nats.start();
  redis.start();
  pg.start();
  testenv::TempDir tmp("scale-bench");
  const std::string api_db = pg.create_database("scale_api");
  const std::string prov_db = pg.create_database("scale_prov");
  const std::string router_db = pg.create_database("scale_router");

  event_store::ConnectOptions co;
  co.url = nats.url();
  auto es = event_store::EventStore::connect(co).value();
  std::printf("filling: %d tenants, ~%d events each\n", tenants, per_tenant);
  std::fflush(stdout);
  const Fill f = fill(*es, tenants, per_tenant);
  if (f.errors > 0) {
    std::fprintf(stderr, "%llu appends failed\n", static_cast<unsigned long long>(f.errors));
    return 1;
  }
  std::printf("filled: %llu events in %.1f s (%.0f events/s)\n",
              static_cast<unsigned long long>(f.events), f.seconds,
              static_cast<double>(f.events) / f.seconds);
  std::fflush(stdout);

  // Raw baselines on the same stream.
  std::uint64_t replayed = 0;
  auto t0 = SteadyClock::now();
  if (!es->replay("platform.tenant.>", 1, [&](const event_store::StoredMessage&) {
        ++replayed;
        return true;
      }))
    return 1;
  const double raw_replay_s = secs_since(t0);
  std::uint64_t pulled = 0;
  t0 = SteadyClock::now();
  if (!es->replay(
          "platform.tenant.>", 1,
          [&](const event_store::StoredMessage&) {
            ++pulled;
            return true;
          },
          event_store::ReplayRead::pull_batches) ||
      pulled != replayed)
    return 1;
  const double pull_replay_s = secs_since(t0);
  std::vector<std::tuple<int, bool, double>> raw_pull_reads;
  for (auto [batch, no_wait] : {std::pair{1024, true}, {4096, true}, {8192, true}, {4096, false}})
    raw_pull_reads.emplace_back(batch, no_wait,
                                raw_pull_read(nats.url(), es->stream().name, "platform.tenant.>",
                                              batch, no_wait, replayed));

  event_store::ConsumerOptions prov_cons;  // as provisioner::App makes it
  prov_cons.durable = "provisioner";
  prov_cons.filter = "platform.tenant.>";
  prov_cons.max_deliveries = 100;
  prov_cons.ack_wait_ms = 120'000;
  const double raw_pull_s = catch_up(*es, prov_cons, f.events);
  event_store::ConsumerOptions api_cons;  // as api::ApiApp makes it
  api_cons.durable = api::projector_durable(api_options(nats.url(), redis.url(), api_db));
  catch_up(*es, api_cons, f.events);
  event_store::ConsumerOptions router_cons;  // as router::App makes it
  router_cons.durable = "router-sync";
  router_cons.filter = "platform.tenant.>";
  catch_up(*es, router_cons, f.events);
  store_router_keys(redis, f.keys);
  const double redis_keys_mib = redis_used_memory_mib(redis);
  const std::string logs = logs_dir.empty() ? tmp.path() : logs_dir;
  std::filesystem::create_directories(logs);

  const auto wanted = [&](const char* role) { return only.empty() || only == role; };
  std::map<std::string, double> api, prov, router;
  if (wanted("api"))
    api = run_child({"role", "api", "--nats", nats.url(), "--redis", redis.url(), "--pg", api_db},
                    logs + "/api.log");
  const double redis_api_mib = redis_used_memory_mib(redis);
  if (wanted("provisioner"))
    prov = run_child({"role", "provisioner", "--nats", nats.url(), "--pg", prov_db},
                     logs + "/provisioner.log");
  std::map<std::string, double> router_state, router_full, router_full_default;
  double raw_router_s = 0;
  std::size_t raw_router_tenants = 0;
  if (wanted("router")) {
    const std::vector<std::string> tunables{kRouterTunables};
    router = run_child({"role", "router", "--nats", nats.url(), "--redis", redis.url(), "--pg",
                        router_db, "--dir", tmp.path()},
                       logs + "/router.log", tunables);
    router_state = run_child({"role", "router-restart", "--nats", nats.url(), "--redis",
                              redis.url(), "--pg", router_db, "--dir", tmp.path()},
                             logs + "/router-restart.log", tunables);
    router_full = run_child({"role", "router-restart", "--nats", nats.url(), "--redis", redis.url(),
                             "--pg", router_db, "--dir", tmp.path(), "--full", "1"},
                            logs + "/router-restart-full.log", tunables);
    raw_router_s = raw_router_read(redis, &raw_router_tenants);
    // The same full render with glibc's default heap, for comparison.
    router_full_default =
        run_child({"role", "router-restart", "--nats", nats.url(), "--redis", redis.url(), "--pg",
                   router_db, "--dir", tmp.path(), "--full", "1"},
                  logs + "/router-restart-full-default-heap.log", {"GLIBC_TUNABLES="});
  }
  const double redis_all_mib = redis_used_memory_mib(redis);

  const double ev = static_cast<double>(f.events);
  std::printf(
      "\n%d tenants, %llu events (%d per tenant, about), %llu events on tenant subjects\n\n",
      tenants, static_cast<unsigned long long>(f.events), per_tenant,
      static_cast<unsigned long long>(replayed));
  std::printf("| measurement | result | target |\n|---|---:|---|\n");
  std::printf("| fill: async appends, real encoding | %.1f s (%.0f events/s) | |\n", f.seconds,
              ev / f.seconds);
  std::printf("| raw: ordered replay of `platform.tenant.>` | %.2f s (%.0f events/s) | |\n",
              raw_replay_s, static_cast<double>(replayed) / raw_replay_s);
  std::printf(
      "| `EventStore::replay`, pull batches (`ReplayRead::pull_batches`) | %.2f s (%.0f events/s) "
      "| |\n",
      pull_replay_s, static_cast<double>(replayed) / pull_replay_s);
  for (const auto& [batch, no_wait, secs] : raw_pull_reads)
    std::printf(
        "| raw: ephemeral pull, AckNone, `Fetch(%d)`, %s (16 MiB max) | %.2f s (%.0f events/s) "
        "| |\n",
        batch, no_wait ? "NoWait" : "waiting (Expires 5 s)", secs,
        static_cast<double>(replayed) / secs);
  std::printf("| raw: durable pull `Fetch(256)` + ack | %.2f s (%.0f events/s) | |\n", raw_pull_s,
              ev / raw_pull_s);
  std::printf("| api: start (empty Redis) → projection rebuilt → ready | %.2f s | |\n",
              api["api_ready_s"]);
  std::printf(
      "| api: projection rebuild (RebuildProjection, while running) | %.2f s (%.0f events/s) "
      "| < 20 s |\n",
      api["api_rebuild_s"], api["api_rebuild_events"] / api["api_rebuild_s"]);
  std::printf("| api: resident memory after start / peak | %.0f / %.0f MiB | < 1 GiB |\n",
              api["api_rss_ready_mib"], api["api_hwm_mib"]);
  std::printf("| provisioner: start → ready | %.2f s | < 10 s |\n", prov["prov_ready_s"]);
  std::printf("| provisioner: start → first resync done | %.2f s (resync %.2f s) | < 10 s |\n",
              prov["prov_resync_done_s"], prov["prov_resync_s"]);
  std::printf(
      "| provisioner: resync: events folded / tenants / history reads | %.0f / %.0f / %.0f "
      "| 0 reads |\n",
      prov["prov_resync_events"], prov["prov_resync_tenants"], prov["prov_history_reads"]);
  std::printf(
      "| provisioner: resync: driver observes / actions / drift / health | %.0f / %.0f / "
      "%.0f / %.0f | |\n",
      prov["prov_driver_observes"], prov["prov_driver_actions"], prov["prov_drift"],
      prov["prov_health_changes"]);
  std::printf(
      "| provisioner: one tenant's history read alone (the old resync's step) | %.2f ms "
      "(× %d tenants = %.0f s) | |\n",
      prov["prov_single_read_ms"], tenants, prov["prov_single_read_ms"] * tenants / 1000.0);
  std::printf("| provisioner: resident memory / peak | %.0f / %.0f MiB | < 1 GiB |\n",
              prov["prov_rss_mib"], prov["prov_hwm_mib"]);
  std::printf("| router-sync: start (empty projection) → rebuilt, rendered, ready | %.2f s | |\n",
              router["router_ready_s"]);
  std::printf(
      "| router-sync: restart, nothing changed → from the saved render state → ready | %.2f s "
      "(CPU %.2f s; state used: %.0f) | < 2 s |\n",
      router_state["router_restart_ready_s"], router_state["router_restart_cpu_s"],
      router_state["router_restart_state_used"]);
  std::printf(
      "| router-sync: restart → full render of every tenant from the projection (no saved state) "
      "→ ready | %.2f s (CPU %.2f s; state used: %.0f) | < 2 s |\n",
      router_full["router_restart_ready_s"], router_full["router_restart_cpu_s"],
      router_full["router_restart_state_used"]);
  std::printf(
      "| router-sync: the same full restart, glibc's default heap (no `GLIBC_TUNABLES`) | %.2f s "
      "(CPU %.2f s) | |\n",
      router_full_default["router_restart_ready_s"], router_full_default["router_restart_cpu_s"]);
  std::printf(
      "| raw: Redis read of what a full restart reads (%zu tenants: refs, MGET + HMGET, batches "
      "of 500, bare hiredis, one connection) | %.2f s | |\n",
      raw_router_tenants, raw_router_s);
  if (raw_router_s > 0)
    std::printf("| router-sync full restart → ready / raw Redis read | %.2f | |\n",
                router_full["router_restart_ready_s"] / raw_router_s);
  std::printf("| router-sync: HTTP provider body (%.1f MiB) from the rendered cache | %.2f s | |\n",
              router["router_snapshot_mib"], router["router_snapshot_s"]);
  std::printf("| router-sync: resident memory / peak (first start) | %.0f / %.0f MiB | < 1 GiB |\n",
              router["router_rss_mib"], router["router_hwm_mib"]);
  std::printf(
      "| router-sync: resident memory / peak, restart from the saved state / full render | %.0f / "
      "%.0f, %.0f / %.0f MiB | < 1 GiB |\n",
      router_state["router_restart_rss_mib"], router_state["router_restart_hwm_mib"],
      router_full["router_restart_rss_mib"], router_full["router_restart_hwm_mib"]);
  std::printf(
      "| Redis `used_memory`: router keys / + api projection / + router projection | %.0f "
      "/ %.0f / %.0f MiB | |\n",
      redis_keys_mib, redis_api_mib, redis_all_mib);
  std::fflush(stdout);  // before the temp dirs (100,000 files) are removed
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  supaplane::event_store::LibraryScope nats_scope;
  if (argc > 2 && std::strcmp(argv[1], "role") == 0) {
    supaplane::logging::init("scale-bench", arg_str(argc, argv, "--log-level", "warn"));
    const std::string role = argv[2];
    const auto nats = arg_str(argc, argv, "--nats", "");
    const auto redis = arg_str(argc, argv, "--redis", "");
    const auto pg = arg_str(argc, argv, "--pg", "");
    if (role == "api") return role_api(nats, redis, pg);
    if (role == "provisioner") return role_provisioner(nats, pg);
    if (role == "router") return role_router(nats, redis, pg, arg_str(argc, argv, "--dir", ""));
    if (role == "router-restart")
      return role_router_restart(nats, redis, pg, arg_str(argc, argv, "--dir", ""),
                                 arg_str(argc, argv, "--full", "0") == "1");
    std::fprintf(stderr, "unknown role %s\n", role.c_str());
    return 2;
  }
  // Every option takes a value; anything else (e.g. --help) gets the usage
  // instead of a 100,000-tenant run.
  static const char* const kOptions[] = {"--tenants", "--events-per-tenant", "--logs", "--only",
                                         "--log-level"};
  for (int i = 1; i < argc; i += 2) {
    const bool known = std::any_of(std::begin(kOptions), std::end(kOptions),
                                   [&](const char* o) { return std::strcmp(argv[i], o) == 0; });
    if (!known || i + 1 >= argc) {
      std::fprintf(
          stderr,
          "usage: %s [--tenants 100000] [--events-per-tenant 10] [--logs DIR]\n"
          "          [--only api|provisioner|router] [--log-level warn|info|debug]\n"
          "  SCALE_BENCH_PERF_DIR=DIR: each child runs under perf record (DIR/<role>-<n>.data)\n",
          argv[0]);
      return std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0 ? 0 : 2;
    }
  }
  const std::string only = arg_str(argc, argv, "--only", "");
  if (!only.empty() && only != "api" && only != "provisioner" && only != "router") {
    std::fprintf(stderr, "--only must be api, provisioner or router (got %s)\n", only.c_str());
    return 2;
  }
  g_child_log_level = arg_str(argc, argv, "--log-level", "warn");
  return run(arg_int(argc, argv, "--tenants", 100'000),
             arg_int(argc, argv, "--events-per-tenant", 10), arg_str(argc, argv, "--logs", ""),
             only);
}
