#include <algorithm>
#include <set>

#include "grpc_services.hpp"
#include "service_helpers.hpp"
#include "supaplane/core/ids.hpp"
#include "supaplane/logging/logging.hpp"

namespace supaplane::api {

namespace {

std::shared_ptr<spdlog::logger> log() {
  static auto l = logging::get("grpc");
  return l;
}

// ------------------------------------------------------------------ tenants
// The mutating calls are served with gRPC's callback API: the handler
// queues the append and returns; the JetStream ack finishes the call, so no
// thread waits on a round trip (see docs/benchmarks.md).
using TenantServiceBase = v1::TenantService::WithCallbackMethod_CreateTenant<
    v1::TenantService::WithCallbackMethod_PauseTenant<
        v1::TenantService::WithCallbackMethod_ResumeTenant<
            v1::TenantService::WithCallbackMethod_DeleteTenant<
                v1::TenantService::WithCallbackMethod_RotateTenantKeys<
                    v1::TenantService::Service>>>>>;

class TenantServiceImpl final : public TenantServiceBase {
 public:
  explicit TenantServiceImpl(ApiContext& ctx) : ctx_(ctx) {}

  grpc::ServerUnaryReactor* CreateTenant(grpc::CallbackServerContext* sc,
                                         const v1::CreateTenantRequest* req,
                                         v1::TenantMutation* resp) override {
    auto* reactor = sc->DefaultReactor();
    CallScope call(ctx_, "CreateTenant");
    auto p = ctx_.gate.authenticate(*sc);
    if (!p) return finish(reactor, call, to_grpc(p.error()));
    if (auto st = validate_request_id(req->request_id()); !st.ok())
      return finish(reactor, call, st);
    v1::Plan plan = req->plan() == v1::PLAN_UNSPECIFIED ? v1::PLAN_FREE : req->plan();
    if (!domain::valid_plan(plan))
      return finish(reactor, call, invalid("plan", "must be FREE, STARTER or PRO"));
    // Admins are not held to customer quotas.
    const bool quota =
        !p->is_admin() && (ctx_.options.quota_free_tenants > 0 || ctx_.options.quota_tenants > 0);
    const bool free = plan == v1::PLAN_FREE;
    if (quota) {
      if (auto st = reserve_quota(p->account_id, free); !st.ok()) return finish(reactor, call, st);
    }
    CommandContext cc{*p, req->request_id(), correlation_id(sc)};
    ctx_.commands.create_async(
        req->name(), plan, cc,
        [this, reactor, call, resp, corr = cc.correlation_id, quota, free,
         account = p->account_id](Result<Mutation> m) mutable {
          if (quota) ctx_.limits.quota.finish(account, free, m ? m->state.ref() : std::string());
          if (m) log()->info("tenant created ref={} corr={}", m->state.ref(), corr);
          finish(reactor, call, mutation_reply(ctx_, std::move(m), resp));
        });
    return reactor;
  }

  grpc::Status GetTenant(grpc::ServerContext* sc, const v1::GetTenantRequest* req,
                         v1::Tenant* resp) override {
    CallScope call(ctx_, "GetTenant");
    v1::TenantState s;
    if (auto st = read_owned_tenant(ctx_, sc, *req, &s); !st.ok()) return call.done(st);
    *resp = to_api(ctx_, s);
    return call.done(grpc::Status::OK);
  }

  grpc::Status ListTenants(grpc::ServerContext* sc, const v1::ListTenantsRequest* req,
                           v1::ListTenantsResponse* resp) override {
    CallScope call(ctx_, "ListTenants");
    auto p = ctx_.gate.authenticate(*sc);
    if (!p) return call.done(to_grpc(p.error()));
    projection::ListQuery q;
    if (auto st = page_args(*req, &q); !st.ok()) return call.done(st);
    if (auto st = wait_for(ctx_, req->min_sequence()); !st.ok()) return call.done(st);
    q.source = projection::ListQuery::Source::owner;
    q.owner = p->account_id;
    return call.done(list_into(ctx_, q, resp));
  }

  grpc::ServerUnaryReactor* PauseTenant(grpc::CallbackServerContext* sc,
                                        const v1::TenantRequest* req,
                                        v1::TenantMutation* resp) override {
    return command(sc, req, resp, domain::CommandKind::pause, "PauseTenant");
  }
  grpc::ServerUnaryReactor* ResumeTenant(grpc::CallbackServerContext* sc,
                                         const v1::TenantRequest* req,
                                         v1::TenantMutation* resp) override {
    return command(sc, req, resp, domain::CommandKind::resume, "ResumeTenant");
  }
  grpc::ServerUnaryReactor* DeleteTenant(grpc::CallbackServerContext* sc,
                                         const v1::TenantRequest* req,
                                         v1::TenantMutation* resp) override {
    return command(sc, req, resp, domain::CommandKind::remove, "DeleteTenant");
  }
  grpc::ServerUnaryReactor* RotateTenantKeys(grpc::CallbackServerContext* sc,
                                             const v1::TenantRequest* req,
                                             v1::TenantMutation* resp) override {
    return command(sc, req, resp, domain::CommandKind::rotate_keys, "RotateTenantKeys");
  }

