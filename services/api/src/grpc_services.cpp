#include "grpc_services.hpp"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <optional>
#include <set>

#include "app.hpp"
#include "supaplane/auth/password.hpp"
#include "supaplane/core/ids.hpp"
#include "supaplane/events/history.hpp"
#include "supaplane/logging/logging.hpp"
#include "supaplane/v1/api.grpc.pb.h"

namespace supaplane::api {

namespace {

using google::protobuf::util::TimeUtil;

std::shared_ptr<spdlog::logger> log() {
  static auto l = logging::get("grpc");
  return l;
}

grpc::Status invalid(const std::string& field, const std::string& msg) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, field + ": " + msg);
}

/// Times a call and counts its result.
class CallScope {
 public:
  CallScope(ApiContext& ctx, const char* method)
      : ctx_(ctx), method_(method), t0_(std::chrono::steady_clock::now()) {}
  grpc::Status done(grpc::Status s) {
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    ctx_.metrics.command_seconds
        .Add({{"method", method_}},
             prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                     0.05, 0.1, 0.25, 0.5, 1, 2.5, 5})
        .Observe(secs);
    ctx_.metrics.commands.Add({{"method", method_}, {"code", code_name(s.error_code())}})
        .Increment();
    return s;
  }

 private:
  static const char* code_name(grpc::StatusCode c) {
    switch (c) {
      case grpc::StatusCode::OK:
        return "OK";
      case grpc::StatusCode::INVALID_ARGUMENT:
        return "INVALID_ARGUMENT";
      case grpc::StatusCode::NOT_FOUND:
        return "NOT_FOUND";
      case grpc::StatusCode::ALREADY_EXISTS:
        return "ALREADY_EXISTS";
      case grpc::StatusCode::FAILED_PRECONDITION:
        return "FAILED_PRECONDITION";
      case grpc::StatusCode::UNAUTHENTICATED:
        return "UNAUTHENTICATED";
      case grpc::StatusCode::PERMISSION_DENIED:
        return "PERMISSION_DENIED";
      case grpc::StatusCode::UNAVAILABLE:
        return "UNAVAILABLE";
      case grpc::StatusCode::ABORTED:
        return "ABORTED";
      case grpc::StatusCode::OUT_OF_RANGE:
        return "OUT_OF_RANGE";
      case grpc::StatusCode::RESOURCE_EXHAUSTED:
        return "RESOURCE_EXHAUSTED";
      default:
        return "OTHER";
    }
  }
  ApiContext& ctx_;
  const char* method_;
  std::chrono::steady_clock::time_point t0_;
};

Result<auth::Principal> authenticate(ApiContext& ctx, grpc::ServerContextBase* sc) {
  const auto& md = sc->client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) return make_error(errc::unauthenticated, "missing authorization metadata");
  std::string v(it->second.data(), it->second.size());
  constexpr std::string_view kBearer = "Bearer ";
  if (v.size() <= kBearer.size() || v.compare(0, kBearer.size(), kBearer) != 0)
    return make_error(errc::unauthenticated, "authorization must be 'Bearer <token>'");
  return ctx.tokens.verify(v.substr(kBearer.size()));
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
                               auth::Principal* caller = nullptr) {
  auto p = authenticate(ctx, sc);
  if (!p) return to_grpc(p.error());
  auto ref = ids::parse_tenant_ref(req.ref());
  if (!ref) return to_grpc(ref.error());
  if (auto st = wait_for(ctx, req.min_sequence()); !st.ok()) return st;
  auto lease = ctx.redis.acquire();
  auto s = ctx.projection.get(*lease, ref->str());
  if (!s) return to_grpc(s.error());
  if (!s->has_value() || (!p->is_admin() && (*s)->owner_account_id() != p->account_id))
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "tenant not found");
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

// ------------------------------------------------------------------ accounts
class AccountServiceImpl final : public v1::AccountService::Service {
 public:
  explicit AccountServiceImpl(ApiContext& ctx) : ctx_(ctx) {}

