#include "supaplane/projection/tenant_projection.hpp"

#include <chrono>

#include "supaplane/core/parse.hpp"
#include "supaplane/domain/tenant.hpp"

namespace supaplane::projection {

namespace {

// One atomic apply of a run of writes, in order. ARGV: base, gen,
// check_pointer ('1': refuse unless gen is live), then 8 values per write:
// seq, ref ('' = move the checkpoint only), state, owner, score, old_phase,
// new_phase, after (the sequence that must already be applied, '' = none).
// → one integer per write: 1 applied, 0 already applied (redelivery),
//   -1 gen is not live, -2 its predecessor is not applied.
// The owner and "all" indexes change only when a tenant first appears
// (old_phase 0) and the phase index only when the phase changes, so most
// events cost two SETs. The checkpoint is written once, at the end.
constexpr const char* kApply = R"lua(
local base, gen = ARGV[1], ARGV[2]
local n = (#ARGV - 3) / 8
local out = {}
if ARGV[3] == '1' and redis.call('GET', base .. 'active') ~= gen then
  for i = 1, n do out[i] = -1 end
  return out
end
local p = base .. gen .. ':'
local cp = tonumber(redis.call('GET', p .. 'checkpoint') or '0')
local moved = nil
for i = 1, n do
  local a = 3 + (i - 1) * 8
  local seq = tonumber(ARGV[a + 1])
  if seq <= cp then
    out[i] = 0
  elseif ARGV[a + 8] ~= '' and cp < tonumber(ARGV[a + 8]) then
    out[i] = -2
  else
    local ref = ARGV[a + 2]
    if ref ~= '' then
      local score, old, new = ARGV[a + 5], ARGV[a + 6], ARGV[a + 7]
      redis.call('SET', p .. 't:' .. ref, ARGV[a + 3])
      if old == '0' then
        redis.call('ZADD', p .. 'all', score, ref)
        redis.call('ZADD', p .. 'owner:' .. ARGV[a + 4], score, ref)
      end
      if old ~= new then
        if old ~= '0' then redis.call('ZREM', p .. 'phase:' .. old, ref) end
        redis.call('ZADD', p .. 'phase:' .. new, score, ref)
      end
    end
    cp = seq
    moved = ARGV[a + 1]
    out[i] = 1
  end
end
if moved then redis.call('SET', p .. 'checkpoint', moved) end
return out
)lua";

// ARGV: base, ref... → {gen, state or false ...}
constexpr const char* kRead = R"lua(
local gen = redis.call('GET', ARGV[1] .. 'active')
if not gen then return {false} end
local out = {gen}
for i = 2, #ARGV do
  out[i] = redis.call('GET', ARGV[1] .. gen .. ':t:' .. ARGV[i])
end
return out
)lua";

// ARGV: base, source, after, limit, want_phase ('' = any), exclude_phase ('' = none)
// → {gen, score1, state1, score2, state2, ...}
constexpr const char* kList = R"lua(
local base, src, limit, want, excl = ARGV[1], ARGV[2], tonumber(ARGV[4]), ARGV[5], ARGV[6]
local gen = redis.call('GET', base .. 'active')
if not gen then return {} end
local p = base .. gen .. ':'
local out = {gen}
local from = '(' .. ARGV[3]
local n = 0
while n < limit do
  local refs = redis.call('ZRANGEBYSCORE', p .. src, from, '+inf', 'WITHSCORES', 'LIMIT', 0, 256)
  if #refs == 0 then break end
  for i = 1, #refs, 2 do
    local ref, score = refs[i], refs[i + 1]
    from = '(' .. score
    local ok = true
    if want ~= '' and not redis.call('ZSCORE', p .. 'phase:' .. want, ref) then ok = false end
    if ok and excl ~= '' and redis.call('ZSCORE', p .. 'phase:' .. excl, ref) then ok = false end
    if ok then
      out[#out + 1] = score
      out[#out + 1] = redis.call('GET', p .. 't:' .. ref)
      n = n + 1
      if n >= limit then break end
    end
  end
end
return out
)lua";

// ARGV: base, new gen → {1, previous} or {0, live checkpoint}
constexpr const char* kSwap = R"lua(
local base, gen = ARGV[1], ARGV[2]
local cur = redis.call('GET', base .. 'active')
local cpn = tonumber(redis.call('GET', base .. gen .. ':checkpoint') or '0')
local cpo = 0
if cur then cpo = tonumber(redis.call('GET', base .. cur .. ':checkpoint') or '0') end
if cpn < cpo then return {0, tostring(cpo)} end
redis.call('SET', base .. 'active', gen)
return {1, cur or ''}
)lua";

std::string str(const redisReply* r) { return r && r->str ? std::string(r->str, r->len) : ""; }

Error corrupt(const std::string& what) { return make_error(errc::corrupt, what); }

}  // namespace

