#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "supaplane/core/result.hpp"

namespace supaplane::secrets {

/// The 32-byte key that seals tenant secrets at rest. Immutable.
class MasterKey {
 public:
  /// From standard base64 of exactly 32 bytes (`head -c32 /dev/urandom | base64`).
  static Result<MasterKey> from_base64(std::string_view b64);
  const std::array<unsigned char, 32>& bytes() const { return key_; }

 private:
  std::array<unsigned char, 32> key_{};
};

/// Retired master keys, comma-separated base64 (SUPAPLANE_MASTER_KEY_PREVIOUS);
/// "" = none. `invalid_argument` (field "master_key_previous") naming the
/// position of a bad one, never its text.
Result<std::vector<MasterKey>> master_keys_from_list(std::string_view list);

/// Encrypts `plaintext` bound to `context` (the tenant ref): URL-safe base64
/// of nonce ‖ ciphertext ‖ tag.
std::string seal(const MasterKey& key, std::string_view context, std::string_view plaintext);
/// Decrypts what `seal` produced; corrupt when the key, the context or a
/// byte differs.
Result<std::string> open(const MasterKey& key, std::string_view context, std::string_view sealed);

/// Everything a tenant is given at its first converge (and anew on rotation).
struct TenantKeys {
  std::string jwt_secret;        ///< 32 random bytes, URL-safe base64 (43 chars)
  std::string anon_jwt;          ///< HS256, role anon
  std::string service_role_jwt;  ///< HS256, role service_role
  std::string publishable_key;   ///< sb_publishable_ + 32 chars
  std::string secret_key;        ///< sb_secret_ + 40 chars
  std::string db_password;       ///< 32 chars [A-Za-z0-9]
  /// 32 random bytes (URL-safe base64) from which the stack's own secrets
  /// (e.g. realtime's SECRET_KEY_BASE, vault's key) are derived. Unlike the
  /// keys above it survives rotation: data encrypted with a derived key must
  /// stay readable.
  std::string stack_seed;
};

/// A per-tenant secret for the stack: 64 hex chars, BLAKE2b keyed with
/// `stack_seed`, over `name`. Same seed and name, same secret.
std::string derive_stack_secret(std::string_view stack_seed, std::string_view name);

/// Fresh keys for `ref`; the JWTs are issued by `issuer` at `now_unix_s` and
/// valid for ten years (rotation, not expiry, retires them).
Result<TenantKeys> generate_tenant_keys(std::string_view ref, std::string_view issuer,
                                        std::int64_t now_unix_s);

/// Hex BLAKE2b-256 of an opaque key: what projections store and look up.
std::string key_hash(std::string_view opaque_key);

}  // namespace supaplane::secrets
