// Several router-sync replicas in one process over one nats-server,
// redis-server and PostgreSQL (the tenant keys), sharing one Redis
// projection: each reads the whole stream with its own durable, so after
// 500+ random tenant commands every replica serves the same Traefik
// configuration, byte for byte, and the same ForwardAuth answers as a fresh
// replica started afterwards; a replica restarted mid-run catches up; a
// replica frozen (SIGSTOP, the binary as its own process) while the others
// apply everything catches up from behind the shared checkpoint to the same
// bytes; a rebuild of the shared projection equals it key for key.
#include <gtest/gtest.h>
#include <httplib.h>
#include <nats/nats.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <tuple>

#include "eventually.hpp"
#include "router_app.hpp"
#include "servers.hpp"
#include "supaplane/config/config.hpp"
#include "supaplane/domain/converge.hpp"
#include "supaplane/domain/tenant.hpp"
#include "supaplane/events/tenant_events.hpp"
#include "supaplane/keystore/key_store.hpp"
#include "supaplane/projection/projector.hpp"

namespace {

using namespace supaplane;
namespace v1 = supaplane::v1;
using namespace std::chrono_literals;
using nlohmann::json;

const char* kMasterKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const char* kDomain = "supabase.localhost";
const char* kOwner = "acct_cccccccccccccccccccc";

/// One instant for every replica: the tokens ForwardAuth issues (iat, exp)
/// are then the same bytes on each, and answers compare whole.
class FixedClock final : public Clock {
 public:
  std::int64_t now_unix_ms() const override { return 1'790'000'000'000; }
};

/// Plays the api and the provisioner straight on the log: commands decided
/// by the domain against its own fold and appended with the expected
/// sequence; convergence as the provisioner does it (keys stored in the
/// KeyStore before the outcome that names them, removed after a delete).
class Writer {
 public:
  Writer(event_store::EventStore& es, keystore::KeyStore& keys) : es_(es), keys_(keys) {}

  /// True when the command was accepted and appended something.
  bool command(const std::string& ref, domain::TenantCommand cmd) {
    auto events = domain::decide(tenants[ref], cmd);
    if (!events || events->empty()) return false;
    for (const auto& e : *events) append(ref, e);
    return true;
  }
  /// One provisioner pass on `ref` (nothing when it has converged).
  void converge(const std::string& ref) {
    const v1::TenantState s = tenants[ref];
    const auto action = domain::plan_convergence(s);
    if (action == domain::StackAction::none) return;
    if (domain::announce_start(s, action)) {
      v1::TenantEvent started;
      started.mutable_provisioning_started()->set_observed_generation(s.generation());
      append(ref, started);
    }
    domain::Applied applied;
    if (action == domain::StackAction::remove) {
      ASSERT_TRUE(keys_.remove(ref).ok());
    } else {
      auto k = keys_.ensure(ref, s.keys_generation());
      ASSERT_TRUE(k.ok()) << k.error().message;
      applied.keys_generation = k->keys_generation;
      applied.gateway_url = "http://" + ref + ".gateway.internal:8000";
      issued[ref][k->keys_generation] = k->keys;
    }
    append(ref, domain::outcome_event(action, s.generation(), applied));
  }
  /// A message of a kind a newer build appends: it moves only the version.
  void unknown(const std::string& ref) { append(ref, v1::TenantEvent{}); }

  std::map<std::string, v1::TenantState> tenants;
  /// ref → keys generation → the keys the stack was given.
  std::map<std::string, std::map<std::int64_t, secrets::TenantKeys>> issued;
  std::uint64_t last{0};

 private:
  void append(const std::string& ref, const v1::TenantEvent& e) {
    v1::Actor actor;
    actor.set_kind(v1::ACTOR_KIND_SYSTEM);
    actor.set_id("router-replicas-itest");
    auto& s = tenants[ref];
    auto out = events::make_tenant_event(ref, e, actor, "", event_store::Expected::at(s.version()),
                                         "", "", 1000);
    auto r = es_.append(out);
    ASSERT_TRUE(r.ok()) << r.error().message;
    last = r->sequence.value();
    s = domain::fold(std::move(s), e, {ref, last, 1000});
  }
  event_store::EventStore& es_;
  keystore::KeyStore& keys_;
};

/// What one ForwardAuth request answered: status, Authorization, body.
using Answer = std::tuple<int, std::string, std::string>;

class RouterReplicasTest : public ::testing::Test {
 protected:
  void SetUp() override {
    nats_.start();
    redis_.start();
    static int n = 0;
    dsn_ = testenv::shared_postgres().create_database(
        "router_replicas_" + std::to_string(::getpid()) + "_" + std::to_string(++n));
    event_store::ConnectOptions o;
    o.url = nats_.url();
    store_ = event_store::EventStore::connect(o).value();
    keys_ = std::make_unique<keystore::KeyStore>(
        dsn_, secrets::MasterKey::from_base64(kMasterKey).value(), "supaplane", clock_);
    ASSERT_TRUE(keys_->migrate().ok());
    writer_ = std::make_unique<Writer>(*store_, *keys_);
  }
  void TearDown() override { replicas_.clear(); }

