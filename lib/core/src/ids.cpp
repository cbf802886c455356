#include "supaplane/core/ids.hpp"

#include <sodium.h>

#include <array>
#include <cstdio>

namespace supaplane {

const char* to_string(errc e) noexcept {
  switch (e) {
    case errc::invalid_argument:
      return "invalid_argument";
    case errc::not_found:
      return "not_found";
    case errc::already_exists:
      return "already_exists";
    case errc::failed_precondition:
      return "failed_precondition";
    case errc::conflict:
      return "conflict";
    case errc::unavailable:
      return "unavailable";
    case errc::unauthenticated:
      return "unauthenticated";
    case errc::permission_denied:
      return "permission_denied";
    case errc::incompatible:
      return "incompatible";
    case errc::corrupt:
      return "corrupt";
    case errc::internal:
      return "internal";
    case errc::resource_exhausted:
      return "resource_exhausted";
  }
  return "unknown";
}

bool TenantRef::valid(std::string_view s) noexcept {
  if (s.size() != kLength) return false;
  for (char c : s)
    if (c < 'a' || c > 'z') return false;
  return true;
}

namespace ids {
namespace {
void ensure_sodium() {
  static const int rc = sodium_init();
  (void)rc;  // < 0 only when the library cannot work at all; randombytes aborts then
}

std::string letters_from(const unsigned char* bytes, std::size_t n, std::size_t len,
                         std::string_view alphabet) {
  // Each output char consumes one byte; bias is irrelevant for ids (26 | 36 of 256).
  std::string out;
  out.reserve(len);
  for (std::size_t i = 0; i < len; ++i) out.push_back(alphabet[bytes[i % n] % alphabet.size()]);
  return out;
}
constexpr std::string_view kLower = "abcdefghijklmnopqrstuvwxyz";
constexpr std::string_view kLowerDigits = "abcdefghijklmnopqrstuvwxyz0123456789";
}  // namespace

TenantRef random_tenant_ref() {
  ensure_sodium();
  std::array<unsigned char, TenantRef::kLength> b{};
  randombytes_buf(b.data(), b.size());
  return TenantRef::unchecked(letters_from(b.data(), b.size(), TenantRef::kLength, kLower));
}

TenantRef tenant_ref_for(std::string_view account_id, std::string_view request_id) {
  ensure_sodium();
  std::string input;
  input.append(account_id).push_back('\n');
  input.append(request_id);
  std::array<unsigned char, 32> h{};
  crypto_generichash(h.data(), h.size(), reinterpret_cast<const unsigned char*>(input.data()),
                     input.size(), nullptr, 0);
  return TenantRef::unchecked(letters_from(h.data(), h.size(), TenantRef::kLength, kLower));
}

std::string new_account_id() {
  ensure_sodium();
  std::array<unsigned char, 20> b{};
  randombytes_buf(b.data(), b.size());
  return "acct_" + letters_from(b.data(), b.size(), 20, kLowerDigits);
}

bool valid_account_id(std::string_view s) noexcept {
  if (s.size() != 25 || s.substr(0, 5) != "acct_") return false;
  for (char c : s.substr(5))
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) return false;
  return true;
}

std::string random_hex_id() {
  ensure_sodium();
  std::array<unsigned char, 16> b{};
  randombytes_buf(b.data(), b.size());
  std::array<char, 33> hex{};
  sodium_bin2hex(hex.data(), hex.size(), b.data(), b.size());
  return std::string(hex.data(), 32);
}

bool valid_request_id(std::string_view s) noexcept {
  if (s.empty() || s.size() > 128) return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == ':';
    if (!ok) return false;
  }
  return true;
}

Status validate_tenant_name(std::string_view name) {
  if (name.empty()) return make_error(errc::invalid_argument, "name must not be empty", "name");
  if (name.size() > 64)
    return make_error(errc::invalid_argument, "name must be at most 64 bytes", "name");
  bool any_visible = false;
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7f)
      return make_error(errc::invalid_argument, "name must not contain control characters", "name");
    if (c != ' ') any_visible = true;
  }
  if (!any_visible) return make_error(errc::invalid_argument, "name must not be blank", "name");
  return Status::Ok();
}

Result<TenantRef> parse_tenant_ref(std::string_view s, std::string_view field) {
  if (!TenantRef::valid(s))
    return make_error(errc::invalid_argument, std::string(field) + " must be 20 lowercase letters",
                      std::string(field));
  return TenantRef::unchecked(std::string(s));
}

}  // namespace ids
}  // namespace supaplane
