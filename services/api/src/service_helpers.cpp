#include "service_helpers.hpp"

#include <google/protobuf/util/time_util.h>

#include <charconv>

#include "supaplane/core/ids.hpp"

namespace supaplane::api {

using google::protobuf::util::TimeUtil;

grpc::Status invalid(const std::string& field, const std::string& msg) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, field + ": " + msg);
}

std::string correlation_id(grpc::ServerContextBase* sc) {
  const auto& md = sc->client_metadata();
  auto it = md.find("x-correlation-id");
  if (it != md.end()) {
    std::string v(it->second.data(), it->second.size());
    if (ids::valid_request_id(v) && v.size() <= 64) return v;
  }
  return ids::random_hex_id();
}

google::protobuf::Timestamp ts(std::int64_t unix_ms) {
  return TimeUtil::MillisecondsToTimestamp(unix_ms);
}

v1::Tenant to_api(const ApiContext& ctx, const v1::TenantState& s) {
  v1::Tenant t;
  t.set_ref(s.ref());
  t.set_name(s.name());
  t.set_plan(s.plan());
  t.set_phase(s.phase());
  t.set_status(domain::management_api_status(s));
  t.set_desired_state(s.desired_state());
  t.set_generation(s.generation());
  t.set_observed_generation(s.observed_generation());
  t.set_suspended(s.suspended());
  t.set_suspend_reason(s.suspend_reason());
  *t.mutable_created_at() = ts(s.created_at_unix_ms());
  *t.mutable_updated_at() = ts(s.updated_at_unix_ms());
  t.set_owner_account_id(s.owner_account_id());
  t.set_api_url("https://" + s.ref() + "." + ctx.options.base_domain);
  t.set_version(s.version());
  t.set_active_deployment_count(s.active_deployment_count());
  t.set_last_error(s.last_error());
  return t;
}

grpc::Status validate_request_id(const std::string& rid) {
  if (!rid.empty() && !ids::valid_request_id(rid))
    return invalid("request_id", "must be 1..128 characters of [A-Za-z0-9_.:-]");
  return grpc::Status::OK;
}

void fill_account(const AccountRow& a, v1::Account* out) {
  out->set_id(a.id);
  out->set_email(a.email);
  out->set_role(auth::to_string(a.role));
  *out->mutable_created_at() = ts(a.created_at_unix_ms);
}

void fill_event(const events::HistoryRecord& h, v1::TenantEventRecord* e) {
  e->set_sequence(h.sequence);
  *e->mutable_time() = ts(h.time_unix_ms);
  e->set_actor(h.actor);
  e->set_type(h.type);
  e->set_details(h.details);
  e->set_correlation_id(h.correlation_id);
  e->set_event_id(h.event_id);
}

/// A page token: the decimal position after which the next page starts
/// ("" = the start). Anything else is refused, never thrown on.
std::optional<std::uint64_t> parse_page_token(const std::string& t) {
  if (t.empty()) return 0;
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (ec != std::errc() || end != t.data() + t.size()) return std::nullopt;
  return v;
}

grpc::Status page_args(const v1::ListTenantsRequest& req, projection::ListQuery* q) {
  if (req.page_size() < 0 || req.page_size() > 500) return invalid("page_size", "must be 0..500");
  q->limit = req.page_size() == 0 ? 50 : req.page_size();
  auto after = parse_page_token(req.page_token());
  if (!after) return invalid("page_token", "is not a token returned by this API");
  q->after = *after;
  if (!v1::Phase_IsValid(req.phase())) return invalid("phase", "unknown phase");
  q->phase = req.phase();
  return grpc::Status::OK;
}

grpc::Status wait_for(ApiContext& ctx, std::uint64_t min_sequence) {
  if (min_sequence == 0 || ctx.waiter.current() >= min_sequence) return grpc::Status::OK;
  // Only a sequence the log has can ever be reached: one beyond its end is
  // refused at once instead of holding the call for the whole wait.
  auto last = ctx.store.last_sequence();
  if (!last) return to_grpc(last.error());
  if (min_sequence > *last) {
    ctx.metrics.refused.Add({{"reason", "min_sequence"}}).Increment();
    return grpc::Status(grpc::StatusCode::OUT_OF_RANGE,
                        "min_sequence " + std::to_string(min_sequence) +
                            " is beyond the log's last sequence " + std::to_string(*last));
  }
  if (!ctx.waiter.wait_for(min_sequence, ctx.options.read_wait_ms))
    return grpc::Status(
        grpc::StatusCode::UNAVAILABLE,
        "projection has not reached sequence " + std::to_string(min_sequence) + " yet; retry");
  return grpc::Status::OK;
}

/// The head of every read of one tenant: the caller, the ref, `min_sequence`
/// reached, and the tenant from the projection if the caller owns it (or is
/// an admin); another customer's tenant is NOT_FOUND.
grpc::Status read_owned_tenant(ApiContext& ctx, grpc::ServerContextBase* sc,
                               const v1::GetTenantRequest& req, v1::TenantState* out,
                               auth::Principal* caller) {
  auto p = ctx.gate.authenticate(*sc);
  if (!p) return to_grpc(p.error());
  auto ref = ids::parse_tenant_ref(req.ref());
  if (!ref) return to_grpc(ref.error());
  if (auto st = wait_for(ctx, req.min_sequence()); !st.ok()) return st;
  auto lease = ctx.redis.acquire();
  auto s = ctx.projection.get(*lease, ref->str());
  if (!s) return to_grpc(s.error());
  if (!s->has_value()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "tenant not found");
  if (auto owner = ctx.gate.check_owner(*p, (*s)->owner_account_id()); !owner)
    return to_grpc(owner.error());
  *out = std::move(**s);
  if (caller) *caller = std::move(*p);
  return grpc::Status::OK;
}

grpc::Status list_into(ApiContext& ctx, projection::ListQuery q, v1::ListTenantsResponse* resp) {
  auto lease = ctx.redis.acquire();
  auto page = ctx.projection.list(*lease, q);
  if (!page) return to_grpc(page.error());
  for (const auto& s : page->tenants) *resp->add_tenants() = to_api(ctx, s);
  if (page->next_after) resp->set_next_page_token(std::to_string(page->next_after));
  return grpc::Status::OK;
}

grpc::Status mutation_reply(ApiContext& ctx, Result<Mutation> m, v1::TenantMutation* resp) {
  if (!m) return to_grpc(m.error());
  *resp->mutable_tenant() = to_api(ctx, m->state);
  resp->set_sequence(m->sequence);
  return grpc::Status::OK;
}

}  // namespace supaplane::api
