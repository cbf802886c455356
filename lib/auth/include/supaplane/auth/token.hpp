#pragma once
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

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

/// Issues and verifies HS256 session tokens. Thread-safe.
///
/// A token that verified once is remembered (up to `kCacheSize` of them)
/// with its principal and expiry, so the signature and JSON work is done
/// once per token, not once per call: a session token is immutable and
/// there is no revocation list, so the answer cannot change except by
/// expiry, which is checked on every call.
class TokenService {
 public:
  /// `secret` must be at least 32 bytes.
  TokenService(std::string secret, const Clock& clock, std::int64_t ttl_seconds = 3600);
  Result<IssuedToken> issue(const Principal& p) const;
  /// unauthenticated for any malformed, forged, foreign-algorithm or expired token.
  Result<Principal> verify(const std::string& token) const;

  /// How many verified tokens are remembered now (for tests and metrics).
  std::size_t remembered() const;

  static constexpr std::size_t kCacheSize = 4096;
  static constexpr std::size_t kMaxTokenBytes = 4096;

 private:
  struct Verified {
    Principal principal;
    std::int64_t exp{0};  ///< unix seconds
  };
  Result<Verified> verify_uncached(const std::string& token, std::int64_t now_unix_s) const;
  std::string secret_;
  const Clock& clock_;
  std::int64_t ttl_seconds_;
  mutable std::mutex mu_;
  mutable std::unordered_map<std::string, Verified> verified_;
};

}  // namespace supaplane::auth
