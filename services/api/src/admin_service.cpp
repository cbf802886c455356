#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <set>

#include "grpc_services.hpp"
#include "service_helpers.hpp"
#include "supaplane/core/ids.hpp"
#include "supaplane/logging/logging.hpp"

namespace supaplane::api {

namespace {

using google::protobuf::util::TimeUtil;

std::shared_ptr<spdlog::logger> log() {
  static auto l = logging::get("grpc");
  return l;
}

// ------------------------------------------------------------------ admin
class AdminServiceImpl final : public v1::AdminService::Service {
 public:
  explicit AdminServiceImpl(ApiContext& ctx) : ctx_(ctx) {}

  grpc::Status ListAllTenants(grpc::ServerContext* sc, const v1::ListTenantsRequest* req,
                              v1::ListTenantsResponse* resp) override {
    CallScope call(ctx_, "ListAllTenants");
    auto p = admin(sc);
    if (!p) return call.done(to_grpc(p.error()));
    projection::ListQuery q;
    if (auto st = page_args(*req, &q); !st.ok()) return call.done(st);
    if (auto st = wait_for(ctx_, req->min_sequence()); !st.ok()) return call.done(st);
    q.source = q.phase == v1::PHASE_UNSPECIFIED ? projection::ListQuery::Source::all
                                                : projection::ListQuery::Source::phase;
    return call.done(list_into(ctx_, q, resp));
  }

  grpc::Status SuspendTenant(grpc::ServerContext* sc, const v1::SuspendTenantRequest* req,
                             v1::TenantMutation* resp) override {
    CallScope call(ctx_, "SuspendTenant");
    domain::TenantCommand cmd;
    cmd.kind = domain::CommandKind::suspend;
    cmd.reason = req->reason();
    return call.done(run(sc, req->ref(), req->request_id(), cmd, resp));
  }

  grpc::Status UnsuspendTenant(grpc::ServerContext* sc, const v1::TenantRequest* req,
                               v1::TenantMutation* resp) override {
    CallScope call(ctx_, "UnsuspendTenant");
    domain::TenantCommand cmd;
    cmd.kind = domain::CommandKind::unsuspend;
    return call.done(run(sc, req->ref(), req->request_id(), cmd, resp));
  }

  grpc::Status RebuildProjection(grpc::ServerContext* sc, const v1::RebuildProjectionRequest* req,
                                 v1::RebuildProjectionResponse* resp) override {
    CallScope call(ctx_, "RebuildProjection");
    auto p = admin(sc);
    if (!p) return call.done(to_grpc(p.error()));
    if (req->name() != "api" && req->name() != "tenants")
      return call.done(invalid("name", "unknown projection (this service owns: api)"));
    // Under the guard's lock: one rebuild at a time across every replica.
    auto r = ctx_.guard.rebuild(projection::RebuildReason::operator_request);
    if (!r) return call.done(to_grpc(r.error()));
    resp->set_events(r->events);
    resp->set_seconds(r->seconds);
    resp->set_checkpoint(r->checkpoint);
    resp->set_generation(r->generation);
    return call.done(grpc::Status::OK);
  }

  grpc::Status GetTenantAsOf(grpc::ServerContext* sc, const v1::GetTenantAsOfRequest* req,
                             v1::TenantAsOf* resp) override {
    CallScope call(ctx_, "GetTenantAsOf");
    auto p = admin(sc);
    if (!p) return call.done(to_grpc(p.error()));
    auto ref = ids::parse_tenant_ref(req->ref());
    if (!ref) return call.done(to_grpc(ref.error()));
    if (!req->has_as_of()) return call.done(invalid("as_of", "is required"));
    const auto& t = req->as_of();
    if (t.seconds() < TimeUtil::kTimestampMinSeconds ||
        t.seconds() > TimeUtil::kTimestampMaxSeconds || t.nanos() < 0 || t.nanos() > 999'999'999)
      return call.done(invalid("as_of", "is not a valid timestamp"));
    const std::int64_t as_of = TimeUtil::TimestampToMilliseconds(req->as_of());
    auto msgs = ctx_.store.read_subject("platform.tenant." + ref->str());
    if (!msgs) return call.done(to_grpc(msgs.error()));
    // The same cut as fold_history: the events that occurred at or before as_of.
    const v1::TenantState s = events::fold_history(ref->str(), *msgs, as_of);
    if (!domain::exists(s))
      return call.done(
          grpc::Status(grpc::StatusCode::NOT_FOUND, "tenant did not exist at that time"));
    for (const auto& m : *msgs) {
      auto h = events::describe(m);
      if (h.time_unix_ms > as_of) break;
      fill_event(h, resp->add_events());
    }
    *resp->mutable_tenant() = to_api(ctx_, s);
    *resp->mutable_as_of() = ts(as_of);
    return call.done(grpc::Status::OK);
  }

 private:
  Result<auth::Principal> admin(grpc::ServerContext* sc) {
    return ctx_.gate.authenticate_admin(*sc);
  }

  grpc::Status run(grpc::ServerContext* sc, const std::string& ref_s, const std::string& rid,
                   const domain::TenantCommand& cmd, v1::TenantMutation* resp) {
    auto p = admin(sc);
    if (!p) return to_grpc(p.error());
    auto ref = ids::parse_tenant_ref(ref_s);
    if (!ref) return to_grpc(ref.error());
    if (auto st = validate_request_id(rid); !st.ok()) return st;
    CommandContext cc{*p, rid, correlation_id(sc)};
    auto m = ctx_.commands.execute(ref->str(), cmd, cc);
    if (m)
      log()->info("admin command {} ref={} seq={} corr={}", domain::to_string(cmd.kind), ref->str(),
                  m->sequence, cc.correlation_id);
    return mutation_reply(ctx_, std::move(m), resp);
  }

  ApiContext& ctx_;
};

}  // namespace

std::unique_ptr<grpc::Service> make_admin_service(ApiContext& ctx) {
  return std::make_unique<AdminServiceImpl>(ctx);
}

}  // namespace supaplane::api