TenantScripts::TenantScripts()
    : apply{kApply, {}}, read{kRead, {}}, list{kList, {}}, swap{kSwap, {}} {}

bool advance_tenant(const DecodedEvent& d, v1::TenantState& cur) {
  if (d.ref.empty() || d.sequence <= cur.version()) return false;
  if (d.kind == DecodedEvent::Kind::tenant) {
    cur = domain::fold(std::move(cur), d.envelope.tenant(),
                       {d.ref, d.sequence, d.envelope.occurred_at_unix_ms()});
    return true;
  }
  // A message this build cannot apply still moves the subject's sequence:
  // keep `version` equal to it, so the next command's expected sequence holds.
  if (!domain::exists(cur)) return false;
  cur.set_version(d.sequence);
  return true;
}

Result<std::string> TenantProjection::init(RedisConnection& c) {
  auto r = c.command({"SET", base_ + "active", "g1", "NX"});
  if (!r) return r.error();
  return active_generation(c);
}

Result<std::string> TenantProjection::active_generation(RedisConnection& c) {
  auto r = c.command({"GET", base_ + "active"});
  if (!r) return r.error();
  if ((*r)->type != REDIS_REPLY_STRING) return make_error(errc::not_found, "no live projection");
  return str(r->get());
}

Result<std::uint64_t> TenantProjection::checkpoint(RedisConnection& c, const std::string& gen) {
  auto r = c.command({"GET", base_ + gen + ":checkpoint"});
  if (!r) return r.error();
  if ((*r)->type != REDIS_REPLY_STRING) return std::uint64_t{0};
  auto v = parse_decimal<std::uint64_t>(str(r->get()));
  if (!v) return corrupt("undecodable checkpoint in Redis");
  return *v;
}

Result<std::optional<std::uint64_t>> TenantProjection::stored_checkpoint(RedisConnection& c,
                                                                         const std::string& gen) {
  auto r = c.command({"GET", base_ + gen + ":checkpoint"});
  if (!r) return r.error();
  if ((*r)->type != REDIS_REPLY_STRING) return std::optional<std::uint64_t>{};
  auto v = parse_decimal<std::uint64_t>(str(r->get()));
  if (!v) return corrupt("undecodable checkpoint in Redis");
  return std::optional<std::uint64_t>(*v);
}

Result<std::optional<std::uint64_t>> TenantProjection::live_checkpoint(RedisConnection& c) {
  if (auto st = c.ensure(); !st) return st.error();
  auto gen = active_generation(c);
  if (!gen && gen.error().code == errc::not_found) return std::optional<std::uint64_t>{};
  if (!gen) return gen.error();
  return stored_checkpoint(c, *gen);
}

Status TenantProjection::remove_pointer(RedisConnection& c) {
  auto r = c.command({"DEL", base_ + "active"});
  if (!r) return r.error();
  return Status::Ok();
}

Result<TenantProjection::States> TenantProjection::read(RedisConnection& c,
                                                        const std::vector<std::string>& refs) {
  if (auto st = c.ensure(); !st) return st.error();
  std::vector<std::string> args{base_};
  args.insert(args.end(), refs.begin(), refs.end());
  auto r = c.command(RedisConnection::evalsha(scripts_.read, std::move(args)));
  if (!r) return r.error();
  const redisReply* rep = r->get();
  if (rep->type != REDIS_REPLY_ARRAY || rep->elements == 0) return corrupt("unexpected read reply");
  if (rep->element[0]->type != REDIS_REPLY_STRING)
    return make_error(errc::not_found, "projection not initialised (no live generation)");
  if (rep->elements != refs.size() + 1) return corrupt("unexpected read reply");
  States out;
  out.gen = str(rep->element[0]);
  out.states.resize(refs.size());
  for (std::size_t i = 0; i < refs.size(); ++i) {
    const redisReply* e = rep->element[i + 1];
    if (e->type == REDIS_REPLY_STRING &&
        !out.states[i].ParseFromArray(e->str, static_cast<int>(e->len)))
      return corrupt("undecodable tenant state for " + refs[i]);
  }
  return out;
}

