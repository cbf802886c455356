#include "supaplane/auth/token.hpp"

#include "supaplane/auth/jwt.hpp"

namespace supaplane::auth {

namespace {
constexpr const char* kIssuer = "supaplane";
Error unauth(const char* why) { return make_error(errc::unauthenticated, why); }
}  // namespace

const char* to_string(Role r) noexcept { return r == Role::admin ? "admin" : "customer"; }

TokenService::TokenService(std::string secret, const Clock& clock, std::int64_t ttl_seconds)
    : secret_(std::move(secret)), clock_(clock), ttl_seconds_(ttl_seconds) {}

Result<IssuedToken> TokenService::issue(const Principal& p) const {
  JwtClaims c;
  c.sub = p.account_id;
  c.role = to_string(p.role);
  c.iss = kIssuer;
  c.iat = clock_.now_unix_ms() / 1000;
  c.exp = c.iat + ttl_seconds_;
  auto token = sign_hs256(secret_, c);
  if (!token) return token.error();
  return IssuedToken{std::move(*token), c.exp * 1000};
}

Result<Principal> TokenService::verify(const std::string& token) const {
  if (token.size() > kMaxTokenBytes) return unauth("invalid token");
  const std::int64_t now = clock_.now_unix_ms() / 1000;
  {
    // Lookup by the whole token: libstdc++ compares the cached hash codes
    // before any bytes, so a forged token learns nothing from the timing.
    std::lock_guard lk(mu_);
    auto it = verified_.find(token);
    if (it != verified_.end()) {
      if (now < it->second.exp) return it->second.principal;
      verified_.erase(it);
    }
  }
  auto v = verify_uncached(token, now);
  if (!v) return v.error();
  std::lock_guard lk(mu_);
  if (verified_.size() >= kCacheSize) verified_.clear();  // rare; refilled by the next calls
  verified_.emplace(token, *v);
  return v->principal;
}

std::size_t TokenService::remembered() const {
  std::lock_guard lk(mu_);
  return verified_.size();
}

Result<TokenService::Verified> TokenService::verify_uncached(const std::string& token,
                                                             std::int64_t now_unix_s) const {
  auto c = verify_hs256(secret_, token, now_unix_s);
  if (!c) return c.error();
  if (c->iss != kIssuer) return unauth("invalid token issuer");
  if (c->sub.empty() || c->role.empty()) return unauth("invalid token claims");
  Principal p;
  p.account_id = c->sub;
  if (c->role == "admin")
    p.role = Role::admin;
  else if (c->role == "customer")
    p.role = Role::customer;
  else
    return unauth("invalid token role");
  return Verified{std::move(p), c->exp};
}

}  // namespace supaplane::auth
