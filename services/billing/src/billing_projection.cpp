#include "billing_projection.hpp"

#include <chrono>
#include <thread>

#include "billing_domain.hpp"
#include "processor.hpp"
#include "stripe_event.hpp"
#include "supaplane/logging/logging.hpp"

namespace supaplane::billing {

namespace {
std::shared_ptr<spdlog::logger> log() {
  static auto l = logging::get("billing-projector");
  return l;
}
}  // namespace

BillingProjector::BillingProjector(projection::RedisAddress redis, std::string prefix)
    : redis_(std::move(redis), {}), prefix_(std::move(prefix)) {}

Status BillingProjector::apply(const event_store::StoredMessage& m) {
  const std::string_view prefix = kBillingPrefix;
  const std::string customer =
      m.subject.compare(0, prefix.size(), prefix) == 0 ? m.subject.substr(prefix.size()) : "";
  v1::EventEnvelope env;
  if (!valid_stripe_id(customer) || !env.ParseFromString(m.data) || !env.has_billing())
    return make_error(errc::corrupt, "not a billing event");
  if (auto st = redis_.ensure(); !st) return st;
  const std::string key = prefix_ + "customer:" + customer;
  auto cur = redis_.command({"HGET", key, "state"});
  if (!cur) return cur.error();
  v1::BillingState state;
  state.set_customer_id(customer);
  if ((*cur)->type == REDIS_REPLY_STRING &&
      !state.ParseFromString(std::string((*cur)->str, (*cur)->len)))
    return make_error(errc::corrupt, "stored billing state of " + customer + " is unreadable");
  if (m.sequence <= state.version()) return Status::Ok();  // applied before
  state = fold(std::move(state), env.billing(), m.sequence);
  for (const auto& sub : state.subscriptions()) {
    if (sub.tenant_ref().empty()) continue;
    auto r = redis_.command({"SET", prefix_ + "tenant:" + sub.tenant_ref(), customer});
    if (!r) return r.error();
  }
  // State and version in one command: the checkpoint moves with the data.
  auto w = redis_.command({"HSET", key, "state", state.SerializeAsString(), "version",
                           std::to_string(state.version())});
  if (!w) return w.error();
  applied_++;
  return Status::Ok();
}

void BillingProjector::handle(std::vector<event_store::InboundMessage>& batch) {
  int failures = 0;
  for (std::size_t i = 0; i < batch.size();) {
    if (stop_) {
      for (; i < batch.size(); ++i) batch[i].disposition = event_store::Disposition::release;
      return;
    }
    auto st = apply(batch[i].message);
    if (st || st.error().code == errc::corrupt) {
      if (!st) {
        malformed_++;
        log()->error("seq {} on {}: {}; terminated", batch[i].message.sequence,
                     batch[i].message.subject, st.error().message);
      }
      batch[i].disposition = st ? event_store::Disposition::ack : event_store::Disposition::poison;
      ++i;
      failures = 0;
      continue;
    }
    // Redis is down: order per customer matters, so wait here.
    if (failures++ == 0) log()->warn("billing projection write failed: {}", st.error().message);
    const int delay_ms = std::min(2000, 50 << std::min(failures, 6));
    for (int w = 0; w < delay_ms && !stop_; w += 10)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

BillingReader::BillingReader(projection::RedisPool& pool, std::string prefix)
    : pool_(pool), prefix_(std::move(prefix)) {}

Result<std::optional<v1::BillingState>> BillingReader::customer(const std::string& customer_id) {
  auto c = pool_.acquire();
  if (auto st = c->ensure(); !st) return st.error();
  auto r = c->command({"HGET", prefix_ + "customer:" + customer_id, "state"});
  if (!r) return r.error();
  if ((*r)->type != REDIS_REPLY_STRING) return std::optional<v1::BillingState>{};
  v1::BillingState s;
  if (!s.ParseFromString(std::string((*r)->str, (*r)->len)))
    return make_error(errc::corrupt, "stored billing state is unreadable");
  return std::optional<v1::BillingState>{std::move(s)};
}

Result<std::optional<std::string>> BillingReader::customer_of(const std::string& ref) {
  auto c = pool_.acquire();
  if (auto st = c->ensure(); !st) return st.error();
  auto r = c->command({"GET", prefix_ + "tenant:" + ref});
  if (!r) return r.error();
  if ((*r)->type != REDIS_REPLY_STRING) return std::optional<std::string>{};
  return std::optional<std::string>{std::string((*r)->str, (*r)->len)};
}

}  // namespace supaplane::billing
