#pragma once
#include <string>
#include <string_view>

#include "supaplane/core/result.hpp"

namespace supaplane::auth {

/// argon2id hash in libsodium's self-describing string format.
Result<std::string> hash_password(std::string_view password);
/// Constant-time check of `password` against a stored hash.
bool verify_password(std::string_view password, const std::string& stored_hash);
/// 8..128 bytes.
Status validate_password(std::string_view password);
/// A conservative e-mail syntax check (local@domain.tld, ≤ 254 bytes).
Status validate_email(std::string_view email);

}  // namespace supaplane::auth