  grpc::Status ListTenantEvents(grpc::ServerContext* sc, const v1::ListTenantEventsRequest* req,
                                v1::ListTenantEventsResponse* resp) override {
    CallScope call(ctx_, "ListTenantEvents");
    auto p = ctx_.gate.authenticate(*sc);
    if (!p) return call.done(to_grpc(p.error()));
    auto ref = ids::parse_tenant_ref(req->ref());
    if (!ref) return call.done(to_grpc(ref.error()));
    if (req->page_size() < 0 || req->page_size() > 1000)
      return call.done(invalid("page_size", "must be 0..1000"));
    const int limit = req->page_size() == 0 ? 100 : req->page_size();
    auto after = parse_page_token(req->page_token());
    if (!after) return call.done(invalid("page_token", "is not a token returned by this API"));
    auto msgs = ctx_.store.read_subject("platform.tenant." + ref->str());
    if (!msgs) return call.done(to_grpc(msgs.error()));
    const v1::TenantState s = events::fold_history(ref->str(), *msgs);
    if (!domain::exists(s))
      return call.done(grpc::Status(grpc::StatusCode::NOT_FOUND, "tenant not found"));
    if (auto owner = ctx_.gate.check_owner(*p, s.owner_account_id()); !owner)
      return call.done(to_grpc(owner.error()));
    auto it = std::find_if(msgs->begin(), msgs->end(),
                           [&](const auto& m) { return m.sequence > *after; });
    for (; it != msgs->end() && resp->events_size() < limit; ++it)
      fill_event(events::describe(*it), resp->add_events());
    if (it != msgs->end())
      resp->set_next_page_token(std::to_string(resp->events().rbegin()->sequence()));
    return call.done(grpc::Status::OK);
  }

