#include "billing_projection.hpp"

#include <chrono>
#include <thread>

#include "billing_domain.hpp"
#include "processor.hpp"
#include "stripe_event.hpp"
#include "supaplane/core/parse.hpp"
#include "supaplane/logging/logging.hpp"

namespace supaplane::billing {

namespace {
std::shared_ptr<spdlog::logger> log() {
  static auto l = logging::get("billing-projector");
  return l;
}
}  // namespace

// KEYS: checkpoint, customer hash, tenant links...; ARGV: seq, state bytes,
// version, customer id, '1' while rebuilding. Refuses (0) while the
// checkpoint is missing unless rebuilding: a state folded onto a flushed
// Redis would hide the customer's earlier history from the rebuild.
constexpr const char* kWrite = R"lua(
local rebuilding = ARGV[5] == '1'
if not rebuilding and not redis.call('GET', KEYS[1]) then return 0 end
for i = 3, #KEYS do redis.call('SET', KEYS[i], ARGV[4]) end
redis.call('HSET', KEYS[2], 'state', ARGV[2], 'version', ARGV[3])
if not rebuilding then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
)lua";

BillingProjector::BillingProjector(projection::RedisAddress redis, std::string prefix,
                                   event_store::EventStore& store)
    : write_{kWrite, {}},
      redis_(std::move(redis), {&write_}),
      prefix_(std::move(prefix)),
      store_(store) {}

BillingProjector::~BillingProjector() { stop_checking(); }

