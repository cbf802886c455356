#include "supaplane/auth/password.hpp"

#include <sodium.h>

namespace supaplane::auth {

Result<std::string> hash_password(std::string_view password) {
  if (sodium_init() < 0) return make_error(errc::internal, "libsodium failed to initialise");
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str_alg(out, password.data(), password.size(), kPasswordOpsLimit,
                            kPasswordMemLimitBytes, crypto_pwhash_ALG_ARGON2ID13) != 0)
    return make_error(errc::internal, "password hashing ran out of memory");
  return std::string(out);
}

bool verify_password(std::string_view password, const std::string& stored_hash) {
  if (sodium_init() < 0) return false;
  return crypto_pwhash_str_verify(stored_hash.c_str(), password.data(), password.size()) == 0;
}

bool password_needs_rehash(const std::string& stored_hash) {
  if (sodium_init() < 0) return false;
  // 0: same parameters; 1: other parameters; -1: not an argon2id hash.
  return crypto_pwhash_str_needs_rehash(stored_hash.c_str(), kPasswordOpsLimit,
                                        kPasswordMemLimitBytes) != 0;
}

Status validate_password(std::string_view password) {
  if (password.size() < 8 || password.size() > 128)
    return make_error(errc::invalid_argument, "password must be 8..128 bytes", "password");
  return Status::Ok();
}

Status validate_email(std::string_view email) {
  auto bad = [] {
    return make_error(errc::invalid_argument, "email is not a valid address", "email");
  };
  if (email.size() < 3 || email.size() > 254) return bad();
  const auto at = email.find('@');
  if (at == std::string_view::npos || at == 0 || email.find('@', at + 1) != std::string_view::npos)
    return bad();
  const auto domain = email.substr(at + 1);
  if (domain.size() < 3 || domain.find('.') == std::string_view::npos || domain.front() == '.' ||
      domain.back() == '.')
    return bad();
  for (unsigned char c : email)
    if (c <= 0x20 || c == 0x7f || c == '<' || c == '>' || c == ',' || c == ';' || c == '"' ||
        c == '\\')
      return bad();
  return Status::Ok();
}

}  // namespace supaplane::auth
