#include "tenant_commands.hpp"

#include <future>

#include "supaplane/core/ids.hpp"
#include "supaplane/event_store/command.hpp"
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

TenantCommands::TenantCommands(event_store::EventLog& store,
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

namespace {
/// What a decision appended, for the fold once its sequence is known.
struct Decided {
  v1::TenantEvent event;
  std::int64_t at_unix_ms{0};
};
}  // namespace

event_store::RetryPolicy TenantCommands::policy() {
  event_store::RetryPolicy p;
  p.max_attempts = kMaxAttempts;
  p.exhausted = "too much contention on this tenant; retry";
  return p;
}

event_store::Executor TenantCommands::slow_path() {
  return [this](std::function<void()> f) { slow_path_.post(std::move(f)); };
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
  auto decided = std::make_shared<Decided>();
  event_store::Command<v1::TenantState, Mutation> c;
  c.load = [this, ref](int) { return load_from_stream(ref.str()); };
  c.decide = [this, ref, cmd, ctx, decided](v1::TenantState& s,
                                            int) -> Result<event_store::Decision<Mutation>> {
    if (domain::exists(s)) {
      // The subject is taken: by this request before (the ref is derived
      // from account + request id), answer as the first time.
      if (s.owner_account_id() != ctx.principal.account_id)
        return make_error(errc::already_exists, "tenant ref is taken; use another request_id",
                          "request_id");
      const std::uint64_t seq = s.created_sequence();
      return event_store::Decision<Mutation>::finish(Mutation{s, seq});
    }
    auto events = domain::decide(v1::TenantState{}, cmd);
    if (!events) return events.error();
    decided->event = events->front();
    decided->at_unix_ms = clock_.now_unix_ms();
    return event_store::Decision<Mutation>::write(
        events::make_tenant_event(ref.str(), decided->event, actor(ctx),
                                  command_msg_id(ctx, "new", domain::CommandKind::create),
                                  event_store::Expected::no_message(), ctx.correlation_id,
                                  ctx.request_id, decided->at_unix_ms));
  };
  c.appended = [this, ref, account = ctx.principal.account_id, decided](
                   v1::TenantState&, const event_store::AppendResult& a) -> Result<Mutation> {
    if (a.duplicate) {
      // The same request was appended before: answer as the first time.
      auto s = load_from_stream(ref.str());
      if (!s) return s.error();
      if (!domain::exists(*s) || s->owner_account_id() != account)
        return make_error(errc::already_exists, "tenant ref is taken; use another request_id",
                          "request_id");
      const std::uint64_t seq = s->created_sequence();
      return Mutation{std::move(*s), seq};
    }
    v1::TenantState s =
        domain::fold({}, decided->event, {ref.str(), a.sequence.value(), decided->at_unix_ms});
    cache_.put_if_newer(s);
    return Mutation{std::move(s), a.sequence.value()};
  };
  // A fresh ref has no history: the first attempt decides on the empty state
  // without a read (a lost race reads the log).
  event_store::run_command_async<v1::TenantState, Mutation>(
      store_, slow_path(), policy(), std::move(c), std::move(done), v1::TenantState{});
}

void TenantCommands::execute_async(const std::string& ref, const domain::TenantCommand& cmd,
                                   const CommandContext& ctx, MutationCallback done) {
  if (cmd.kind == domain::CommandKind::create)
    return done(make_error(errc::internal, "create goes through TenantCommands::create"));
  auto decided = std::make_shared<Decided>();
  event_store::Command<v1::TenantState, Mutation> c;
  // Attempt 0 decides on a hint (the cache, else the Redis projection); a
  // lost race or a hint that may lag reads the log.
  c.load = [this, ref](int attempt) {
    return attempt == 0 ? load_uncached(ref) : load_from_stream(ref);
  };
  c.decide = [this, ref, cmd, ctx, decided](
                 v1::TenantState& state, int attempt) -> Result<event_store::Decision<Mutation>> {
    using D = event_store::Decision<Mutation>;
    if (!domain::exists(state) ||
        (!ctx.principal.is_admin() && state.owner_account_id() != ctx.principal.account_id))
      return make_error(errc::not_found, "tenant not found");
    auto events = domain::decide(state, cmd);
    const bool refusal = !events && events.error().code == errc::failed_precondition;
    // A hint may lag the log: confirm a no-op or a refusal against the stream.
    if ((refusal || (events && events->empty())) && attempt == 0) return D::reload();
    if (!events) return events.error();
    if (events->empty()) return D::finish(Mutation{state, state.version()});
    decided->event = events->front();
    decided->at_unix_ms = clock_.now_unix_ms();
    return D::write(events::make_tenant_event(
        ref, decided->event, actor(ctx), command_msg_id(ctx, ref, cmd.kind),
        event_store::Expected::at(state.version()), ctx.correlation_id, ctx.request_id,
        decided->at_unix_ms));
  };
  c.appended = [this, ref, decided](v1::TenantState& state,
                                    const event_store::AppendResult& a) -> Result<Mutation> {
    if (a.duplicate) {
      // The same request was appended before: answer with its sequence.
      auto current = load_from_stream(ref);
      if (!current) return current.error();
      return Mutation{std::move(*current), a.sequence.value()};
    }
    v1::TenantState next =
        domain::fold(state, decided->event, {ref, a.sequence.value(), decided->at_unix_ms});
    cache_.put_if_newer(next);
    return Mutation{std::move(next), a.sequence.value()};
  };
  v1::TenantState cached;
  std::optional<v1::TenantState> first;
  if (cache_.get(ref, &cached)) first = std::move(cached);
  // A cache miss costs a Redis (or stream) round trip: not on the caller's
  // thread, which may be one of gRPC's callback threads.
  event_store::run_command_async<v1::TenantState, Mutation>(
      store_, slow_path(), policy(), std::move(c), std::move(done), std::move(first));
}

}  // namespace supaplane::api