Result<std::optional<v1::TenantState>> TenantProjection::get(RedisConnection& c,
                                                             const std::string& ref) {
  auto r = read(c, {ref});
  if (!r && r.error().code == errc::not_found)  // no live generation: being rebuilt
    return make_error(errc::unavailable, "tenant projection is being rebuilt; retry");
  if (!r) return r.error();
  if (!domain::exists(r->states[0])) return std::optional<v1::TenantState>{};
  return std::optional<v1::TenantState>(std::move(r->states[0]));
}

Result<ListPage> TenantProjection::list(RedisConnection& c, const ListQuery& q) {
  if (auto st = c.ensure(); !st) return st.error();
  std::string src = "all";
  std::string want;
  if (q.source == ListQuery::Source::owner) {
    src = "owner:" + q.owner;
    if (q.phase != v1::PHASE_UNSPECIFIED) want = std::to_string(static_cast<int>(q.phase));
  } else if (q.source == ListQuery::Source::phase) {
    src = "phase:" + std::to_string(static_cast<int>(q.phase));
  } else if (q.phase != v1::PHASE_UNSPECIFIED) {
    want = std::to_string(static_cast<int>(q.phase));
  }
  const bool exclude = q.exclude_deleted && q.phase == v1::PHASE_UNSPECIFIED;
  // One more than the page holds: whether it is there says if another page
  // follows, so the last page never comes with a token to an empty one.
  auto r = c.command(RedisConnection::evalsha(
      scripts_.list, {base_, src, std::to_string(q.after), std::to_string(q.limit + 1), want,
                      exclude ? std::to_string(static_cast<int>(v1::PHASE_DELETED)) : ""}));
  if (!r) return r.error();
  const redisReply* rep = r->get();
  ListPage page;
  if (rep->type != REDIS_REPLY_ARRAY) return corrupt("unexpected list reply");
  if (rep->elements == 0)
    return make_error(errc::unavailable, "tenant projection is being rebuilt; retry");
  std::uint64_t last = 0;
  for (std::size_t i = 1; i + 1 < rep->elements; i += 2) {
    auto cursor = parse_decimal<std::uint64_t>(str(rep->element[i]));
    if (!cursor) return corrupt("undecodable list cursor");
    if (static_cast<int>(page.tenants.size()) == q.limit) {  // the look-ahead item
      page.next_after = last;
      break;
    }
    last = *cursor;
    v1::TenantState s;
    const redisReply* e = rep->element[i + 1];
    if (e->type != REDIS_REPLY_STRING || !s.ParseFromArray(e->str, static_cast<int>(e->len)))
      return corrupt("undecodable tenant state in list");
    page.tenants.push_back(std::move(s));
  }
  return page;
}

Result<std::vector<std::string>> TenantProjection::refs(RedisConnection& c,
                                                        const std::string& gen) {
  if (auto st = c.ensure(); !st) return st.error();
  auto r = c.command({"ZRANGE", base_ + gen + ":all", "0", "-1"});
  if (!r) return r.error();
  const redisReply* rep = r->get();
  if (rep->type != REDIS_REPLY_ARRAY) return corrupt("unexpected refs reply");
  std::vector<std::string> out;
  out.reserve(rep->elements);
  for (std::size_t i = 0; i < rep->elements; ++i) {
    if (rep->element[i]->type != REDIS_REPLY_STRING) return corrupt("unexpected refs reply");
    out.push_back(str(rep->element[i]));
  }
  return out;
}

void TenantProjection::queue_apply(RedisConnection& c, const std::string& gen,
                                   std::span<const TenantWrite> writes, bool check_pointer) {
  std::vector<std::string> args;
  args.reserve(3 + 8 * writes.size());
  args.push_back(base_);
  args.push_back(gen);
  args.push_back(check_pointer ? "1" : "0");
  for (const auto& w : writes) {
    args.push_back(std::to_string(w.sequence));
    if (w.state) {
      args.push_back(w.state->ref());
      args.push_back(w.state->SerializeAsString());
      args.push_back(w.state->owner_account_id());
      args.push_back(std::to_string(w.state->created_sequence()));
      args.push_back(std::to_string(static_cast<int>(w.old_phase)));
      args.push_back(std::to_string(static_cast<int>(w.state->phase())));
    } else {
      for (int i = 0; i < 6; ++i) args.emplace_back();
    }
    args.push_back(w.after ? std::to_string(w.after) : std::string());
  }
  c.append(RedisConnection::evalsha(scripts_.apply, std::move(args)));
}

