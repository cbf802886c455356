#include <algorithm>
#include <atomic>
#include <set>

#include "grpc_services.hpp"
#include "service_helpers.hpp"
#include "supaplane/auth/password.hpp"
#include "supaplane/core/ids.hpp"
#include "supaplane/core/work_queue.hpp"
#include "supaplane/logging/logging.hpp"

namespace supaplane::api {

namespace {

std::shared_ptr<spdlog::logger> log() {
  static auto l = logging::get("grpc");
  return l;
}

// ------------------------------------------------------------------ accounts
// SignUp and Login are served with gRPC's callback API: their checks that
// cost nothing run on gRPC's thread, and the password hashing (and the
// wait for a hashing slot) runs on a pool of this service's own, sized to
// the hashing gate. A flood of them is turned away (RESOURCE_EXHAUSTED,
// counted) without taking the synchronous threads that the reads are
// served on.
using AccountServiceBase = v1::AccountService::WithCallbackMethod_SignUp<
    v1::AccountService::WithCallbackMethod_Login<v1::AccountService::Service>>;

class AccountServiceImpl final : public AccountServiceBase {
 public:
  explicit AccountServiceImpl(ApiContext& ctx)
      : ctx_(ctx),
        admit_max_(ctx.limits.hashing.capacity()),
        pool_(static_cast<std::size_t>(admit_max_)) {}

  grpc::ServerUnaryReactor* SignUp(grpc::CallbackServerContext* sc, const v1::SignUpRequest* req,
                                   v1::SessionResponse* resp) override {
    auto email = normalize_email(req->email());
    grpc::Status refused = grpc::Status::OK;
    if (auto st = auth::validate_email(email); !st)
      refused = to_grpc(st.error());
    else if (auto pw = auth::validate_password(req->password()); !pw)
      refused = to_grpc(pw.error());
    else
      refused = rate_limit(*sc, email);
    return serve(sc, "SignUp", refused,
                 [this, req, resp, email] { return sign_up(email, *req, resp); });
  }

  grpc::ServerUnaryReactor* Login(grpc::CallbackServerContext* sc, const v1::LoginRequest* req,
                                  v1::SessionResponse* resp) override {
    auto email = normalize_email(req->email());
    grpc::Status refused = grpc::Status::OK;
    if (email.empty())
      refused = invalid("email", "must not be empty");
    else if (req->password().empty() || req->password().size() > 128)
      refused = invalid("password", "must be 1..128 bytes");
    else
      refused = rate_limit(*sc, email);
    return serve(sc, "Login", refused,
                 [this, req, resp, email] { return log_in(email, *req, resp); });
  }

 private:
  /// Answers a refusal at once, on gRPC's thread; otherwise `work` runs on
  /// the pool, if the pool admits one more caller (else: busy).
  template <typename Work>
  grpc::ServerUnaryReactor* serve(grpc::CallbackServerContext* sc, const char* method,
                                  grpc::Status refused, Work work) {
    auto* reactor = sc->DefaultReactor();
    auto call = std::make_shared<CallScope>(ctx_, method);
    if (refused.ok() && !admit()) refused = busy();
    if (!refused.ok()) {
      reactor->Finish(call->done(refused));
      return reactor;
    }
    pool_.post([this, reactor, call, work = std::move(work)] {
      reactor->Finish(call->done(work()));
      admitted_.fetch_sub(1);
    });
    return reactor;
  }

  /// One more caller for the pool, unless as many as the hashing gate can
  /// hold or queue are in it already.
  bool admit() {
    if (admitted_.fetch_add(1) < admit_max_) return true;
    admitted_.fetch_sub(1);
    return false;
  }

  grpc::Status sign_up(const std::string& email, const v1::SignUpRequest& req,
                       v1::SessionResponse* resp) {
    auto slot = ctx_.limits.hashing.enter();
    if (!slot) return busy();
    auto hash = auth::hash_password(req.password());
    if (!hash) return to_grpc(hash.error());
    auto row = ctx_.accounts.create(email, *hash, auth::Role::customer,
                                    [&](const AccountRow& a) { return append_account(a); });
    if (!row) return to_grpc(row.error());
    log()->info("account signed up account={}", row->id);
    return session(*row, resp);
  }

  grpc::Status log_in(const std::string& email, const v1::LoginRequest& req,
                      v1::SessionResponse* resp) {
    auto row = ctx_.accounts.find_by_email(email);
    if (!row && row.error().code != errc::not_found) return to_grpc(row.error());
    auto slot = ctx_.limits.hashing.enter();
    if (!slot) return busy();
    // Same answer, and the same work, for an unknown e-mail and a wrong
    // password: an unknown one is checked against a decoy hash.
    const bool ok =
        auth::verify_password(req.password(), row ? row->password_hash : ctx_.limits.decoy_hash);
    ctx_.metrics.password_checks.Increment();
    if (!row || !ok)
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "invalid email or password");
    if (auth::password_needs_rehash(row->password_hash)) upgrade_hash(*row, req.password());
    return session(*row, resp);
  }

 public:
  grpc::Status Me(grpc::ServerContext* sc, const v1::MeRequest*, v1::Account* resp) override {
    CallScope call(ctx_, "Me");
    auto p = ctx_.gate.authenticate(*sc);
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
  const int admit_max_;
  std::atomic<int> admitted_{0};
  // Last: its threads are joined (their calls finished) before the rest goes.
  WorkQueue pool_;
};

}  // namespace

std::unique_ptr<grpc::Service> make_account_service(ApiContext& ctx) {
  return std::make_unique<AccountServiceImpl>(ctx);
}

}  // namespace supaplane::api