  grpc::Status GetTenantCredentials(grpc::ServerContext* sc, const v1::GetTenantRequest* req,
                                    v1::TenantCredentials* resp) override {
    CallScope call(ctx_, "GetTenantCredentials");
    v1::TenantState st;
    auth::Principal caller;
    if (auto rs = read_owned_tenant(ctx_, sc, *req, &st, &caller); !rs.ok()) return call.done(rs);
    const std::string ref = st.ref();
    if (st.desired_state() == v1::DESIRED_STATE_DELETED)
      return call.done(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "tenant is deleted"));
    if (!ctx_.keys)
      return call.done(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                    "credentials are not available from this api "
                                    "(no SUPAPLANE_MASTER_KEY)"));
    auto stored = ctx_.keys->load(ref);
    if (!stored) return call.done(to_grpc(stored.error()));
    if (!stored->has_value())
      return call.done(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                    "credentials are not ready; the tenant is still provisioning"));
    if (st.db_host().empty() || st.db_port() <= 0)
      return call.done(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                    "the tenant's database endpoint is not reported yet; the "
                                    "provisioner records it when the stack converges"));
    const auto& k = (*stored)->keys;
    // The driver reports the names; older histories predate that (database mode).
    const std::string user = st.db_user().empty() ? "t_" + ref : st.db_user();
    const std::string db = st.db_name().empty() ? user : st.db_name();
    resp->set_ref(ref);
    resp->set_api_url("https://" + ref + "." + ctx_.options.base_domain);
    resp->set_anon_key(k.anon_jwt);
    resp->set_service_role_key(k.service_role_jwt);
    resp->set_publishable_key(k.publishable_key);
    resp->set_secret_key(k.secret_key);
    resp->set_db_host(st.db_host());
    resp->set_db_port(st.db_port());
    resp->set_db_name(db);
    resp->set_db_user(user);
    resp->set_db_schema(st.db_schema().empty() ? "public" : st.db_schema());
    resp->set_db_password(k.db_password);
    resp->set_connection_string("postgresql://" + user + ":" + k.db_password + "@" + st.db_host() +
                                ":" + std::to_string(st.db_port()) + "/" + db +
                                // Through the edge (a TCP route by SNI): TLS, so SNI is sent.
                                (st.db_upstream().empty() ? "" : "?sslmode=require"));
    resp->set_keys_generation((*stored)->keys_generation);
    log()->info("credentials read ref={} by={}", ref, caller.account_id);  // no secret
    return call.done(grpc::Status::OK);
  }

  grpc::Status GetTenantHealth(grpc::ServerContext* sc, const v1::GetTenantRequest* req,
                               v1::TenantHealth* resp) override {
    CallScope call(ctx_, "GetTenantHealth");
    v1::TenantState st;
    auth::Principal caller;
    if (auto rs = read_owned_tenant(ctx_, sc, *req, &st, &caller); !rs.ok()) return call.done(rs);
    resp->set_ref(st.ref());
    for (const auto& h : st.services()) {
      auto* out = resp->add_services();
      out->set_name(h.name());
      out->set_healthy(h.status() == v1::SERVICE_HEALTH_STATUS_ACTIVE_HEALTHY);
      out->set_status(domain::service_health_name(h.status()));
      out->set_error(h.error());
    }
    return call.done(grpc::Status::OK);
  }

  grpc::Status WatchTenants(grpc::ServerContext* sc, const v1::WatchTenantsRequest*,
                            grpc::ServerWriter<v1::TenantChange>* writer) override {
    auto p = ctx_.gate.authenticate(*sc);
    if (!p) return to_grpc(p.error());
    if (!ctx_.limits.watchers.acquire(p->account_id)) {
      ctx_.metrics.refused.Add({{"reason", "watch_streams"}}).Increment();
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          "this account has " +
                              std::to_string(ctx_.options.watch_streams_per_account) +
                              " watch streams open, the most it may; close one first");
    }
    // Only the caller's own tenants are queued for it (all of them for an admin).
    auto sub = ctx_.hub.subscribe(p->is_admin() ? std::string() : p->account_id);
    ctx_.metrics.watchers.Increment();
    grpc::Status result = grpc::Status::OK;
    while (!sc->IsCancelled() && !ctx_.shutting_down) {
      Change c;
      if (!sub->next(&c, 250)) {
        if (sub->overflowed()) {
          result = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                "watcher fell behind; reconnect and re-list");
          break;
        }
        continue;
      }
      if (!p->is_admin() && c.state.owner_account_id() != p->account_id) continue;
      v1::TenantChange out;
      *out.mutable_tenant() = to_api(ctx_, c.state);
      out.set_sequence(c.sequence);
      out.set_event_type(c.event_type);
      if (!writer->Write(out)) break;
    }
    ctx_.hub.unsubscribe(sub);
    ctx_.limits.watchers.release(p->account_id);
    ctx_.metrics.watchers.Decrement();
    return result;
  }

 private:
  /// Counts the account's tenants (not deleted) in the projection and
  /// reserves one more within its quotas.
  grpc::Status reserve_quota(const std::string& account, bool free) {
    TenantCount n;
    std::set<std::string> seen;
    projection::ListQuery q;
    q.source = projection::ListQuery::Source::owner;
    q.owner = account;
    q.exclude_deleted = false;
    q.limit = 500;
    auto lease = ctx_.redis.acquire();
    do {
      auto page = ctx_.projection.list(*lease, q);
      if (!page)
        return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                            "cannot check the account's tenant quota: " + page.error().message);
      for (const auto& t : page->tenants) {
        seen.insert(t.ref());
        if (t.desired_state() == v1::DESIRED_STATE_DELETED) continue;
        ++n.total;
        if (t.plan() == v1::PLAN_FREE) ++n.free;
      }
      q.after = page->next_after;
    } while (q.after != 0);
    auto st = ctx_.limits.quota.reserve(account, free, n, seen, ctx_.options.quota_free_tenants,
                                        ctx_.options.quota_tenants);
    if (!st) {
      ctx_.metrics.refused.Add({{"reason", free ? "quota_free_tenants" : "quota_tenants"}})
          .Increment();
      return to_grpc(st.error());
    }
    return grpc::Status::OK;
  }

  static grpc::ServerUnaryReactor* finish(grpc::ServerUnaryReactor* reactor, CallScope& call,
                                          grpc::Status st) {
    reactor->Finish(call.done(std::move(st)));
    return reactor;
  }

  grpc::ServerUnaryReactor* command(grpc::CallbackServerContext* sc, const v1::TenantRequest* req,
                                    v1::TenantMutation* resp, domain::CommandKind kind,
                                    const char* method) {
    auto* reactor = sc->DefaultReactor();
    CallScope call(ctx_, method);
    auto p = ctx_.gate.authenticate(*sc);
    if (!p) return finish(reactor, call, to_grpc(p.error()));
    auto ref = ids::parse_tenant_ref(req->ref());
    if (!ref) return finish(reactor, call, to_grpc(ref.error()));
    if (auto st = validate_request_id(req->request_id()); !st.ok())
      return finish(reactor, call, st);
    domain::TenantCommand cmd;
    cmd.kind = kind;
    CommandContext cc{*p, req->request_id(), correlation_id(sc)};
    ctx_.commands.execute_async(ref->str(), cmd, cc,
                                [this, reactor, call, resp, kind, r = ref->str(),
                                 corr = cc.correlation_id](Result<Mutation> m) mutable {
                                  if (m)
                                    log()->info("tenant command {} ref={} seq={} corr={}",
                                                domain::to_string(kind), r, m->sequence, corr);
                                  finish(reactor, call, mutation_reply(ctx_, std::move(m), resp));
                                });
    return reactor;
  }

  ApiContext& ctx_;
};

}  // namespace

std::unique_ptr<grpc::Service> make_tenant_service(ApiContext& ctx) {
  return std::make_unique<TenantServiceImpl>(ctx);
}

}  // namespace supaplane::api