Result<std::vector<long long>> TenantProjection::apply_results(const redisReply* r,
                                                               std::size_t writes) {
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != writes)
    return corrupt("unexpected apply reply");
  std::vector<long long> out(writes);
  for (std::size_t i = 0; i < writes; ++i) {
    if (r->element[i]->type != REDIS_REPLY_INTEGER) return corrupt("unexpected apply reply");
    out[i] = r->element[i]->integer;
  }
  return out;
}

Result<bool> TenantProjection::switch_to(RedisConnection& c, const std::string& gen,
                                         std::string* previous) {
  auto r = c.command(RedisConnection::evalsha(scripts_.swap, {base_, gen}));
  if (!r) return r.error();
  const redisReply* rep = r->get();
  if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) return corrupt("unexpected swap reply");
  const bool switched = rep->element[0]->integer == 1;
  if (switched && previous) *previous = str(rep->element[1]);
  return switched;
}

namespace {
template <typename F>
Status scan_keys(RedisConnection& c, const std::string& pattern, F&& each) {
  std::string cursor = "0";
  do {
    auto r = c.command({"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"});
    if (!r) return r.error();
    const redisReply* rep = r->get();
    cursor = str(rep->element[0]);
    const redisReply* keys = rep->element[1];
    std::vector<std::string> batch;
    for (std::size_t i = 0; i < keys->elements; ++i) batch.push_back(str(keys->element[i]));
    if (auto st = each(batch); !st) return st;
  } while (cursor != "0");
  return Status::Ok();
}
}  // namespace

Status TenantProjection::drop_generation(RedisConnection& c, const std::string& gen) {
  return scan_keys(c, base_ + gen + ":*", [&](const std::vector<std::string>& keys) -> Status {
    if (keys.empty()) return Status::Ok();
    std::vector<std::string> argv{"UNLINK"};
    argv.insert(argv.end(), keys.begin(), keys.end());
    auto r = c.command(argv);
    if (!r) return r.error();
    return Status::Ok();
  });
}

Result<std::map<std::string, std::string>> TenantProjection::dump(RedisConnection& c,
                                                                  const std::string& gen) {
  std::map<std::string, std::string> out;
  const std::string prefix = base_ + gen + ":";
  auto st = scan_keys(c, prefix + "*", [&](const std::vector<std::string>& keys) -> Status {
    for (const auto& k : keys) {
      auto t = c.command({"TYPE", k});
      if (!t) return t.error();
      const std::string type = str(t->get());
      std::string value;
      if (type == "string") {
        auto v = c.command({"GET", k});
        if (!v) return v.error();
        value = str(v->get());
      } else if (type == "zset") {
        auto v = c.command({"ZRANGE", k, "0", "-1", "WITHSCORES"});
        if (!v) return v.error();
        for (std::size_t i = 0; i < (*v)->elements; ++i) value += str((*v)->element[i]) + "\n";
      } else {
        value = "<" + type + ">";
      }
      out[k.substr(prefix.size())] = std::move(value);
    }
    return Status::Ok();
  });
  if (!st) return st.error();
  return out;
}

void SequenceWaiter::advance(std::uint64_t seq) {
  std::uint64_t cur = seq_.load();
  while (seq > cur && !seq_.compare_exchange_weak(cur, seq)) {
  }
  if (seq > cur) {
    std::lock_guard lk(mu_);
    cv_.notify_all();
  }
}

void SequenceWaiter::reset(std::uint64_t seq) {
  seq_.store(seq);
  std::lock_guard lk(mu_);
  cv_.notify_all();
}

bool SequenceWaiter::shared_reached(std::uint64_t seq) {
  if (!shared_) return false;
  auto cp = shared_();
  return cp && *cp >= seq;
}

bool SequenceWaiter::wait_for(std::uint64_t seq, int timeout_ms) {
  if (seq_.load() >= seq || shared_reached(seq)) return true;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  std::unique_lock lk(mu_);
  for (;;) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return seq_.load() >= seq;
    // Without a shared checkpoint only this process's projector can wake us;
    // with one, look at it every `shared_every_` as well.
    const auto until = shared_ ? std::min(deadline, now + shared_every_) : deadline;
    if (cv_.wait_until(lk, until, [&] { return seq_.load() >= seq; })) return true;
    if (shared_) {
      lk.unlock();
      const bool reached = shared_reached(seq);
      lk.lock();
      if (reached) return true;
    }
  }
}

}  // namespace supaplane::projection