Status BillingProjector::apply(const event_store::StoredMessage& m, bool rebuilding) {
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
  std::vector<std::string> keys{prefix_ + "checkpoint", key};
  for (const auto& sub : state.subscriptions())
    if (!sub.tenant_ref().empty()) keys.push_back(prefix_ + "tenant:" + sub.tenant_ref());
  std::vector<std::string> argv{"EVALSHA", write_.sha, std::to_string(keys.size())};
  argv.insert(argv.end(), keys.begin(), keys.end());
  for (auto v : {std::to_string(m.sequence), state.SerializeAsString(),
                 std::to_string(state.version()), customer, std::string(rebuilding ? "1" : "0")})
    argv.push_back(std::move(v));
  // State, links and checkpoint in one script: the checkpoint moves with the data.
  auto w = redis_.command(argv);
  if (!w) return w.error();
  if ((*w)->type == REDIS_REPLY_INTEGER && (*w)->integer == 0)
    return make_error(errc::not_found, "billing projection not loaded (being rebuilt)");
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
    Status st = Status::Ok();
    {
      std::lock_guard lk(mu_);
      st = apply(batch[i].message, false);
      if (st) {
        std::uint64_t cur = applied_seq_.load();
        while (batch[i].message.sequence > cur &&
               !applied_seq_.compare_exchange_weak(cur, batch[i].message.sequence)) {
        }
      }
    }
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
    if (st.error().code == errc::not_found) {
      // Redis lost the projection: rebuild it now, then retry this message.
      if (auto c = check(); c) continue;
    }
    // Redis is down: order per customer matters, so wait here.
    if (failures++ == 0) log()->warn("billing projection write failed: {}", st.error().message);
    const int delay_ms = std::min(2000, 50 << std::min(failures, 6));
    for (int w = 0; w < delay_ms && !stop_; w += 10)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

Status BillingProjector::check() {
  using projection::RebuildReason;
  std::lock_guard lk(mu_);
  if (auto st = redis_.ensure(); !st) return st;
  auto cp = redis_.command({"GET", prefix_ + "checkpoint"});
  if (!cp) return cp.error();
  if ((*cp)->type != REDIS_REPLY_STRING) return rebuild(RebuildReason::checkpoint_missing);
  const auto stored = parse_decimal<std::uint64_t>(std::string_view((*cp)->str, (*cp)->len));
  if (!stored) return rebuild(RebuildReason::checkpoint_missing);  // undecodable: as if lost
  const std::uint64_t checkpoint = *stored;
  auto last = store_.last_sequence();
  if (!last) return last.error();
  if (checkpoint > *last) return rebuild(RebuildReason::stream_behind);
  if (applied_seq_ > *last) applied_seq_ = checkpoint;  // applied on a stream that is gone
  if (checkpoint < applied_seq_) return rebuild(RebuildReason::checkpoint_behind);
  return Status::Ok();
}

Status BillingProjector::rebuild(projection::RebuildReason why) {
  const auto t0 = std::chrono::steady_clock::now();
  log()->warn("rebuilding the billing projection from the event log: {}", to_string(why));
  // Readers answer UNAVAILABLE from here until the checkpoint is back.
  if (auto r = redis_.command({"DEL", prefix_ + "checkpoint"}); !r) return r.error();
  if (why == projection::RebuildReason::stream_behind) {
    // Built from a log that no longer exists: start from nothing.
    std::string cursor = "0";
    do {
      auto r = redis_.command({"SCAN", cursor, "MATCH", prefix_ + "*", "COUNT", "1000"});
      if (!r) return r.error();
      cursor.assign((*r)->element[0]->str, (*r)->element[0]->len);
      const redisReply* keys = (*r)->element[1];
      if (keys->elements == 0) continue;
      std::vector<std::string> argv{"UNLINK"};
      for (std::size_t i = 0; i < keys->elements; ++i)
        argv.emplace_back(keys->element[i]->str, keys->element[i]->len);
      if (auto d = redis_.command(argv); !d) return d.error();
    } while (cursor != "0");
  }
  std::uint64_t events = 0, last = 0;
  Status failed = Status::Ok();
  auto st =
      store_.replay(std::string(kBillingPrefix) + ">", 1, [&](const event_store::StoredMessage& m) {
        auto a = apply(m, true);
        if (!a && a.error().code != errc::corrupt) {
          failed = a;
          return false;
        }
        ++events;
        last = m.sequence;
        return true;
      });
  if (!st) return st;
  if (!failed) return failed;
  if (auto r = redis_.command({"SET", prefix_ + "checkpoint", std::to_string(last)}); !r)
    return r.error();
  const bool counted = events > 0 || applied_seq_ > 0;
  applied_seq_ = last;
  if (counted) {
    rebuilds_[static_cast<std::size_t>(why)]++;
    if (on_rebuilt_) on_rebuilt_(why, events);
  }
  log()->info("billing projection rebuilt ({}): {} events up to {} in {:.3f}s", to_string(why),
              events, last,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return Status::Ok();
}

void BillingProjector::start_checking(std::chrono::milliseconds interval) {
  if (check_thread_.joinable()) return;
  check_thread_ = std::thread([this, interval] {
    std::unique_lock lk(check_mu_);
    while (!check_stop_) {
      lk.unlock();
      if (auto st = check(); !st) log()->debug("billing projection check: {}", st.error().message);
      lk.lock();
      check_cv_.wait_for(lk, interval, [&] { return check_stop_; });
    }
  });
}

void BillingProjector::stop_checking() {
  {
    std::lock_guard lk(check_mu_);
    check_stop_ = true;
  }
  check_cv_.notify_all();
  if (check_thread_.joinable()) check_thread_.join();
}

BillingReader::BillingReader(projection::RedisPool& pool, std::string prefix)
    : pool_(pool), prefix_(std::move(prefix)) {}

namespace {
/// GET checkpoint and `argv` in one MULTI/EXEC: the value, or UNAVAILABLE
/// when the projection is not loaded (so a lost Redis never reads as "none").
Result<projection::Reply> read_loaded(projection::RedisConnection& c, const std::string& prefix,
                                      const std::vector<std::string>& argv) {
  if (auto st = c.ensure(); !st) return st.error();
  c.append({"MULTI"});
  c.append({"GET", prefix + "checkpoint"});
  c.append(argv);
  c.append({"EXEC"});
  Result<projection::Reply> exec = make_error(errc::internal, "no reply");
  for (int i = 0; i < 4; ++i) {
    auto r = c.get_reply();
    if (!r) return r.error();
    if (i == 3) exec = std::move(r);
  }
  const redisReply* rep = exec->get();
  if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2)
    return make_error(errc::unavailable, "billing projection read failed");
  if (rep->element[0]->type != REDIS_REPLY_STRING)
    return make_error(errc::unavailable, "billing projection is being rebuilt; retry");
  return exec;
}
}  // namespace

Result<std::optional<v1::BillingState>> BillingReader::customer(const std::string& customer_id) {
  auto c = pool_.acquire();
  auto r = read_loaded(*c, prefix_, {"HGET", prefix_ + "customer:" + customer_id, "state"});
  if (!r) return r.error();
  const redisReply* v = (*r)->element[1];
  if (v->type != REDIS_REPLY_STRING) return std::optional<v1::BillingState>{};
  v1::BillingState s;
  if (!s.ParseFromString(std::string(v->str, v->len)))
    return make_error(errc::corrupt, "stored billing state is unreadable");
  return std::optional<v1::BillingState>{std::move(s)};
}

Result<std::optional<std::string>> BillingReader::customer_of(const std::string& ref) {
  auto c = pool_.acquire();
  auto r = read_loaded(*c, prefix_, {"GET", prefix_ + "tenant:" + ref});
  if (!r) return r.error();
  const redisReply* v = (*r)->element[1];
  if (v->type != REDIS_REPLY_STRING) return std::optional<std::string>{};
  return std::optional<std::string>{std::string(v->str, v->len)};
}

}  // namespace supaplane::billing
