#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "supaplane/core/result.hpp"

namespace supaplane::auth {

/// The claims supaplane puts in its HS256 JWTs (session tokens, tenant
/// `anon` / `service_role` keys, edge tokens). Empty / 0 = absent.
struct JwtClaims {
  std::string sub;
  std::string role;
  std::string iss;
  std::string ref;
  std::int64_t iat{0};
  std::int64_t exp{0};
};

/// Signs `claims` with HS256 (libjwt).
Result<std::string> sign_hs256(std::string_view secret, const JwtClaims& claims);

/// Verifies an HS256 token: signature, algorithm (anything but HS256 is
/// refused, "none" included) and expiry against `now_unix_s`.
/// unauthenticated on any failure.
Result<JwtClaims> verify_hs256(std::string_view secret, const std::string& token,
                               std::int64_t now_unix_s);

}  // namespace supaplane::auth