  router::AppOptions options(const std::string& id) {
    router::AppOptions o;
    o.nats_url = nats_.url();
    o.redis_url = redis_.url();
    o.database_url = dsn_;
    o.master_key = kMasterKey;
    o.http_addr = "127.0.0.1:0";
    o.metrics_addr = "127.0.0.1:0";
    o.public_url = "http://router-sync.internal:8082";  // the Service in front of all replicas
    o.traefik_dir = tmp_.path() + "/traefik-" + id;
    o.replica_id = id;
    o.render.base_domain = kDomain;
    o.render.console_url = "http://console.internal:3000";
    return o;
  }
  router::App& start(const std::string& id) {
    auto app = std::make_unique<router::App>(options(id), clock_);
    auto st = app->start();
    EXPECT_TRUE(st.ok()) << st.error().message;
    std::string why;
    EXPECT_TRUE(testenv::eventually([&] { return (why = app->readiness()).empty(); }, 30s))
        << "replica " << id << " never ready: " << why;
    auto& ref = *app;
    replicas_[id] = std::move(app);
    return ref;
  }

  /// The same replica as its own process (the binary), so that it can be
  /// frozen with SIGSTOP.
  struct Child {
    testenv::Process proc;
    int http_port{testenv::free_port()};
    int metrics_port{testenv::free_port()};
  };
  void start_child(Child& child, const std::string& id) {
    const auto o = options(id);
    child.proc.start({ROUTER_SYNC_BINARY,
                      "--nats-url",
                      o.nats_url,
                      "--redis-url",
                      o.redis_url,
                      "--database-url",
                      o.database_url,
                      "--master-key",
                      o.master_key,
                      "--http-addr",
                      "127.0.0.1:" + std::to_string(child.http_port),
                      "--metrics-addr",
                      "127.0.0.1:" + std::to_string(child.metrics_port),
                      "--traefik-dir",
                      o.traefik_dir,
                      "--public-url",
                      o.public_url,
                      "--base-domain",
                      o.render.base_domain,
                      "--console-url",
                      o.render.console_url,
                      "--replica-id",
                      id},
                     tmp_.path() + "/" + id + ".log");
    ASSERT_TRUE(testenv::eventually([&] {
      httplib::Client c("127.0.0.1", child.metrics_port);
      auto r = c.Get("/readyz");
      return r && r->status == 200;
    })) << "replica "
        << id << " (its own process) never ready";
  }

  /// True once the durable has been handed and has acked every message of
  /// the stream (a message is acked after the projector handled it).
  bool consumed_all(const std::string& durable) {
    jsConsumerInfo* ci = nullptr;
    if (js_GetConsumerInfo(&ci, store_->jetstream(), "PLATFORM", durable.c_str(), nullptr,
                           nullptr) != NATS_OK)
      return false;
    const bool done =
        ci->NumPending == 0 && ci->NumAckPending == 0 && ci->AckFloor.Stream >= writer_->last;
    jsConsumerInfo_Destroy(ci);
    return done;
  }
  /// ... and the replica's directory holds all it was told.
  bool caught_up(router::App& app) {
    return consumed_all(app.durable()) && app.sync().wait_flushed(10s);
  }

  std::string dynamic(int port) {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(10, 0);
    auto r = c.Get("/traefik/dynamic");
    EXPECT_TRUE(r && r->status == 200);
    return r ? r->body : std::string();
  }
  std::string dynamic(router::App& app) { return dynamic(app.http_port()); }
  Answer forward(router::App& app, const std::string& ref, const std::string& key) {
    return forward(app.http_port(), ref, key);
  }
  Answer forward(int port, const std::string& ref, const std::string& key) {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(10, 0);
    auto r = c.Get("/auth/forward", {{"X-Forwarded-Host", ref + "." + kDomain}, {"apikey", key}});
    if (!r) return {-1, "", ""};
    return {r->status, r->get_header_value("Authorization"), r->body};
  }

