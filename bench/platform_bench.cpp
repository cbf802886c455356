// Measures (a) CreateTenant + PauseTenant over gRPC with N concurrent clients
// against raw js_PublishMsg with the same concurrency (plus two reference
// rows: the gRPC floor and the ceiling of gRPC + one append), and (b) a projection
// rebuild of M events against raw fetch-and-ack of the same stream. Starts
// its own nats-server, redis-server and PostgreSQL; prints a Markdown table.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "api_options.hpp"
#include "app.hpp"
#include "servers.hpp"
#include "supaplane/core/ids.hpp"
#include "supaplane/event_store/event_store.hpp"
#include "supaplane/events/tenant_events.hpp"
#include "supaplane/logging/logging.hpp"
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

std::unique_ptr<grpc::ClientContext> ctx(const std::string& token) {
  auto c = std::make_unique<grpc::ClientContext>();
  c->AddMetadata("authorization", "Bearer " + token);
  return c;
}

/// N closed-loop clients driven by one completion-queue thread: each client
/// has one call in flight and starts its next call from the completion of
/// the previous one, so no thread is woken per call just to hand a result
/// over (the raw baseline's 16 threads each block in js_Publish instead).
/// `start(client, slot, cq, tag)` starts call `slot.i` of a client with
/// `tag`; `done(client, slot)` says whether its answer was the expected one.
struct CallSlot {
  std::unique_ptr<grpc::ClientContext> ctx;
  grpc::Status status;
  v1::TenantMutation mutation;
  std::unique_ptr<grpc::ClientAsyncResponseReader<v1::TenantMutation>> mutation_reader;
  SteadyClock::time_point started;
  std::size_t i{0};  ///< calls this client made so far
};

template <typename Start, typename Done>
Stats run_closed_loop(int clients, double seconds, Start start, Done done) {
  grpc::CompletionQueue cq;
  std::vector<CallSlot> slots(static_cast<std::size_t>(clients));
  Stats st;
  std::size_t in_flight = 0;
  const auto t0 = SteadyClock::now();
  const auto until = t0 + std::chrono::duration<double>(seconds);
  auto launch = [&](std::size_t c) {
    auto& s = slots[c];
    s.started = SteadyClock::now();
    start(static_cast<int>(c), s, &cq, reinterpret_cast<void*>(c));
    ++in_flight;
  };
  for (std::size_t c = 0; c < slots.size(); ++c) launch(c);
  void* tag = nullptr;
  bool ok = false;
  while (in_flight > 0 && cq.Next(&tag, &ok)) {
    --in_flight;
    const auto c = reinterpret_cast<std::size_t>(tag);
    auto& s = slots[c];
    if (ok && done(static_cast<int>(c), s))
      st.lat_us.push_back(us_since(s.started));
    else
      st.errors++;
    ++s.i;
    if (SteadyClock::now() < until) launch(c);
  }
  st.seconds = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return st;
}

