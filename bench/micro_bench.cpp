// Micro-benchmarks (Google Benchmark) of the per-call CPU work of the api:
// password checks, token verification, decide + fold, envelope encoding, projection decode.
#include <benchmark/benchmark.h>
#include <sodium.h>

#include "supaplane/auth/jwt.hpp"
#include "supaplane/auth/password.hpp"
#include "supaplane/auth/token.hpp"
#include "supaplane/domain/tenant.hpp"
#include "supaplane/events/tenant_events.hpp"
#include "supaplane/projection/tenant_projection.hpp"
#include "tenant_commands.hpp"

namespace {
using namespace supaplane;
namespace v1 = supaplane::v1;

// Login's password check with the parameters new hashes get (m = 19 MiB, t = 2).
void BM_PasswordVerify(benchmark::State& st) {
  const auto h = auth::hash_password("correct horse battery").value();
  for (auto _ : st) benchmark::DoNotOptimize(auth::verify_password("correct horse battery", h));
}
BENCHMARK(BM_PasswordVerify)->Unit(benchmark::kMillisecond);

// The same check against a hash made with libsodium's INTERACTIVE limits
// (m = 64 MiB, t = 2): what every Login cost before the parameters were named.
void BM_PasswordVerifyInteractive(benchmark::State& st) {
  const std::string pw = "correct horse battery";
  char h[crypto_pwhash_STRBYTES];
  if (sodium_init() < 0 ||
      crypto_pwhash_str_alg(h, pw.data(), pw.size(), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                            crypto_pwhash_MEMLIMIT_INTERACTIVE, crypto_pwhash_ALG_ARGON2ID13) != 0)
    return st.SkipWithError("libsodium could not hash");
  const std::string stored(h);
  for (auto _ : st) benchmark::DoNotOptimize(auth::verify_password(pw, stored));
}
BENCHMARK(BM_PasswordVerifyInteractive)->Unit(benchmark::kMillisecond);

// A token seen before (the common case: a session makes many calls).
void BM_TokenVerify(benchmark::State& st) {
  auth::TokenService ts(std::string(40, 'k'), SystemClock::instance());
  const auto tok = ts.issue({"acct_aaaaaaaaaaaaaaaaaaaa", auth::Role::customer})->token;
  for (auto _ : st) benchmark::DoNotOptimize(ts.verify(tok));
}
BENCHMARK(BM_TokenVerify);

// The first call of a session: signature and claims checked by libjwt.
void BM_TokenVerifyFirstUse(benchmark::State& st) {
  const std::string secret(40, 'k');
  auth::TokenService ts(secret, SystemClock::instance());
  const auto tok = ts.issue({"acct_aaaaaaaaaaaaaaaaaaaa", auth::Role::customer})->token;
  const std::int64_t now = SystemClock::instance().now_unix_ms() / 1000;
  for (auto _ : st) benchmark::DoNotOptimize(auth::verify_hs256(secret, tok, now));
}
BENCHMARK(BM_TokenVerifyFirstUse);

v1::TenantState created_state() {
  domain::TenantCommand c;
  c.kind = domain::CommandKind::create;
  c.name = "shop";
  c.plan = v1::PLAN_FREE;
  c.owner_account_id = "acct_aaaaaaaaaaaaaaaaaaaa";
  return domain::fold({}, domain::decide({}, c)->front(), {"abcdefghijklmnopqrst", 1, 1});
}

void BM_DecideFoldPause(benchmark::State& st) {
  const auto s = created_state();
  domain::TenantCommand pause;
  pause.kind = domain::CommandKind::pause;
  for (auto _ : st) {
    auto ev = domain::decide(s, pause);
    benchmark::DoNotOptimize(domain::fold(s, ev->front(), {"abcdefghijklmnopqrst", 2, 2}));
  }
}
BENCHMARK(BM_DecideFoldPause);

void BM_EncodeEnvelope(benchmark::State& st) {
  v1::TenantEvent e;
  e.mutable_pause_requested()->set_generation(2);
  v1::Actor a;
  a.set_kind(v1::ACTOR_KIND_ACCOUNT);
  a.set_id("acct_aaaaaaaaaaaaaaaaaaaa");
  for (auto _ : st)
    benchmark::DoNotOptimize(events::make_tenant_event("abcdefghijklmnopqrst", e, a, "acct:req-1",
                                                       event_store::Expected::at(7), "corr",
                                                       "req-1", 1));
}
BENCHMARK(BM_EncodeEnvelope);

void BM_DecodeStoredEvent(benchmark::State& st) {
  v1::TenantEvent e;
  e.mutable_pause_requested()->set_generation(2);
  v1::Actor a;
  auto out = events::make_tenant_event("abcdefghijklmnopqrst", e, a, "",
                                       event_store::Expected::any(), "", "", 1);
  event_store::StoredMessage m;
  m.subject = out.subject;
  m.data = out.body;
  m.sequence = 9;
  for (auto _ : st) benchmark::DoNotOptimize(events::decode(m));
}
BENCHMARK(BM_DecodeStoredEvent);

}  // namespace

BENCHMARK_MAIN();
