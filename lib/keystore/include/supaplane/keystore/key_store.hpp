#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

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

/// What `reseal_all` did.
struct ResealReport {
  std::int64_t resealed{0};    ///< rows opened with a previous key, now sealed with the current
  std::int64_t current{0};     ///< rows already sealed with the current key
  std::int64_t unreadable{0};  ///< rows no configured key opens (left as they are)
};

/// Tenant secrets in the platform PostgreSQL (`tenant_secrets`), sealed with
/// the master key and bound to the ref; never in an event or a log.
/// Master-key rotation: rows sealed with one of `previous` are still read,
/// and re-sealed with `key` when read (or all at once by `reseal_all`).
/// Thread-safe.
class KeyStore {
 public:
  KeyStore(std::string dsn, secrets::MasterKey key, std::string issuer, const Clock& clock,
           std::vector<secrets::MasterKey> previous = {});
  Status migrate();
  /// Keys for `keys_generation`: the stored ones when at least that new,
  /// else fresh ones, stored before they are used (a crash after the driver
  /// call then reuses them).
  Result<StoredKeys> ensure(const std::string& ref, std::int64_t keys_generation);
  Result<std::optional<StoredKeys>> load(const std::string& ref);
  Status remove(const std::string& ref);
  /// Re-seals, with the current key, every row a previous key opens.
  Result<ResealReport> reseal_all();

 private:
  /// Opens `sealed` with the current key, else a previous one (`*with_previous`).
  Result<std::string> open(const std::string& ref, const std::string& sealed,
                           bool* with_previous) const;
  /// Replaces `old_sealed` by the same plaintext under the current key, unless
  /// the row changed meanwhile (a rotation of the tenant's keys wins).
  Status reseal(const std::string& ref, const std::string& old_sealed,
                const std::string& plaintext);
  pg::Pool pool_;
  secrets::MasterKey key_;
  std::vector<secrets::MasterKey> previous_;
  std::string issuer_;
  const Clock& clock_;
};

}  // namespace supaplane::keystore
