#include "supaplane/secrets/secrets.hpp"

#include <sodium.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "supaplane/auth/jwt.hpp"

namespace supaplane::secrets {

namespace {
constexpr std::int64_t kTenYears = 10LL * 365 * 24 * 3600;
constexpr std::string_view kAlnum =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

bool init() { return sodium_init() >= 0; }

std::string b64url(const unsigned char* p, std::size_t n) {
  std::string out(sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING), '\0');
  sodium_bin2base64(out.data(), out.size(), p, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.resize(out.size() - 1);  // the encoder's terminating NUL
  return out;
}

/// `n` characters of [A-Za-z0-9], uniformly (rejection-free: uniform index).
std::string random_alnum(std::size_t n) {
  std::string out;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i)
    out.push_back(kAlnum[randombytes_uniform(static_cast<std::uint32_t>(kAlnum.size()))]);
  return out;
}
}  // namespace

Result<MasterKey> MasterKey::from_base64(std::string_view b64) {
  if (!init()) return make_error(errc::internal, "libsodium failed to initialise");
  MasterKey k;
  std::size_t len = 0;
  if (sodium_base642bin(k.key_.data(), k.key_.size(), b64.data(), b64.size(), " \n", &len, nullptr,
                        sodium_base64_VARIANT_ORIGINAL) != 0 ||
      len != k.key_.size())
    return make_error(errc::invalid_argument, "master key must be base64 of exactly 32 bytes",
                      "master_key");
  return k;
}

Result<std::vector<MasterKey>> master_keys_from_list(std::string_view list) {
  std::vector<MasterKey> out;
  std::size_t n = 0;
  while (!list.empty()) {
    const auto comma = list.find(',');
    const std::string_view item = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    ++n;
    if (item.find_first_not_of(" \n") == std::string_view::npos) continue;
    auto k = MasterKey::from_base64(item);
    if (!k)
      return make_error(
          errc::invalid_argument,
          "previous master key #" + std::to_string(n) + " must be base64 of exactly 32 bytes",
          "master_key_previous");
    out.push_back(*k);
  }
  return out;
}

std::string seal(const MasterKey& key, std::string_view context, std::string_view plaintext) {
  init();
  std::vector<unsigned char> buf(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + plaintext.size() +
                                 crypto_aead_xchacha20poly1305_ietf_ABYTES);
  unsigned char* nonce = buf.data();
  randombytes_buf(nonce, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
  unsigned long long clen = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(
      nonce + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, &clen,
      reinterpret_cast<const unsigned char*>(plaintext.data()), plaintext.size(),
      reinterpret_cast<const unsigned char*>(context.data()), context.size(), nullptr, nonce,
      key.bytes().data());
  return b64url(buf.data(), crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + clen);
}

Result<std::string> open(const MasterKey& key, std::string_view context, std::string_view sealed) {
  init();
  std::vector<unsigned char> buf(sealed.size());
  std::size_t len = 0;
  if (sodium_base642bin(buf.data(), buf.size(), sealed.data(), sealed.size(), nullptr, &len,
                        nullptr, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
      len <
          crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + crypto_aead_xchacha20poly1305_ietf_ABYTES)
    return make_error(errc::corrupt, "sealed value is malformed");
  const unsigned char* nonce = buf.data();
  const unsigned char* c = buf.data() + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
  const std::size_t clen = len - crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
  std::string out(clen - crypto_aead_xchacha20poly1305_ietf_ABYTES, '\0');
  unsigned long long mlen = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(
          reinterpret_cast<unsigned char*>(out.data()), &mlen, nullptr, c, clen,
          reinterpret_cast<const unsigned char*>(context.data()), context.size(), nonce,
          key.bytes().data()) != 0)
    return make_error(errc::corrupt, "sealed value does not open with this key and context");
  out.resize(mlen);
  return out;
}

Result<TenantKeys> generate_tenant_keys(std::string_view ref, std::string_view issuer,
                                        std::int64_t now_unix_s) {
  if (!init()) return make_error(errc::internal, "libsodium failed to initialise");
  TenantKeys k;
  std::array<unsigned char, 32> secret{};
  randombytes_buf(secret.data(), secret.size());
  k.jwt_secret = b64url(secret.data(), secret.size());
  sodium_memzero(secret.data(), secret.size());
  auth::JwtClaims c;
  c.iss = std::string(issuer);
  c.ref = std::string(ref);
  c.iat = now_unix_s;
  c.exp = now_unix_s + kTenYears;
  c.role = "anon";
  auto anon = auth::sign_hs256(k.jwt_secret, c);
  if (!anon) return anon.error();
  c.role = "service_role";
  auto service = auth::sign_hs256(k.jwt_secret, c);
  if (!service) return service.error();
  k.anon_jwt = std::move(*anon);
  k.service_role_jwt = std::move(*service);
  k.publishable_key = "sb_publishable_" + random_alnum(32);
  k.secret_key = "sb_secret_" + random_alnum(40);
  k.db_password = random_alnum(32);
  std::array<unsigned char, 32> seed{};
  randombytes_buf(seed.data(), seed.size());
  k.stack_seed = b64url(seed.data(), seed.size());
  sodium_memzero(seed.data(), seed.size());
  return k;
}

std::string derive_stack_secret(std::string_view stack_seed, std::string_view name) {
  init();
  std::array<unsigned char, 32> h{};
  std::array<unsigned char, crypto_generichash_KEYBYTES_MAX> key{};
  const std::size_t klen = std::min(stack_seed.size(), key.size());
  std::memcpy(key.data(), stack_seed.data(), klen);
  crypto_generichash(h.data(), h.size(), reinterpret_cast<const unsigned char*>(name.data()),
                     name.size(), key.data(),
                     std::max<std::size_t>(klen, crypto_generichash_KEYBYTES_MIN));
  sodium_memzero(key.data(), key.size());
  std::string out(h.size() * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), h.data(), h.size());
  out.pop_back();
  return out;
}

std::string key_hash(std::string_view opaque_key) {
  init();
  std::array<unsigned char, 32> h{};
  crypto_generichash(h.data(), h.size(), reinterpret_cast<const unsigned char*>(opaque_key.data()),
                     opaque_key.size(), nullptr, 0);
  std::array<char, 65> hex{};
  sodium_bin2hex(hex.data(), hex.size(), h.data(), h.size());
  return std::string(hex.data(), 64);
}

}  // namespace supaplane::secrets
