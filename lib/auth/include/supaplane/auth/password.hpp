#pragma once
#include <cstddef>
#include <string>
#include <string_view>

#include "supaplane/core/result.hpp"

namespace supaplane::auth {

/// argon2id cost of new hashes: OWASP's recommended minimum (m = 19 MiB,
/// t = 2, p = 1; libsodium always uses one lane). The parameters are written
/// into each hash string, so hashes made with other ones still verify.
inline constexpr unsigned long long kPasswordOpsLimit = 2;
inline constexpr std::size_t kPasswordMemLimitBytes = std::size_t{19} * 1024 * 1024;

/// argon2id hash in libsodium's self-describing string format.
Result<std::string> hash_password(std::string_view password);
/// Constant-time check of `password` against a stored hash.
bool verify_password(std::string_view password, const std::string& stored_hash);
/// True when `stored_hash` was made with other parameters than
/// hash_password uses now (or is not an argon2id hash): re-hash the
/// password after the next successful check.
bool password_needs_rehash(const std::string& stored_hash);
/// 8..128 bytes.
Status validate_password(std::string_view password);
/// A conservative e-mail syntax check (local@domain.tld, ≤ 254 bytes).
Status validate_email(std::string_view email);

}  // namespace supaplane::auth
