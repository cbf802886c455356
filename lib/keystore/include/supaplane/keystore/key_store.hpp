#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "supaplane/core/result.hpp"
#include "supaplane/core/time.hpp"
#include "supaplane/pg/pool.hpp"
#include "supaplane/secrets/secrets.hpp"

namespace supaplane::keystore {

/// A tenant's keys with the keys generation they were made for.
struct StoredKeys {
  std::int64_t keys_generation{0};
  secrets::TenantKeys keys;
};

/// Tenant secrets in the platform PostgreSQL (`tenant_secrets`), sealed with
/// the master key and bound to the ref; never in an event or a log.
/// Thread-safe.
class KeyStore {
 public:
  KeyStore(std::string dsn, secrets::MasterKey key, std::string issuer, const Clock& clock);
  Status migrate();
  /// Keys for `keys_generation`: the stored ones when at least that new,
  /// else fresh ones, stored before they are used (a crash after the driver
  /// call then reuses them).
  Result<StoredKeys> ensure(const std::string& ref, std::int64_t keys_generation);
  Result<std::optional<StoredKeys>> load(const std::string& ref);
  Status remove(const std::string& ref);

 private:
  pg::Pool pool_;
  secrets::MasterKey key_;
  std::string issuer_;
  const Clock& clock_;
};

}  // namespace supaplane::keystore
