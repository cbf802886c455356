#include "supaplane/auth/token.hpp"

#include <jwt.h>

#include <cstdlib>
#include <memory>

namespace supaplane::auth {

namespace {
constexpr const char* kIssuer = "supaplane";
struct JwtFree {
  void operator()(jwt_t* j) const { jwt_free(j); }
};
using JwtPtr = std::unique_ptr<jwt_t, JwtFree>;
Error unauth(const char* why) { return make_error(errc::unauthenticated, why); }
}  // namespace

const char* to_string(Role r) noexcept { return r == Role::admin ? "admin" : "customer"; }

TokenService::TokenService(std::string secret, const Clock& clock, std::int64_t ttl_seconds)
    : secret_(std::move(secret)), clock_(clock), ttl_seconds_(ttl_seconds) {}

Result<IssuedToken> TokenService::issue(const Principal& p) const {
  jwt_t* raw = nullptr;
  if (jwt_new(&raw) != 0) return make_error(errc::internal, "jwt_new failed");
  JwtPtr j(raw);
  const std::int64_t now_s = clock_.now_unix_ms() / 1000;
  const std::int64_t exp_s = now_s + ttl_seconds_;
  if (jwt_add_grant(j.get(), "sub", p.account_id.c_str()) != 0 ||
      jwt_add_grant(j.get(), "role", to_string(p.role)) != 0 ||
      jwt_add_grant(j.get(), "iss", kIssuer) != 0 ||
      jwt_add_grant_int(j.get(), "iat", now_s) != 0 ||
      jwt_add_grant_int(j.get(), "exp", exp_s) != 0 ||
      jwt_set_alg(j.get(), JWT_ALG_HS256, reinterpret_cast<const unsigned char*>(secret_.data()),
                  static_cast<int>(secret_.size())) != 0)
    return make_error(errc::internal, "cannot build token");
  char* enc = jwt_encode_str(j.get());
  if (!enc) return make_error(errc::internal, "cannot encode token");
  IssuedToken out{enc, exp_s * 1000};
  std::free(enc);
  return out;
}

Result<Principal> TokenService::verify(const std::string& token) const {
  if (token.empty() || token.size() > 4096) return unauth("token missing or too long");
  // Refuse anything that does not claim HS256 before the library looks at it:
  // "alg":"none" and asymmetric algorithms must never be accepted.
  jwt_t* raw = nullptr;
  if (jwt_decode(&raw, token.c_str(), reinterpret_cast<const unsigned char*>(secret_.data()),
                 static_cast<int>(secret_.size())) != 0 ||
      raw == nullptr)
    return unauth("invalid token");
  JwtPtr j(raw);
  if (jwt_get_alg(j.get()) != JWT_ALG_HS256) return unauth("invalid token algorithm");
  const char* iss = jwt_get_grant(j.get(), "iss");
  if (!iss || std::string(iss) != kIssuer) return unauth("invalid token issuer");
  const long exp = jwt_get_grant_int(j.get(), "exp");
  if (exp <= 0 || exp * 1000 <= clock_.now_unix_ms()) return unauth("token expired");
  const char* sub = jwt_get_grant(j.get(), "sub");
  const char* role = jwt_get_grant(j.get(), "role");
  if (!sub || !role) return unauth("invalid token claims");
  Principal p;
  p.account_id = sub;
  const std::string r = role;
  if (r == "admin")
    p.role = Role::admin;
  else if (r == "customer")
    p.role = Role::customer;
  else
    return unauth("invalid token role");
  return p;
}

}  // namespace supaplane::auth
