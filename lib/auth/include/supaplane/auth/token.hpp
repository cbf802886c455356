#pragma once
#include <cstdint>
#include <string>

#include "supaplane/core/result.hpp"
#include "supaplane/core/time.hpp"

namespace supaplane::auth {

enum class Role { customer, admin };
const char* to_string(Role r) noexcept;

struct Principal {
  std::string account_id;
  Role role{Role::customer};
  bool is_admin() const noexcept { return role == Role::admin; }
};

struct IssuedToken {
  std::string token;
  std::int64_t expires_at_unix_ms{0};
};

/// Issues and verifies HS256 session tokens. Thread-safe (immutable).
class TokenService {
 public:
  /// `secret` must be at least 32 bytes.
  TokenService(std::string secret, const Clock& clock, std::int64_t ttl_seconds = 3600);
  Result<IssuedToken> issue(const Principal& p) const;
  /// unauthenticated for any malformed, forged, foreign-algorithm or expired token.
  Result<Principal> verify(const std::string& token) const;

 private:
  std::string secret_;
  const Clock& clock_;
  std::int64_t ttl_seconds_;
};

}  // namespace supaplane::auth
