#include "tenant_commands.hpp"

#include "supaplane/core/ids.hpp"
#include "supaplane/projection/history.hpp"

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

event_store::OutgoingEvent make_tenant_event(const std::string& ref, const v1::TenantEvent& ev,
                                             const v1::Actor& actor, const std::string& msg_id,
                                             event_store::Expected expected,
                                             const std::string& correlation_id,
                                             const std::string& causation_id,
                                             std::int64_t now_unix_ms,
                                             v1::EventEnvelope* envelope_out) {
  v1::EventEnvelope env;
  env.set_event_id(ids::random_hex_id());
  env.set_aggregate_id(ref);
  env.set_occurred_at_unix_ms(now_unix_ms);
  *env.mutable_actor() = actor;
  env.set_correlation_id(correlation_id);
  env.set_causation_id(causation_id);
  *env.mutable_tenant() = ev;
  event_store::OutgoingEvent out;
  out.subject = "platform.tenant." + ref;
  out.msg_id = msg_id;
  out.expected = expected;
  out.event_type = domain::event_type(ev);
  out.schema = "supaplane.v1.TenantEvent";
  out.correlation_id = correlation_id;
  out.body = env.SerializeAsString();
  if (envelope_out) *envelope_out = std::move(env);
  return out;
}

TenantCommands::TenantCommands(event_store::EventStore& store,
                               projection::TenantProjection& projection,
                               projection::RedisPool& redis, StateCache& cache, const Clock& clock)
    : store_(store), projection_(projection), redis_(redis), cache_(cache), clock_(clock) {}

std::string TenantCommands::msg_id(const CommandContext& ctx) const {
  // Scoped by account: two customers may pick the same request id.
  return ctx.request_id.empty() ? std::string() : ctx.principal.account_id + ":" + ctx.request_id;
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
  v1::TenantState s = projection::fold_history(ref, *msgs);
  if (domain::exists(s)) cache_.put_if_newer(s);
  return s;
}

Result<v1::TenantState> TenantCommands::load_hint(const std::string& ref) {
  v1::TenantState s;
  if (cache_.get(ref, &s)) return s;
  {
    auto lease = redis_.acquire();
    auto r = projection_.get(*lease, ref);
    if (r && r->has_value()) return std::move(**r);
  }
  // Not in the projection (yet, or Redis is down): ask the log.
  return load_from_stream(ref);
}

Result<Mutation> TenantCommands::create(const std::string& name, v1::Plan plan,
                                        const CommandContext& ctx) {
  const TenantRef ref = ctx.request_id.empty()
                            ? ids::random_tenant_ref()
                            : ids::tenant_ref_for(ctx.principal.account_id, ctx.request_id);
  domain::TenantCommand cmd;
  cmd.kind = domain::CommandKind::create;
  cmd.name = name;
  cmd.plan = plan;
  cmd.owner_account_id = ctx.principal.account_id;
  auto events = domain::decide(v1::TenantState{}, cmd);
  if (!events) return events.error();
  const std::int64_t now = clock_.now_unix_ms();
  auto out = make_tenant_event(ref.str(), events->front(), actor(ctx), msg_id(ctx),
                               event_store::Expected::no_message(), ctx.correlation_id,
                               ctx.request_id, now);
  auto appended = store_.append(out);
  if (appended && !appended->duplicate) {
    v1::TenantState s = domain::fold({}, events->front(), {ref.str(), appended->sequence.value(), now});
    cache_.put_if_newer(s);
    return Mutation{std::move(s), appended->sequence.value()};
  }
  if (!appended && appended.error().code != errc::conflict) return appended.error();
  // Duplicate or the subject is taken: the same request already created it
  // (the ref is derived from account + request id). Answer as the first time.
  auto s = load_from_stream(ref.str());
  if (!s) return s.error();
  if (!domain::exists(*s) || s->owner_account_id() != ctx.principal.account_id)
    return make_error(errc::already_exists, "tenant ref is taken; use another request_id",
                      "request_id");
  const std::uint64_t seq = s->created_sequence();
  return Mutation{std::move(*s), seq};
}

Result<Mutation> TenantCommands::execute(const std::string& ref, const domain::TenantCommand& cmd,
                                         const CommandContext& ctx) {
  if (cmd.kind == domain::CommandKind::create)
    return make_error(errc::internal, "create goes through TenantCommands::create");
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    auto state = attempt == 0 ? load_hint(ref) : load_from_stream(ref);
    if (!state) return state.error();
    if (!domain::exists(*state) ||
        (!ctx.principal.is_admin() && state->owner_account_id() != ctx.principal.account_id))
      return make_error(errc::not_found, "tenant not found");
    auto events = domain::decide(*state, cmd);
    if (!events) return events.error();
    if (events->empty()) {
      // Already the desired state: accepted, nothing appended.
      const std::uint64_t v = state->version();
      return Mutation{std::move(*state), v};
    }
    const std::int64_t now = clock_.now_unix_ms();
    auto out = make_tenant_event(ref, events->front(), actor(ctx), msg_id(ctx),
                                 event_store::Expected::at(state->version()), ctx.correlation_id,
                                 ctx.request_id, now);
    auto appended = store_.append(out);
    if (appended) {
      if (appended->duplicate) {
        // The same request was appended before: answer with its sequence.
        auto current = load_from_stream(ref);
        if (!current) return current.error();
        return Mutation{std::move(*current), appended->sequence.value()};
      }
      v1::TenantState next =
          domain::fold(std::move(*state), events->front(), {ref, appended->sequence.value(), now});
      cache_.put_if_newer(next);
      return Mutation{std::move(next), appended->sequence.value()};
    }
    if (appended.error().code != errc::conflict) return appended.error();
    // Someone else appended first: re-read the log and decide again.
  }
  return make_error(errc::unavailable, "too much contention on this tenant; retry");
}

}  // namespace supaplane::api