  grpc::Status SignUp(grpc::ServerContext* sc, const v1::SignUpRequest* req,
                      v1::SessionResponse* resp) override {
    CallScope call(ctx_, "SignUp");
    const std::string email = normalize_email(req->email());
    if (auto st = auth::validate_email(email); !st) return call.done(to_grpc(st.error()));
    if (auto st = auth::validate_password(req->password()); !st)
      return call.done(to_grpc(st.error()));
    if (auto st = rate_limit(*sc, email); !st.ok()) return call.done(st);
    auto slot = ctx_.limits.hashing.enter();
    if (!slot) return call.done(busy());
    auto hash = auth::hash_password(req->password());
    if (!hash) return call.done(to_grpc(hash.error()));
    auto row = ctx_.accounts.create(email, *hash, auth::Role::customer,
                                    [&](const AccountRow& a) { return append_account(a); });
    if (!row) return call.done(to_grpc(row.error()));
    log()->info("account signed up account={}", row->id);
    return call.done(session(*row, resp));
  }

  grpc::Status Login(grpc::ServerContext* sc, const v1::LoginRequest* req,
                     v1::SessionResponse* resp) override {
    CallScope call(ctx_, "Login");
    const std::string email = normalize_email(req->email());
    if (email.empty()) return call.done(invalid("email", "must not be empty"));
    if (req->password().empty() || req->password().size() > 128)
      return call.done(invalid("password", "must be 1..128 bytes"));
    if (auto st = rate_limit(*sc, email); !st.ok()) return call.done(st);
    auto row = ctx_.accounts.find_by_email(email);
    if (!row && row.error().code != errc::not_found) return call.done(to_grpc(row.error()));
    auto slot = ctx_.limits.hashing.enter();
    if (!slot) return call.done(busy());
    // Same answer, and the same work, for an unknown e-mail and a wrong
    // password: an unknown one is checked against a decoy hash.
    const bool ok =
        auth::verify_password(req->password(), row ? row->password_hash : ctx_.limits.decoy_hash);
    ctx_.metrics.password_checks.Increment();
    if (!row || !ok)
      return call.done(
          grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "invalid email or password"));
    if (auth::password_needs_rehash(row->password_hash)) upgrade_hash(*row, req->password());
    return call.done(session(*row, resp));
  }

  grpc::Status Me(grpc::ServerContext* sc, const v1::MeRequest*, v1::Account* resp) override {
    CallScope call(ctx_, "Me");
    auto p = authenticate(ctx_, sc);
    if (!p) return call.done(to_grpc(p.error()));
    auto row = ctx_.accounts.find_by_id(p->account_id);
    if (!row) {
      if (row.error().code == errc::not_found)
        return call.done(
            grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "account no longer exists"));
      return call.done(to_grpc(row.error()));
    }
    fill_account(*row, resp);
    return call.done(grpc::Status::OK);
  }

 private:
  /// Per caller address, then per e-mail: RESOURCE_EXHAUSTED beyond either.
  grpc::Status rate_limit(const grpc::ServerContextBase& sc, const std::string& email) {
    if (!ctx_.limits.per_address.allow(caller_address(sc, ctx_.limits.trusted_proxies))) {
      ctx_.metrics.refused.Add({{"reason", "rate_per_address"}}).Increment();
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          "too many sign-up or login attempts from this address; retry later");
    }
    if (!ctx_.limits.per_email.allow(email)) {
      ctx_.metrics.refused.Add({{"reason", "rate_per_email"}}).Increment();
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          "too many sign-up or login attempts for this e-mail; retry later");
    }
    return grpc::Status::OK;
  }

  /// A hash made with other argon2id parameters (older accounts) is replaced
  /// after a successful check, while the caller still holds its hashing slot:
  /// afterwards this account's Login costs what an unknown e-mail's does.
  /// A failure leaves the old hash, which still verifies.
  void upgrade_hash(const AccountRow& row, const std::string& password) {
    auto count = [&](const char* result) {
      ctx_.metrics.password_rehashes.Add({{"result", result}}).Increment();
    };
    auto hash = auth::hash_password(password);
    if (!hash) {
      log()->warn("password hash upgrade failed account={}: {}", row.id, hash.error().message);
      return count("failed");
    }
    auto replaced = ctx_.accounts.replace_password_hash(row.id, row.password_hash, *hash);
    if (!replaced) {
      log()->warn("password hash upgrade failed account={}: {}", row.id, replaced.error().message);
      return count("failed");
    }
    if (!*replaced) return count("superseded");  // the hash changed meanwhile
    log()->info("password hash upgraded to the current argon2id parameters account={}", row.id);
    count("upgraded");
  }

  /// No password-hashing slot came free in time.
  grpc::Status busy() {
    ctx_.metrics.refused.Add({{"reason", "auth_busy"}}).Increment();
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        "too many sign-ups and logins in progress; retry shortly");
  }

  Status append_account(const AccountRow& a) {
    v1::Actor actor;
    actor.set_kind(v1::ACTOR_KIND_ACCOUNT);
    actor.set_id(a.id);
    return append_account_created(ctx_.store, a, actor, ctx_.clock.now_unix_ms());
  }

  grpc::Status session(const AccountRow& row, v1::SessionResponse* resp) {
    auto tok = ctx_.tokens.issue({row.id, row.role});
    if (!tok) return to_grpc(tok.error());
    resp->set_token(tok->token);
    *resp->mutable_expires_at() = ts(tok->expires_at_unix_ms);
    fill_account(row, resp->mutable_account());
    return grpc::Status::OK;
  }

  ApiContext& ctx_;
};

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
    auto p = authenticate(ctx_, sc);
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
    auto p = authenticate(ctx_, sc);
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
    auto p = authenticate(ctx_, sc);
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
    if (!domain::exists(s) || (!p->is_admin() && s.owner_account_id() != p->account_id))
      return call.done(grpc::Status(grpc::StatusCode::NOT_FOUND, "tenant not found"));
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
    auto p = authenticate(ctx_, sc);
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
    auto p = authenticate(ctx_, sc);
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
    auto p = authenticate(ctx_, sc);
    if (!p) return p;
    if (!p->is_admin()) return make_error(errc::permission_denied, "admin role required");
    return p;
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

