// Measures (a) CreateTenant + PauseTenant over gRPC with N concurrent clients
// against raw js_PublishMsg with the same concurrency, and (b) a projection
// rebuild of M events against raw fetch-and-ack of the same stream. Starts
// its own nats-server, redis-server and PostgreSQL; prints a Markdown table.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "api_options.hpp"
#include "app.hpp"
#include "servers.hpp"
#include "supaplane/core/ids.hpp"
#include "supaplane/event_store/event_store.hpp"
#include "supaplane/logging/logging.hpp"
#include "supaplane/projection/tenant_events.hpp"
#include "supaplane/v1/api.grpc.pb.h"

namespace {

using namespace supaplane;
namespace v1 = supaplane::v1;
using SteadyClock = std::chrono::steady_clock;

struct Stats {
  double seconds{0};
  std::vector<double> lat_us;  // per operation
  std::size_t errors{0};
  double rate() const { return seconds > 0 ? static_cast<double>(lat_us.size()) / seconds : 0; }
  double pct(double p) {
    if (lat_us.empty()) return 0;
    std::sort(lat_us.begin(), lat_us.end());
    return lat_us[std::min(lat_us.size() - 1,
                           static_cast<std::size_t>(p * static_cast<double>(lat_us.size())))];
  }
};

double us_since(SteadyClock::time_point t0) {
  return std::chrono::duration<double, std::micro>(SteadyClock::now() - t0).count();
}

/// Runs `body(thread, i)` in `threads` threads for `seconds`; each call is one op.
template <typename F>
Stats run_concurrent(int threads, double seconds, F body) {
  std::vector<std::vector<double>> lat(static_cast<std::size_t>(threads));
  std::atomic<std::size_t> errors{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> ts;
  const auto t0 = SteadyClock::now();
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      for (std::size_t i = 0; !stop; ++i) {
        const auto s = SteadyClock::now();
        if (body(t, i))
          lat[static_cast<std::size_t>(t)].push_back(us_since(s));
        else
          errors++;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : ts) t.join();
  Stats st;
  st.seconds = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  for (auto& v : lat) st.lat_us.insert(st.lat_us.end(), v.begin(), v.end());
  st.errors = errors;
  return st;
}

/// One unary call through gRPC's callback client API, waited for by the
/// calling thread (cheaper than the blocking stub, which builds a completion
/// queue per call).
template <typename Start>
grpc::Status call(Start&& start) {
  std::promise<grpc::Status> done;
  auto f = done.get_future();
  start([&done](grpc::Status s) { done.set_value(std::move(s)); });
  return f.get();
}

std::unique_ptr<grpc::ClientContext> ctx(const std::string& token) {
  auto c = std::make_unique<grpc::ClientContext>();
  c->AddMetadata("authorization", "Bearer " + token);
  return c;
}

void make_raw_stream(event_store::EventStore& es, const char* name, const char* subjects) {
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  cfg.Name = name;
  const char* subj[] = {subjects};
  cfg.Subjects = subj;
  cfg.SubjectsLen = 1;
  cfg.Storage = js_FileStorage;
  cfg.Duplicates = 120LL * 1'000'000'000;
  cfg.DenyDelete = true;
  cfg.DenyPurge = true;
  if (js_AddStream(nullptr, es.jetstream(), &cfg, nullptr, nullptr) != NATS_OK) {
    std::fprintf(stderr, "cannot create stream %s\n", name);
    std::exit(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const supaplane::event_store::LibraryScope nats_library;  // destroyed last
  int clients = 16;
  double seconds = 10;
  int rebuild_events = 100'000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--clients")) clients = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--seconds")) seconds = std::atof(argv[i + 1]);
    if (!std::strcmp(argv[i], "--events")) rebuild_events = std::atoi(argv[i + 1]);
  }
  spdlog::set_level(spdlog::level::warn);
  testenv::NatsServer nats;
  nats.start();
  testenv::RedisServer redis;
  redis.start();
  auto& pg = testenv::shared_postgres();
  const std::string db = pg.create_database("bench");

  api::ApiApp app(testenv::api_options(nats, redis, db, std::string(40, 'b')));
  if (auto st = app.start(); !st) {
    std::fprintf(stderr, "api: %s\n", st.error().message.c_str());
    return 1;
  }
  while (!app.readiness().empty()) std::this_thread::sleep_for(std::chrono::milliseconds(20));

  event_store::ConnectOptions co;
  co.url = nats.url();
  auto es = event_store::EventStore::connect(co).value();

  // ---------------------------------------------------------------- (a)
  // Raw: the same concurrency of synchronous publishes of an event-sized
  // message to a stream with the same settings, on the same server.
  make_raw_stream(*es, "RAWBENCH", "rawbench.>");
  const std::string payload(160, 'x');
  Stats raw = run_concurrent(clients, seconds, [&](int t, std::size_t) {
    jsPubOptions po;
    jsPubOptions_Init(&po);
    const std::string subj = "rawbench." + std::to_string(t);
    jsPubAck* pa = nullptr;
    natsStatus s = js_Publish(&pa, es->jetstream(), subj.c_str(), payload.data(),
                              static_cast<int>(payload.size()), &po, nullptr);
    if (pa) jsPubAck_Destroy(pa);
    return s == NATS_OK;
  });

  // Raw with the same headers the api sets: a Nats-Msg-Id, and alternately a
  // "must be first" publish to a new subject and an expected-sequence publish
  // to that subject (what Create + Pause do).
  std::vector<std::uint64_t> raw_last(static_cast<std::size_t>(clients));
  std::vector<std::string> raw_subj(static_cast<std::size_t>(clients));
  Stats raw_occ = run_concurrent(clients, seconds, [&](int t, std::size_t i) {
    const auto ti = static_cast<std::size_t>(t);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    const std::string id = "occ-" + std::to_string(t) + "-" + std::to_string(i);
    po.MsgId = id.c_str();
    if (i % 2 == 0) {
      raw_subj[ti] = "rawbench.occ." + std::to_string(t) + "." + std::to_string(i);
      po.ExpectNoMessage = true;
    } else {
      po.ExpectLastSubjectSeq = raw_last[ti];
    }
    jsPubAck* pa = nullptr;
    natsStatus s = js_Publish(&pa, es->jetstream(), raw_subj[ti].c_str(), payload.data(),
                              static_cast<int>(payload.size()), &po, nullptr);
    if (pa) {
      raw_last[ti] = pa->Sequence;
      jsPubAck_Destroy(pa);
    }
    return s == NATS_OK;
  });

  // API: each client owns an account; one op = one call (Create or Pause).
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < 4; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("grpc.channel_id", i);  // distinct connections
    channels.push_back(grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(app.grpc_port()),
                                                 grpc::InsecureChannelCredentials(), args));
  }
  std::vector<std::string> tokens;
  {
    auto stub = v1::AccountService::NewStub(channels[0]);
    for (int i = 0; i < clients; ++i) {
      v1::SignUpRequest req;
      req.set_email("bench" + std::to_string(i) + "@example.com");
      req.set_password("bench-password");
      v1::SessionResponse resp;
      grpc::ClientContext c;
      if (!stub->SignUp(&c, req, &resp).ok()) return 1;
      tokens.push_back(resp.token());
    }
  }
  std::vector<std::unique_ptr<v1::TenantService::Stub>> stubs;
  for (int i = 0; i < clients; ++i)
    stubs.push_back(
        v1::TenantService::NewStub(channels[static_cast<std::size_t>(i) % channels.size()]));
  // The floor: an authenticated call that does no I/O (GetTenant of a
  // malformed ref answers INVALID_ARGUMENT after the token check).
  Stats floor = run_concurrent(clients, seconds / 2, [&](int t, std::size_t) {
    const auto ti = static_cast<std::size_t>(t);
    v1::GetTenantRequest req;
    req.set_ref("x");
    v1::Tenant out;
    auto c = ctx(tokens[ti]);
    return call([&](auto cb) {
             stubs[ti]->async()->GetTenant(c.get(), &req, &out, cb);
           }).error_code() == grpc::StatusCode::INVALID_ARGUMENT;
  });
  std::vector<std::string> last_ref(static_cast<std::size_t>(clients));
  Stats api = run_concurrent(clients, seconds, [&](int t, std::size_t i) {
    const auto ti = static_cast<std::size_t>(t);
    v1::TenantMutation m;
    if (i % 2 == 0) {
      v1::CreateTenantRequest req;
      req.set_name("bench");
      req.set_request_id("b" + std::to_string(t) + "-" + std::to_string(i));
      auto c = ctx(tokens[ti]);
      if (!call([&](auto cb) { stubs[ti]->async()->CreateTenant(c.get(), &req, &m, cb); }).ok())
        return false;
      last_ref[ti] = m.tenant().ref();
      return true;
    }
    v1::TenantRequest req;
    req.set_ref(last_ref[ti]);
    req.set_request_id("p" + std::to_string(t) + "-" + std::to_string(i));
    auto c = ctx(tokens[ti]);
    return call([&](auto cb) { stubs[ti]->async()->PauseTenant(c.get(), &req, &m, cb); }).ok();
  });

  const double raw_p50 = raw.pct(0.50), raw_p99 = raw.pct(0.99);
  const double api_p50 = api.pct(0.50), api_p99 = api.pct(0.99);
  const double floor_p50 = floor.pct(0.50), floor_p99 = floor.pct(0.99);
  std::printf(
      "\n## (a) CreateTenant + PauseTenant over gRPC, %d concurrent clients, %.0f s each\n\n",
      clients, seconds);
  std::printf("| path | ops/s | p50 µs | p99 µs | errors |\n|---|---:|---:|---:|---:|\n");
  std::printf("| raw js_Publish (sync, %d threads) | %.0f | %.0f | %.0f | %zu |\n", clients,
              raw.rate(), raw_p50, raw_p99, raw.errors);
  std::printf("| raw js_Publish + Msg-Id + expected seq | %.0f | %.0f | %.0f | %zu |\n",
              raw_occ.rate(), raw_occ.pct(0.5), raw_occ.pct(0.99), raw_occ.errors);
  std::printf("| supaplane-api gRPC (Create/Pause) | %.0f | %.0f | %.0f | %zu |\n", api.rate(),
              api_p50, api_p99, api.errors);
  std::printf("| gRPC floor (authenticated call, no I/O) | %.0f | %.0f | %.0f | %zu |\n",
              floor.rate(), floor_p50, floor_p99, floor.errors);
  std::printf(
      "\nthroughput ratio api/raw = %.2f (target >= 0.5); p99 ratio api/raw = %.2f (target <= 2)\n",
      api.rate() / raw.rate(), api_p99 / raw_p99);
  std::fflush(stdout);

  // ---------------------------------------------------------------- (b)
  // Fill the log with tenant histories (async publish), then time a raw
  // pull consumer fetch+ack of the whole stream and a full rebuild.
  {
    const int per_tenant = 5;
    const int tenants_n = rebuild_events / per_tenant;
    int published = 0;
    for (int t = 0; t < tenants_n; ++t) {
      const std::string ref = ids::random_tenant_ref().str();
      v1::Actor actor;
      actor.set_kind(v1::ACTOR_KIND_ACCOUNT);
      actor.set_id("acct_bbbbbbbbbbbbbbbbbbbb");
      for (int k = 0; k < per_tenant; ++k) {
        v1::TenantEvent e;
        if (k == 0) {
          auto* c = e.mutable_created();
          c->set_name("t");
          c->set_plan(v1::PLAN_FREE);
          c->set_owner_account_id("acct_bbbbbbbbbbbbbbbbbbbb");
          c->set_generation(1);
        } else if (k % 2) {
          e.mutable_pause_requested()->set_generation(k + 1);
        } else {
          e.mutable_resume_requested()->set_generation(k + 1);
        }
        auto out = projection::make_tenant_event(ref, e, actor, "", event_store::Expected::any(),
                                                 "", "", 1);
        natsMsg* msg = nullptr;
        natsMsg_Create(&msg, out.subject.c_str(), nullptr, out.body.data(),
                       static_cast<int>(out.body.size()));
        natsMsgHeader_Set(msg, event_store::kHeaderEventType, out.event_type.c_str());
        if (js_PublishMsgAsync(es->jetstream(), &msg, nullptr) != NATS_OK) return 1;
        ++published;
      }
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 60'000;
    js_PublishAsyncComplete(es->jetstream(), &po);
    (void)published;
  }
  const std::uint64_t last = es->last_sequence().value();
  app.waiter().wait_for(last, 120'000);  // let the live projector finish first

  double raw_fetch_s = 0;
  std::uint64_t raw_fetched = 0;
  {
    natsSubscription* sub = nullptr;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = "PLATFORM";
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.DeliverPolicy = js_DeliverAll;
    so.Config.MaxAckPending = 100'000;
    const auto t0 = SteadyClock::now();
    js_PullSubscribe(&sub, es->jetstream(), "platform.>", "rawbench-reader", nullptr, &so, nullptr);
    while (raw_fetched < last) {
      natsMsgList list{};
      natsStatus s = natsSubscription_Fetch(&list, sub, 256, 1000, nullptr);
      for (int i = 0; i < list.Count; ++i) natsMsg_Ack(list.Msgs[i], nullptr);
      raw_fetched += static_cast<std::uint64_t>(list.Count);
      natsMsgList_Destroy(&list);
      if (s != NATS_OK && s != NATS_TIMEOUT) break;
    }
    raw_fetch_s = std::chrono::duration<double>(SteadyClock::now() - t0).count();
    natsSubscription_Destroy(sub);
  }
  projection::RedisConnection conn(projection::parse_redis_url(redis.url()).value(),
                                   projection::TenantProjection().scripts().all());
  projection::TenantProjection proj;
  auto rb = projection::rebuild_tenants(*es, conn, proj, "gbench", false);
  if (!rb) {
    std::fprintf(stderr, "rebuild: %s\n", rb.error().message.c_str());
    return 1;
  }

  std::printf("\n## (b) projection rebuild of %llu events\n\n",
              static_cast<unsigned long long>(last));
  std::printf("| path | events | seconds | events/s |\n|---|---:|---:|---:|\n");
  std::printf("| raw pull Fetch(256)+Ack | %llu | %.3f | %.0f |\n",
              static_cast<unsigned long long>(raw_fetched), raw_fetch_s,
              static_cast<double>(raw_fetched) / raw_fetch_s);
  std::printf("| rebuild_tenants (replay+fold+Redis) | %llu | %.3f | %.0f |\n",
              static_cast<unsigned long long>(rb->events), rb->seconds,
              static_cast<double>(rb->events) / rb->seconds);
  std::printf("\nrebuild ratio = %.2f (target >= 0.5, and >= 50000 events/s)\n",
              (static_cast<double>(rb->events) / rb->seconds) /
                  (static_cast<double>(raw_fetched) / raw_fetch_s));
  app.stop();
  return 0;
}