  /// Random commands: creates (converged: routes), pauses, resumes,
  /// deletes, key rotations, a few messages of a newer build's kind; each
  /// command converged at once three times in four.
  void play(int commands, std::mt19937& rng) {
    std::vector<std::string> live;
    for (const auto& [ref, s] : writer_->tenants)
      if (s.phase() != v1::PHASE_DELETED) live.push_back(ref);
    for (int done = 0; done < commands;) {
      const int pick = static_cast<int>(rng() % 100);
      if (live.size() < 5 || pick < 12) {
        std::string ref(20, 'a');
        for (char& ch : ref) ch = static_cast<char>('a' + rng() % 26);
        domain::TenantCommand cmd;
        cmd.kind = domain::CommandKind::create;
        cmd.name = "shop " + ref.substr(0, 6);
        const v1::Plan plans[] = {v1::PLAN_FREE, v1::PLAN_STARTER, v1::PLAN_PRO};
        cmd.plan = plans[rng() % 3];
        cmd.owner_account_id = kOwner;
        if (!writer_->command(ref, cmd)) continue;
        live.push_back(ref);
        writer_->converge(ref);
        ++done;
        continue;
      }
      const std::size_t at = rng() % live.size();
      const std::string ref = live[at];
      if (pick < 15) {
        writer_->unknown(ref);
        ++done;
        continue;
      }
      domain::TenantCommand cmd;
      cmd.kind = pick < 45   ? domain::CommandKind::pause
                 : pick < 75 ? domain::CommandKind::resume
                 : pick < 92 ? domain::CommandKind::rotate_keys
                             : domain::CommandKind::remove;
      const bool accepted = writer_->command(ref, cmd);
      if (rng() % 4 != 0) writer_->converge(ref);
      if (!accepted) continue;
      ++done;
      if (cmd.kind == domain::CommandKind::remove) live.erase(live.begin() + at);
    }
  }