grpc::Status to_grpc(const Error& e) {
  using C = grpc::StatusCode;
  switch (e.code) {
    case errc::invalid_argument:
      return grpc::Status(C::INVALID_ARGUMENT,
                          e.field.empty() ? e.message : e.field + ": " + e.message);
    case errc::not_found:
      return grpc::Status(C::NOT_FOUND, e.message);
    case errc::already_exists:
      return grpc::Status(C::ALREADY_EXISTS, e.message);
    case errc::failed_precondition:
      return grpc::Status(C::FAILED_PRECONDITION, e.message);
    case errc::conflict:
      return grpc::Status(C::ABORTED, e.message);
    case errc::unavailable:
      return grpc::Status(C::UNAVAILABLE, e.message);
    case errc::unauthenticated:
      return grpc::Status(C::UNAUTHENTICATED, e.message);
    case errc::permission_denied:
      return grpc::Status(C::PERMISSION_DENIED, e.message);
    case errc::resource_exhausted:
      return grpc::Status(C::RESOURCE_EXHAUSTED, e.message);
    case errc::incompatible:
    case errc::corrupt:
    case errc::internal:
      return grpc::Status(C::INTERNAL, "internal error");
  }
  return grpc::Status(C::INTERNAL, "internal error");
}

std::unique_ptr<grpc::Service> make_account_service(ApiContext& ctx) {
  return std::make_unique<AccountServiceImpl>(ctx);
}
std::unique_ptr<grpc::Service> make_tenant_service(ApiContext& ctx) {
  return std::make_unique<TenantServiceImpl>(ctx);
}
std::unique_ptr<grpc::Service> make_admin_service(ApiContext& ctx) {
  return std::make_unique<AdminServiceImpl>(ctx);
}

}  // namespace supaplane::api
