#include <algorithm>
#include <set>

#include "grpc_services.hpp"
#include "service_helpers.hpp"
#include "supaplane/auth/password.hpp"
#include "supaplane/core/ids.hpp"
#include "supaplane/logging/logging.hpp"

namespace supaplane::api {

namespace {

std::shared_ptr<spdlog::logger> log() {
  static auto l = logging::get("grpc");
  return l;
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
};

}  // namespace

std::unique_ptr<grpc::Service> make_account_service(ApiContext& ctx) {
  return std::make_unique<AccountServiceImpl>(ctx);
}

}  // namespace supaplane::api