  FixedClock clock_;
  testenv::TempDir tmp_{"router-replicas-itest"};
  testenv::NatsServer nats_;
  testenv::RedisServer redis_;
  std::string dsn_;
  std::unique_ptr<event_store::EventStore> store_;
  std::unique_ptr<keystore::KeyStore> keys_;
  std::unique_ptr<Writer> writer_;
  std::map<std::string, std::unique_ptr<router::App>> replicas_;
};

TEST_F(RouterReplicasTest, EveryReplicaServesTheWholeConfigurationAndTheSameForwardAuthAnswers) {
  router::App& a = start("r0");
  start("r1");
  EXPECT_EQ(a.durable(), "router-sync-r0");
  Child frozen;
  ASSERT_NO_FATAL_FAILURE(start_child(frozen, "p0"));
  const std::string frozen_durable = config::replica_durable("router-sync", "p0");
  std::mt19937 rng(7);
  ASSERT_NO_FATAL_FAILURE(play(200, rng));
  // p0 stops reading (SIGSTOP) while the others apply everything from here
  // on: when it resumes, every event it reads is already in Redis.
  ASSERT_TRUE(testenv::eventually([&] { return consumed_all(frozen_durable); }));
  frozen.proc.signal(SIGSTOP);
  // r1 goes away mid-run, misses a stretch, and comes back under its name
  // (its durable resumes where it stopped) while commands keep coming.
  replicas_.erase("r1");
  ASSERT_NO_FATAL_FAILURE(play(150, rng));
  router::App& b = start("r1");
  ASSERT_NO_FATAL_FAILURE(play(200, rng));
  // Every tenant converged (the last command of some was left pending), then
  // given a last message of a newer build's kind: the projection then holds
  // each tenant at a version that no event of this build lands on.
  for (const auto& [ref, s] : writer_->tenants) ASSERT_NO_FATAL_FAILURE(writer_->converge(ref));
  for (const auto& [ref, s] : writer_->tenants) {
    if (s.phase() == v1::PHASE_DELETED) continue;
    ASSERT_NO_FATAL_FAILURE(writer_->unknown(ref));
  }

  for (router::App* app : {&a, &b})
    ASSERT_TRUE(testenv::eventually([&] { return caught_up(*app); }, 60s))
        << app->durable() << " did not consume the whole stream";
  const std::string body = dynamic(a);
  EXPECT_EQ(dynamic(b), body) << "the replicas serve different configurations";
  // p0 resumes behind the shared checkpoint and must follow its own stream.
  frozen.proc.signal(SIGCONT);
  ASSERT_TRUE(testenv::eventually([&] { return consumed_all(frozen_durable); }, 60s));
  EXPECT_TRUE(testenv::eventually([&] { return dynamic(frozen.http_port) == body; }))
      << "the replica that was behind serves another configuration";
  // What they serve is the log's: a router per tenant with routes, none for
  // the deleted ones.
  json config = json::parse(body);
  int routed = 0, deleted = 0;
  for (const auto& [ref, s] : writer_->tenants) {
    // Serving tenants go to their gateway, paused ones to the maintenance answer.
    const bool has = config["http"]["routers"].contains("tenant-" + ref + "-api") ||
                     config["http"]["routers"].contains("tenant-" + ref + "-maintenance");
    if (s.phase() == v1::PHASE_DELETED) {
      ++deleted;
      EXPECT_FALSE(has) << ref << " is deleted but routed";
    } else {
      ++routed;
      EXPECT_TRUE(has) << ref << " (" << v1::Phase_Name(s.phase()) << ") is not routed";
    }
  }
  EXPECT_GT(routed, 10);
  EXPECT_GT(deleted, 3);

  // A replica started now, from the projection, serves the same bytes.
  router::App& c = start("r2");
  ASSERT_TRUE(testenv::eventually([&] { return caught_up(c); }, 60s));
  EXPECT_EQ(dynamic(c), body) << "a fresh replica serves another configuration";

  // ForwardAuth: current keys of serving tenants, keys rotated away, keys of
  // deleted tenants; the same answer on every replica.
  struct Sample {
    std::string ref, key, kind;
    int want;
  };
  std::vector<Sample> samples;
  for (const auto& [ref, gens] : writer_->issued) {
    const auto& s = writer_->tenants.at(ref);
    for (const auto& [gen, k] : gens) {
      if (s.phase() == v1::PHASE_DELETED) {
        samples.push_back({ref, k.secret_key, "deleted", 401});
      } else if (gen < s.applied_keys_generation()) {
        samples.push_back(
            {ref, k.publishable_key, "rotated", router::serves_api(s.phase()) ? 401 : 503});
      } else if (gen == s.applied_keys_generation()) {
        samples.push_back(
            {ref, k.publishable_key, "current", router::serves_api(s.phase()) ? 200 : 503});
        samples.push_back(
            {ref, k.secret_key, "current", router::serves_api(s.phase()) ? 200 : 503});
      }
    }
  }
  std::map<std::string, int> kinds;
  for (const auto& s : samples) ++kinds[s.kind + "/" + std::to_string(s.want)];
  EXPECT_GT(kinds["current/200"], 10);
  EXPECT_GT(kinds["rotated/401"], 3);
  EXPECT_GT(kinds["deleted/401"], 3);
  std::printf("%llu events, %d tenants routed, %d deleted; ForwardAuth samples:",
              static_cast<unsigned long long>(writer_->last), routed, deleted);
  for (const auto& [k, n] : kinds) std::printf(" %s=%d", k.c_str(), n);
  std::printf("\n");
  // Keys are loaded from the KeyStore by each replica's own thread: wait for
  // them, then every answer is the same on all three.
  std::string differs;
  const bool same = testenv::eventually([&] {
    for (const auto& s : samples) {
      const Answer want = forward(a, s.ref, s.key);
      if (std::get<0>(want) != s.want) {
        differs = s.kind + " key of " + s.ref + " on r0: " + std::to_string(std::get<0>(want)) +
                  ", not " + std::to_string(s.want);
        return false;
      }
      for (router::App* other : {&b, &c})
        if (forward(*other, s.ref, s.key) != want) {
          differs = s.kind + " key of " + s.ref + " answered differently on " + other->durable();
          return false;
        }
      // p0 runs on the real clock: its tokens differ, its verdicts may not.
      if (std::get<0>(forward(frozen.http_port, s.ref, s.key)) != s.want) {
        differs = s.kind + " key of " + s.ref + " answered differently on router-sync-p0";
        return false;
      }
    }
    return true;
  });
  EXPECT_TRUE(same) << differs;

  // The shared projection, written by whichever replica came first, equals
  // a rebuild from the log key for key.
  projection::TenantProjection proj("sp:router:");
  projection::RedisConnection conn(projection::parse_redis_url(redis_.url()).value(),
                                   proj.scripts().all());
  const std::string live = proj.active_generation(conn).value();
  const auto live_dump = proj.dump(conn, live).value();
  auto rebuilt = projection::rebuild_tenants(*store_, conn, proj, "gcheck", false, 30'000,
                                             "platform.tenant.>");
  ASSERT_TRUE(rebuilt.ok()) << rebuilt.error().message;
  const auto rebuilt_dump = proj.dump(conn, "gcheck").value();
  ASSERT_GT(live_dump.size(), writer_->tenants.size());
  EXPECT_EQ(rebuilt_dump.size(), live_dump.size());
  for (const auto& [k, v] : live_dump) {
    auto it = rebuilt_dump.find(k);
    ASSERT_NE(it, rebuilt_dump.end()) << "rebuild lacks key " << k;
    EXPECT_EQ(it->second, v) << "key " << k << " differs";
  }
  RecordProperty("events", std::to_string(writer_->last));
}

}  // namespace