/// The ceiling: the smallest service that does what a command must do,
/// with none of the api's logic: a gRPC callback handler that appends one
/// event-sized message (asynchronously, like the api) and answers on the
/// JetStream ack. No token, no validation, no state, no projection.
class CeilingService final
    : public v1::TenantService::WithCallbackMethod_PauseTenant<v1::TenantService::Service> {
 public:
  explicit CeilingService(event_store::EventStore& es) : es_(es) {}
  grpc::ServerUnaryReactor* PauseTenant(grpc::CallbackServerContext* sc, const v1::TenantRequest*,
                                        v1::TenantMutation* resp) override {
    auto* reactor = sc->DefaultReactor();
    event_store::OutgoingEvent ev;
    ev.subject = "rawbench.ceiling." + std::to_string(next_++ % 64);
    ev.event_type = "ceiling";
    ev.expected = event_store::Expected::any();
    ev.body.assign(160, 'x');
    es_.append_async(ev, [reactor, resp](Result<event_store::AppendResult> r) {
      if (!r) return reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "append"));
      resp->set_sequence(r->sequence.value());
      reactor->Finish(grpc::Status::OK);
    });
    return reactor;
  }

 private:
  event_store::EventStore& es_;
  std::atomic<std::uint64_t> next_{0};
};

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
  int rebuild_events = 100'000;  // 0: skip (b)
  int channel_count = 4;
  std::string only;  // run one phase of (a) for its full time (for profiling)
  auto secs = [&](const char* phase, double full) {
    return only.empty() || only == phase ? full : 0.0;
  };
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--clients")) clients = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--seconds")) seconds = std::atof(argv[i + 1]);
    if (!std::strcmp(argv[i], "--events")) rebuild_events = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--channels")) channel_count = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--only")) only = argv[i + 1];  // raw|occ|floor|ceiling|api
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
  Stats raw = run_concurrent(clients, secs("raw", seconds), [&](int t, std::size_t) {
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
  Stats raw_occ = run_concurrent(clients, secs("occ", seconds), [&](int t, std::size_t i) {
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
  for (int i = 0; i < channel_count; ++i) {
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
  // The floor: an authenticated command that does no I/O (PauseTenant of a
  // malformed ref answers INVALID_ARGUMENT after the token check), served
  // by the same callback path as the real commands.
  Stats floor = run_closed_loop(
      clients, secs("floor", seconds / 2),
      [&](int t, CallSlot& s, grpc::CompletionQueue* cq, void* tag) {
        const auto ti = static_cast<std::size_t>(t);
        v1::TenantRequest req;
        req.set_ref("x");
        req.set_request_id("f" + std::to_string(t) + "-" + std::to_string(s.i));
        s.ctx = ctx(tokens[ti]);
        s.mutation_reader = stubs[ti]->AsyncPauseTenant(s.ctx.get(), req, cq);
        s.mutation_reader->Finish(&s.mutation, &s.status, tag);
      },
      [&](int, CallSlot& s) {
        return s.status.error_code() == grpc::StatusCode::INVALID_ARGUMENT;
      });
  // The ceiling (see CeilingService), on its own port of the same process.
  Stats ceiling;
  {
    event_store::StreamSettings raw_stream;
    raw_stream.name = "RAWBENCH";
    raw_stream.subjects = "rawbench.>";
    auto ces = event_store::EventStore::connect(co, raw_stream).value();
    CeilingService svc(*ces);
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(&svc);
    auto server = b.BuildAndStart();
    std::vector<std::shared_ptr<grpc::Channel>> cch;
    for (int i = 0; i < channel_count; ++i) {
      grpc::ChannelArguments args;
      args.SetInt("grpc.channel_id", 100 + i);
      cch.push_back(grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                              grpc::InsecureChannelCredentials(), args));
    }
    std::vector<std::unique_ptr<v1::TenantService::Stub>> cstubs;
    for (int i = 0; i < clients; ++i)
      cstubs.push_back(v1::TenantService::NewStub(cch[static_cast<std::size_t>(i) % cch.size()]));
    ceiling = run_closed_loop(
        clients, secs("ceiling", seconds),
        [&](int t, CallSlot& s, grpc::CompletionQueue* cq, void* tag) {
          v1::TenantRequest req;
          s.ctx = std::make_unique<grpc::ClientContext>();
          s.mutation_reader =
              cstubs[static_cast<std::size_t>(t)]->AsyncPauseTenant(s.ctx.get(), req, cq);
          s.mutation_reader->Finish(&s.mutation, &s.status, tag);
        },
        [&](int, CallSlot& s) { return s.status.ok(); });
    server->Shutdown();
  }
  std::vector<std::string> last_ref(static_cast<std::size_t>(clients));
  Stats api = run_closed_loop(
      clients, secs("api", seconds),
      [&](int t, CallSlot& s, grpc::CompletionQueue* cq, void* tag) {
        const auto ti = static_cast<std::size_t>(t);
        s.ctx = ctx(tokens[ti]);
        if (s.i % 2 == 0) {
          v1::CreateTenantRequest req;
          req.set_name("bench");
          req.set_request_id("b" + std::to_string(t) + "-" + std::to_string(s.i));
          s.mutation_reader = stubs[ti]->AsyncCreateTenant(s.ctx.get(), req, cq);
        } else {
          v1::TenantRequest req;
          req.set_ref(last_ref[ti]);
          req.set_request_id("p" + std::to_string(t) + "-" + std::to_string(s.i));
          s.mutation_reader = stubs[ti]->AsyncPauseTenant(s.ctx.get(), req, cq);
        }
        s.mutation_reader->Finish(&s.mutation, &s.status, tag);
      },
      [&](int t, CallSlot& s) {
        if (!s.status.ok()) return false;
        if (s.i % 2 == 0) last_ref[static_cast<std::size_t>(t)] = s.mutation.tenant().ref();
        return true;
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
  std::printf("| gRPC floor (authenticated command, no I/O) | %.0f | %.0f | %.0f | %zu |\n",
              floor.rate(), floor_p50, floor_p99, floor.errors);
  std::printf(
      "| ceiling: gRPC callback + async append, no api logic | %.0f | %.0f | %.0f | %zu |\n",
      ceiling.rate(), ceiling.pct(0.5), ceiling.pct(0.99), ceiling.errors);
  std::printf(
      "\nthroughput ratio api/raw = %.2f (target >= 0.5); p99 ratio api/raw = %.2f (target <= 2)\n"
      "ceiling/raw = %.2f; api/ceiling = %.2f\n",
      api.rate() / raw.rate(), api_p99 / raw_p99, ceiling.rate() / raw.rate(),
      api.rate() / ceiling.rate());
  std::fflush(stdout);

  // ---------------------------------------------------------------- (b)
  if (rebuild_events <= 0) {
    app.stop();
    return 0;
  }
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
        auto out =
            events::make_tenant_event(ref, e, actor, "", event_store::Expected::any(), "", "", 1);
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
