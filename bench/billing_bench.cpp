// Webhook throughput of supaplane-billing: 16 concurrent senders post signed
// Stripe events (each a new event for a new customer, so each is recorded on
// the log) to the server with signature verification, and the same events to
// the same server built with verification switched off. Prints req/s, p50,
// p99 and the ratio verified / unverified (target >= 0.7).
//   supaplane_billing_bench [--clients 16] [--seconds 10]
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "billing_app.hpp"
#include "servers.hpp"
#include "signature.hpp"
#include "supaplane/logging/logging.hpp"

namespace {

using namespace supaplane;
using Clock = std::chrono::steady_clock;
const std::string kSecret = "whsec_bench_0123456789abcdef";

struct Run {
  double rps{0};
  double p50_us{0};
  double p99_us{0};
  std::uint64_t ok{0};
  std::uint64_t errors{0};
};

std::string body_for(const std::string& tag, int client, std::uint64_t i, std::int64_t now) {
  const std::string n = tag + std::to_string(client) + "_" + std::to_string(i);
  return R"({"id":"evt_)" + n +
         R"(","object":"event","type":"customer.subscription.updated","created":)" +
         std::to_string(now) + R"(,"data":{"object":{"id":"sub_)" + n +
         R"(","object":"subscription","customer":"cus_)" + n +
         R"(","status":"active","items":{"object":"list","data":[{"price":{"id":"price_pro"}}]}}}})";
}

Run drive(int port, const std::string& tag, int clients, int seconds, bool sign) {
  std::atomic<bool> stop{false};
  std::vector<std::vector<double>> lat(static_cast<std::size_t>(clients));
  std::vector<std::uint64_t> errors(static_cast<std::size_t>(clients), 0);
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      httplib::Client cli("127.0.0.1", port);
      cli.set_keep_alive(true);
      cli.set_tcp_nodelay(true);
      std::uint64_t i = 0;
      while (!stop) {
        const auto now_s = std::chrono::duration_cast<std::chrono::seconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
        const std::string body = body_for(tag, c, i++, now_s);
        httplib::Headers h;
        // Both runs sign (the same client work and bytes on the wire); only
        // the verified server checks the header.
        if (sign)
          h.emplace("Stripe-Signature", billing::SignatureVerifier::sign(kSecret, now_s, body));
        const auto t0 = Clock::now();
        auto r = cli.Post("/stripe/webhook", h, body, "application/json");
        const auto us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
        if (r && r->status == 200)
          lat[static_cast<std::size_t>(c)].push_back(us);
        else
          errors[static_cast<std::size_t>(c)]++;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  stop = true;
  for (auto& t : threads) t.join();
  std::vector<double> all;
  Run r;
  for (int c = 0; c < clients; ++c) {
    all.insert(all.end(), lat[static_cast<std::size_t>(c)].begin(),
               lat[static_cast<std::size_t>(c)].end());
    r.errors += errors[static_cast<std::size_t>(c)];
  }
  std::sort(all.begin(), all.end());
  r.ok = all.size();
  r.rps = static_cast<double>(all.size()) / seconds;
  if (!all.empty()) {
    r.p50_us = all[all.size() / 2];
    r.p99_us = all[std::min(all.size() - 1, all.size() * 99 / 100)];
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const event_store::LibraryScope nats_library;
  int clients = 16;
  int seconds = 10;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--clients")) clients = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--seconds")) seconds = std::atoi(argv[i + 1]);
  }
  logging::init("billing-bench", "warn");
  testenv::NatsServer nats;
  testenv::RedisServer redis;
  nats.start();
  redis.start();
  auto options = [&](bool verify) {
    billing::AppOptions o;
    o.nats_url = nats.url();
    o.redis_url = redis.url();
    o.http_addr = "127.0.0.1:0";
    o.metrics_addr = "127.0.0.1:0";
    o.grpc_addr = "127.0.0.1:0";
    o.webhook_secrets = kSecret;
    o.durable = verify ? "bench-verified" : "bench-unverified";
    o.skip_signature_check_for_benchmark = !verify;
    return o;
  };
  auto run = [&](bool verify) {
    billing::App app(options(verify));
    if (auto st = app.start(); !st) {
      std::fprintf(stderr, "cannot start billing: %s\n", st.error().message.c_str());
      std::exit(1);
    }
    while (!app.readiness().empty()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    drive(app.http_port(), verify ? "wv" : "wu", clients, 1, true);  // warm-up
    return drive(app.http_port(), verify ? "v" : "u", clients, seconds, true);
  };
  const Run unverified = run(false);
  const Run verified = run(true);
  std::printf("\n### Stripe webhooks, %d concurrent senders, %d s each\n\n", clients, seconds);
  std::printf("| server | webhooks/s | p50 µs | p99 µs | non-200 |\n|---|---:|---:|---:|---:|\n");
  std::printf("| same server, signature check off | %.0f | %.0f | %.0f | %llu |\n", unverified.rps,
              unverified.p50_us, unverified.p99_us,
              static_cast<unsigned long long>(unverified.errors));
  std::printf("| **supaplane-billing (verified)** | **%.0f** | **%.0f** | **%.0f** | %llu |\n",
              verified.rps, verified.p50_us, verified.p99_us,
              static_cast<unsigned long long>(verified.errors));
  const double ratio = unverified.rps > 0 ? verified.rps / unverified.rps : 0;
  std::printf("\nratio verified / unverified = %.2f (target >= 0.7): %s\n", ratio,
              ratio >= 0.7 ? "met" : "NOT met");
  return 0;
}
