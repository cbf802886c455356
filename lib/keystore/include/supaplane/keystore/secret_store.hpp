#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "supaplane/core/result.hpp"
#include "supaplane/keystore/key_store.hpp"

namespace supaplane::keystore {

/// A tenant's secrets as the provisioner uses them. `KeyStoreSecrets` puts
/// the PostgreSQL `KeyStore` behind it; unit tests use an in-memory fake
/// (tests/support/fakes.hpp). Implementations are thread-safe.
class SecretStore {
 public:
  virtual ~SecretStore() = default;
  /// Keys for `keys_generation`: the stored ones when at least that new,
  /// else fresh ones, stored before they are used.
  virtual Result<StoredKeys> ensure(const std::string& ref, std::int64_t keys_generation) = 0;
  virtual Result<std::optional<StoredKeys>> load(const std::string& ref) = 0;
  virtual Status remove(const std::string& ref) = 0;
};

/// The PostgreSQL key store as a `SecretStore`: every call forwards.
class KeyStoreSecrets final : public SecretStore {
 public:
  explicit KeyStoreSecrets(KeyStore& keys) : keys_(keys) {}
  Result<StoredKeys> ensure(const std::string& ref, std::int64_t keys_generation) override {
    return keys_.ensure(ref, keys_generation);
  }
  Result<std::optional<StoredKeys>> load(const std::string& ref) override {
    return keys_.load(ref);
  }
  Status remove(const std::string& ref) override { return keys_.remove(ref); }

 private:
  KeyStore& keys_;
};

}  // namespace supaplane::keystore
