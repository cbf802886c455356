#include "supaplane/auth/jwt.hpp"

#include <jwt.h>

#include <cstdlib>
#include <memory>

namespace supaplane::auth {

namespace {
struct JwtFree {
  void operator()(jwt_t* j) const { jwt_free(j); }
};
using JwtPtr = std::unique_ptr<jwt_t, JwtFree>;
Error unauth(const char* why) { return make_error(errc::unauthenticated, why); }

const unsigned char* key_bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}
}  // namespace

Result<std::string> sign_hs256(std::string_view secret, const JwtClaims& c) {
  jwt_t* raw = nullptr;
  if (jwt_new(&raw) != 0) return make_error(errc::internal, "jwt_new failed");
  JwtPtr j(raw);
  int rc = 0;
  auto add = [&](const char* name, const std::string& v) {
    if (!v.empty() && rc == 0) rc = jwt_add_grant(j.get(), name, v.c_str());
  };
  auto add_int = [&](const char* name, std::int64_t v) {
    if (v != 0 && rc == 0) rc = jwt_add_grant_int(j.get(), name, v);
  };
  add("sub", c.sub);
  add("role", c.role);
  add("iss", c.iss);
  add("ref", c.ref);
  add_int("iat", c.iat);
  add_int("exp", c.exp);
  if (rc != 0 ||
      jwt_set_alg(j.get(), JWT_ALG_HS256, key_bytes(secret), static_cast<int>(secret.size())) != 0)
    return make_error(errc::internal, "cannot build token");
  char* enc = jwt_encode_str(j.get());
  if (!enc) return make_error(errc::internal, "cannot encode token");
  std::string out(enc);
  std::free(enc);
  return out;
}

Result<JwtClaims> verify_hs256(std::string_view secret, const std::string& token,
                               std::int64_t now_unix_s) {
  if (token.empty() || token.size() > 4096) return unauth("token missing or too long");
  jwt_t* raw = nullptr;
  if (jwt_decode(&raw, token.c_str(), key_bytes(secret), static_cast<int>(secret.size())) != 0 ||
      raw == nullptr)
    return unauth("invalid token");
  JwtPtr j(raw);
  // "alg":"none" and asymmetric algorithms must never be accepted.
  if (jwt_get_alg(j.get()) != JWT_ALG_HS256) return unauth("invalid token algorithm");
  JwtClaims c;
  auto get = [&](const char* name) {
    const char* v = jwt_get_grant(j.get(), name);
    return v ? std::string(v) : std::string();
  };
  c.sub = get("sub");
  c.role = get("role");
  c.iss = get("iss");
  c.ref = get("ref");
  c.iat = jwt_get_grant_int(j.get(), "iat");
  c.exp = jwt_get_grant_int(j.get(), "exp");
  if (c.exp <= 0 || c.exp <= now_unix_s) return unauth("token expired");
  return c;
}

}  // namespace supaplane::auth
