#pragma once
// Stripe webhook signatures (https://docs.stripe.com/webhooks#verify-manually):
// `Stripe-Signature: t=<unix s>,v1=<hex>[,v1=<hex>...][,v0=...]`, each v1 the
// HMAC-SHA256 of "<t>.<raw body>" keyed with an endpoint secret.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "supaplane/core/result.hpp"

namespace supaplane::billing {

/// Why a signature was refused (each is answered 400; counted by reason).
enum class SignatureError { missing, malformed, no_v1, mismatch, stale, future };
const char* to_string(SignatureError e) noexcept;

/// Checks Stripe-Signature headers. Thread-safe (immutable after construction).
class SignatureVerifier {
 public:
  /// `secrets`: every endpoint secret currently accepted (rolling: old + new).
  /// `tolerance_s`: how far `t` may lie from now, in either direction.
  SignatureVerifier(std::vector<std::string> secrets, std::int64_t tolerance_s);

  /// Ok when one v1 signature matches one secret and `t` is within tolerance
  /// of `now_unix_s`. Compares in constant time (sodium_memcmp).
  Result<Unit> verify(std::string_view header, std::string_view body,
                      std::int64_t now_unix_s) const;
  /// The reason of the last failure as an enum (for metrics), from an error.
  static SignatureError reason(const Error& e);

  /// "t=<t>,v1=<hex>" for `body` under `secret` (tests and the benchmark).
  static std::string sign(std::string_view secret, std::int64_t t, std::string_view body);

  bool configured() const { return !secrets_.empty(); }

 private:
  std::vector<std::string> secrets_;
  std::int64_t tolerance_s_;
};

/// Splits "a,b,,c" into its non-empty, trimmed items.
std::vector<std::string> split_list(std::string_view s);

}  // namespace supaplane::billing
