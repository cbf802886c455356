#include "signature.hpp"

#include <sodium.h>

#include <array>
#include <charconv>

namespace supaplane::billing {

namespace {
using Mac = std::array<unsigned char, crypto_auth_hmacsha256_BYTES>;

Mac hmac(std::string_view secret, std::string_view t, std::string_view body) {
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, reinterpret_cast<const unsigned char*>(secret.data()),
                              secret.size());
  crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(t.data()), t.size());
  const unsigned char dot = '.';
  crypto_auth_hmacsha256_update(&st, &dot, 1);
  crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(body.data()),
                                body.size());
  Mac out{};
  crypto_auth_hmacsha256_final(&st, out.data());
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes exactly 64 hex digits; false for anything else.
bool decode_mac(std::string_view hex, Mac& out) {
  if (hex.size() != out.size() * 2) return false;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const int hi = hex_value(hex[2 * i]);
    const int lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<unsigned char>(hi * 16 + lo);
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

Error refuse(SignatureError why, std::string message) {
  // The reason travels in `field` so that metrics can label it.
  return make_error(errc::unauthenticated, std::move(message), to_string(why));
}
}  // namespace

const char* to_string(SignatureError e) noexcept {
  switch (e) {
    case SignatureError::missing:
      return "missing";
    case SignatureError::malformed:
      return "malformed";
    case SignatureError::no_v1:
      return "no_v1";
    case SignatureError::mismatch:
      return "mismatch";
    case SignatureError::stale:
      return "stale";
    case SignatureError::future:
      return "future";
  }
  return "malformed";
}

std::vector<std::string> split_list(std::string_view s) {
  std::vector<std::string> out;
  while (!s.empty()) {
    const auto comma = s.find(',');
    const auto item = trim(s.substr(0, comma));
    if (!item.empty()) out.emplace_back(item);
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  return out;
}

SignatureVerifier::SignatureVerifier(std::vector<std::string> secrets, std::int64_t tolerance_s)
    : secrets_(std::move(secrets)), tolerance_s_(tolerance_s) {
  if (sodium_init() < 0) secrets_.clear();  // refuse everything rather than run without libsodium
}

SignatureError SignatureVerifier::reason(const Error& e) {
  for (auto r : {SignatureError::missing, SignatureError::malformed, SignatureError::no_v1,
                 SignatureError::mismatch, SignatureError::stale, SignatureError::future})
    if (e.field == to_string(r)) return r;
  return SignatureError::malformed;
}

Result<Unit> SignatureVerifier::verify(std::string_view header, std::string_view body,
                                       std::int64_t now_unix_s) const {
  header = trim(header);
  if (header.empty()) return refuse(SignatureError::missing, "missing Stripe-Signature header");
  if (header.size() > 4096)
    return refuse(SignatureError::malformed, "Stripe-Signature header too long");
  std::string_view t_text;
  std::vector<std::string_view> v1;
  std::string_view rest = header;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const auto item = trim(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    const auto eq = item.find('=');
    if (eq == std::string_view::npos || eq == 0)
      return refuse(SignatureError::malformed, "Stripe-Signature is not a list of key=value");
    const auto key = item.substr(0, eq);
    const auto value = item.substr(eq + 1);
    if (key == "t") {
      if (!t_text.empty())
        return refuse(SignatureError::malformed, "Stripe-Signature has two timestamps");
      t_text = value;
    } else if (key == "v1") {
      v1.push_back(value);
    }
    // v0 (test-mode legacy scheme) and unknown schemes are ignored, as Stripe's SDKs do.
  }
  std::int64_t t = 0;
  const auto* end = t_text.data() + t_text.size();
  if (t_text.empty() || t_text.size() > 18 || std::from_chars(t_text.data(), end, t).ptr != end ||
      t <= 0)
    return refuse(SignatureError::malformed, "Stripe-Signature has no valid t= timestamp");
  if (v1.empty()) return refuse(SignatureError::no_v1, "Stripe-Signature has no v1 signature");
  if (secrets_.empty()) return refuse(SignatureError::mismatch, "no webhook secret configured");
  bool match = false;
  for (const auto& secret : secrets_) {
    const Mac expected = hmac(secret, t_text, body);
    for (const auto& sig : v1) {
      Mac given{};
      if (!decode_mac(sig, given)) continue;
      // Constant time: how much of a guess matched is not observable.
      if (sodium_memcmp(expected.data(), given.data(), expected.size()) == 0) match = true;
    }
  }
  if (!match) return refuse(SignatureError::mismatch, "no v1 signature matches");
  // Checked after the MAC so that only an authentic header can learn the clock.
  if (t < now_unix_s - tolerance_s_)
    return refuse(SignatureError::stale, "Stripe-Signature timestamp is outside the tolerance");
  if (t > now_unix_s + tolerance_s_)
    return refuse(SignatureError::future, "Stripe-Signature timestamp is in the future");
  return Unit{};
}

std::string SignatureVerifier::sign(std::string_view secret, std::int64_t t,
                                    std::string_view body) {
  const std::string ts = std::to_string(t);
  const Mac mac = hmac(secret, ts, body);
  std::string hex(mac.size() * 2 + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), mac.data(), mac.size());
  hex.pop_back();
  return "t=" + ts + ",v1=" + hex;
}

}  // namespace supaplane::billing
