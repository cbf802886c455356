#include "tenant_commands.hpp"

#include <future>

#include "supaplane/core/ids.hpp"
#include "supaplane/events/history.hpp"
#include "supaplane/events/tenant_events.hpp"

namespace supaplane::api {

bool StateCache::get(const std::string& ref, v1::TenantState* out) {
  std::lock_guard lk(mu_);
  auto it = map_.find(ref);
  if (it == map_.end()) return false;
  *out = it->second;
  return true;
}

void StateCache::put_if_newer(const v1::TenantState& s) {
  std::lock_guard lk(mu_);
  auto it = map_.find(s.ref());
  if (it != map_.end()) {
    if (s.version() > it->second.version()) it->second = s;
    return;
  }
  if (map_.size() >= max_) map_.clear();  // a hint cache: dropping it only costs reads
  map_.emplace(s.ref(), s);
}

TenantCommands::TenantCommands(event_store::EventStore& store,
                               projection::TenantProjection& projection,
                               projection::RedisPool& redis, StateCache& cache, const Clock& clock)
    : store_(store), projection_(projection), redis_(redis), cache_(cache), clock_(clock) {}

std::string command_msg_id(const CommandContext& ctx, const std::string& ref,
                           domain::CommandKind kind) {
  if (ctx.request_id.empty()) return {};
  return ctx.principal.account_id + ":" + ref + ":" + domain::to_string(kind) + ":" +
         ctx.request_id;
}

v1::Actor TenantCommands::actor(const CommandContext& ctx) const {
  v1::Actor a;
  a.set_kind(ctx.principal.is_admin() ? v1::ACTOR_KIND_ADMIN : v1::ACTOR_KIND_ACCOUNT);
  a.set_id(ctx.principal.account_id);
  return a;
}

Result<v1::TenantState> TenantCommands::load_from_stream(const std::string& ref) {
  auto msgs = store_.read_subject("platform.tenant." + ref);
  if (!msgs) return msgs.error();
  v1::TenantState s = events::fold_history(ref, *msgs);
  if (domain::exists(s)) cache_.put_if_newer(s);
  return s;
}

Result<v1::TenantState> TenantCommands::load_uncached(const std::string& ref) {
  {
    auto lease = redis_.acquire();
    auto r = projection_.get(*lease, ref);
    if (r && r->has_value()) return std::move(**r);
  }
  // Not in the projection (yet, or Redis is down): ask the log.
  return load_from_stream(ref);
}

namespace {
template <typename F>
Result<Mutation> wait_for_result(F&& start) {
  std::promise<Result<Mutation>> p;
  auto f = p.get_future();
  start([&p](Result<Mutation> r) { p.set_value(std::move(r)); });
  return f.get();
}
}  // namespace

Result<Mutation> TenantCommands::create(const std::string& name, v1::Plan plan,
                                        const CommandContext& ctx) {
  return wait_for_result(
      [&](MutationCallback cb) { create_async(name, plan, ctx, std::move(cb)); });
}

Result<Mutation> TenantCommands::execute(const std::string& ref, const domain::TenantCommand& cmd,
                                         const CommandContext& ctx) {
  return wait_for_result([&](MutationCallback cb) { execute_async(ref, cmd, ctx, std::move(cb)); });
}

void TenantCommands::create_async(const std::string& name, v1::Plan plan, const CommandContext& ctx,
                                  MutationCallback done) {
  const TenantRef ref = ctx.request_id.empty()
                            ? ids::random_tenant_ref()
                            : ids::tenant_ref_for(ctx.principal.account_id, ctx.request_id);
  domain::TenantCommand cmd;
  cmd.kind = domain::CommandKind::create;
  cmd.name = name;
  cmd.plan = plan;
  cmd.owner_account_id = ctx.principal.account_id;
  auto events = domain::decide(v1::TenantState{}, cmd);
  if (!events) return done(events.error());
  const std::int64_t now = clock_.now_unix_ms();
  const v1::TenantEvent ev = events->front();
  auto out = events::make_tenant_event(
      ref.str(), ev, actor(ctx), command_msg_id(ctx, "new", domain::CommandKind::create),
      event_store::Expected::no_message(), ctx.correlation_id, ctx.request_id, now);
  const std::string account = ctx.principal.account_id;
  store_.append_async(out, [this, ref, ev, now, account, done = std::move(done)](
                               Result<event_store::AppendResult> appended) mutable {
    if (appended && !appended->duplicate) {
      v1::TenantState s = domain::fold({}, ev, {ref.str(), appended->sequence.value(), now});
      cache_.put_if_newer(s);
      const std::uint64_t seq = appended->sequence.value();
      return done(Mutation{std::move(s), seq});
    }
    if (!appended && appended.error().code != errc::conflict) return done(appended.error());
    // Duplicate, or the subject is taken: the same request already created it
    // (the ref is derived from account + request id). Answer as the first time.
    slow_path_.post([this, ref, account, done = std::move(done)]() mutable {
      auto s = load_from_stream(ref.str());
      if (!s) return done(s.error());
      if (!domain::exists(*s) || s->owner_account_id() != account)
        return done(make_error(errc::already_exists, "tenant ref is taken; use another request_id",
                               "request_id"));
      const std::uint64_t seq = s->created_sequence();
      done(Mutation{std::move(*s), seq});
    });
  });
}

struct TenantCommands::Op {
  std::string ref;
  domain::TenantCommand cmd;
  CommandContext ctx;
  MutationCallback done;
  int attempts{0};
};

void TenantCommands::execute_async(const std::string& ref, const domain::TenantCommand& cmd,
                                   const CommandContext& ctx, MutationCallback done) {
  if (cmd.kind == domain::CommandKind::create)
    return done(make_error(errc::internal, "create goes through TenantCommands::create"));
  auto op = std::make_shared<Op>(Op{ref, cmd, ctx, std::move(done), 0});
  v1::TenantState cached;
  if (cache_.get(ref, &cached)) return attempt(std::move(op), std::move(cached), false);
  // A miss costs a Redis (or stream) round trip: not on the caller's thread,
  // which may be one of gRPC's callback threads.
  slow_path_.post([this, op = std::move(op)]() mutable {
    auto state = load_uncached(op->ref);
    if (!state) return op->done(state.error());
    attempt(std::move(op), std::move(*state), /*authoritative=*/false);
  });
}

void TenantCommands::retry_from_stream(std::shared_ptr<Op> op) {
  slow_path_.post([this, op = std::move(op)]() mutable {
    auto s = load_from_stream(op->ref);
    if (!s) return op->done(s.error());
    attempt(std::move(op), std::move(*s), /*authoritative=*/true);
  });
}

void TenantCommands::attempt(std::shared_ptr<Op> op, v1::TenantState state, bool authoritative) {
  const auto& ctx = op->ctx;
  if (!domain::exists(state) ||
      (!ctx.principal.is_admin() && state.owner_account_id() != ctx.principal.account_id))
    return op->done(make_error(errc::not_found, "tenant not found"));
  auto events = domain::decide(state, op->cmd);
  const bool refusal = !events && events.error().code == errc::failed_precondition;
  if ((refusal || (events && events->empty())) && !authoritative) {
    // A hint may lag the log: confirm a no-op or a refusal against the stream.
    return retry_from_stream(std::move(op));
  }
  if (!events) return op->done(events.error());
  if (events->empty()) {
    const std::uint64_t v = state.version();
    return op->done(Mutation{std::move(state), v});  // already the desired state
  }
  const std::int64_t now = clock_.now_unix_ms();
  const v1::TenantEvent ev = events->front();
  auto out = events::make_tenant_event(
      op->ref, ev, actor(ctx), command_msg_id(ctx, op->ref, op->cmd.kind),
      event_store::Expected::at(state.version()), ctx.correlation_id, ctx.request_id, now);
  store_.append_async(out, [this, op, ev, now, state = std::move(state)](
                               Result<event_store::AppendResult> appended) mutable {
    if (appended && !appended->duplicate) {
      v1::TenantState next =
          domain::fold(std::move(state), ev, {op->ref, appended->sequence.value(), now});
      cache_.put_if_newer(next);
      const std::uint64_t seq = appended->sequence.value();
      return op->done(Mutation{std::move(next), seq});
    }
    if (appended) {
      // The same request was appended before: answer with its sequence.
      const std::uint64_t seq = appended->sequence.value();
      return slow_path_.post([this, op, seq] {
        auto current = load_from_stream(op->ref);
        if (!current) return op->done(current.error());
        op->done(Mutation{std::move(*current), seq});
      });
    }
    if (appended.error().code != errc::conflict) return op->done(appended.error());
    // Someone else appended first: re-read the log and decide again.
    if (++op->attempts >= kMaxAttempts)
      return op->done(make_error(errc::unavailable, "too much contention on this tenant; retry"));
    retry_from_stream(op);
  });
}

}  // namespace supaplane::api
