#include "supaplane/keystore/key_store.hpp"

#include <nlohmann/json.hpp>

namespace supaplane::keystore {

namespace {
std::string to_json(const secrets::TenantKeys& k) {
  nlohmann::json j{{"jwt_secret", k.jwt_secret},
                   {"anon_jwt", k.anon_jwt},
                   {"service_role_jwt", k.service_role_jwt},
                   {"publishable_key", k.publishable_key},
                   {"secret_key", k.secret_key},
                   {"db_password", k.db_password},
                   {"stack_seed", k.stack_seed}};
  return j.dump();
}

Result<secrets::TenantKeys> from_json(const std::string& s) {
  const auto j = nlohmann::json::parse(s, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return make_error(errc::corrupt, "tenant keys unreadable");
  secrets::TenantKeys k;
  k.jwt_secret = j.value("jwt_secret", "");
  k.anon_jwt = j.value("anon_jwt", "");
  k.service_role_jwt = j.value("service_role_jwt", "");
  k.publishable_key = j.value("publishable_key", "");
  k.secret_key = j.value("secret_key", "");
  k.db_password = j.value("db_password", "");
  k.stack_seed = j.value("stack_seed", "");
  return k;
}
}  // namespace

KeyStore::KeyStore(std::string dsn, secrets::MasterKey key, std::string issuer, const Clock& clock,
                   std::vector<secrets::MasterKey> previous)
    : pool_(std::move(dsn), "keys"),
      key_(key),
      previous_(std::move(previous)),
      issuer_(std::move(issuer)),
      clock_(clock) {}

Result<std::string> KeyStore::open(const std::string& ref, const std::string& sealed,
                                   bool* with_previous) const {
  *with_previous = false;
  auto plain = secrets::open(key_, ref, sealed);
  if (plain) return plain;
  for (const auto& old : previous_) {
    if (auto p = secrets::open(old, ref, sealed); p) {
      *with_previous = true;
      return p;
    }
  }
  return make_error(errc::corrupt, "tenant keys of " + ref + " open with no configured master key");
}

Status KeyStore::reseal(const std::string& ref, const std::string& old_sealed,
                        const std::string& plaintext) {
  const std::string sealed = secrets::seal(key_, ref, plaintext);
  auto r = pool_.with_tx([&](pqxx::work& tx) -> Result<Unit> {
    tx.exec_params(
        "UPDATE tenant_secrets SET sealed = $3, updated_at = now() WHERE ref = $1 AND sealed = $2",
        ref, old_sealed, sealed);
    tx.commit();
    return Unit{};
  });
  if (!r) return r.error();
  return Status::Ok();
}

Result<ResealReport> KeyStore::reseal_all() {
  ResealReport report;
  std::string after;
  for (;;) {
    auto page = pool_.with_tx(
        [&](pqxx::work& tx) -> Result<std::vector<std::pair<std::string, std::string>>> {
          auto res = tx.exec_params(
              "SELECT ref, sealed FROM tenant_secrets WHERE ref > $1 ORDER BY ref LIMIT 500",
              after);
          std::vector<std::pair<std::string, std::string>> rows;
          for (const auto& row : res)
            rows.emplace_back(row[0].as<std::string>(), row[1].as<std::string>());
          return rows;
        });
    if (!page) return page.error();
    if (page->empty()) return report;
    for (const auto& [ref, sealed] : *page) {
      bool with_previous = false;
      auto plain = open(ref, sealed, &with_previous);
      if (!plain) {
        ++report.unreadable;
      } else if (!with_previous) {
        ++report.current;
      } else {
        if (auto st = reseal(ref, sealed, *plain); !st) return st.error();
        ++report.resealed;
      }
    }
    after = page->back().first;
  }
}

Status KeyStore::migrate() {
  auto r = pool_.with_tx([](pqxx::work& tx) -> Result<Unit> {
    tx.exec(
        "CREATE TABLE IF NOT EXISTS tenant_secrets ("
        " ref text PRIMARY KEY,"
        " keys_generation bigint NOT NULL,"
        " sealed text NOT NULL,"
        " updated_at timestamptz NOT NULL DEFAULT now())");
    tx.commit();
    return Unit{};
  });
  if (!r) return r.error();
  return Status::Ok();
}

Result<std::optional<StoredKeys>> KeyStore::load(const std::string& ref) {
  auto row = pool_.with_tx(
      [&](pqxx::work& tx) -> Result<std::optional<std::pair<std::int64_t, std::string>>> {
        auto res = tx.exec_params(
            "SELECT keys_generation, sealed FROM tenant_secrets WHERE ref = $1", ref);
        if (res.empty()) return std::optional<std::pair<std::int64_t, std::string>>{};
        return std::optional(std::pair{res[0][0].as<std::int64_t>(), res[0][1].as<std::string>()});
      });
  if (!row) return row.error();
  if (!row->has_value()) return std::optional<StoredKeys>{};
  bool with_previous = false;
  auto plain = open(ref, (*row)->second, &with_previous);
  if (!plain) return plain.error();
  // Read with a retired key: store it under the current one from now on.
  if (with_previous)
    if (auto st = reseal(ref, (*row)->second, *plain); !st) return st.error();
  auto keys = from_json(*plain);
  if (!keys) return keys.error();
  return std::optional(StoredKeys{(*row)->first, std::move(*keys)});
}

Result<StoredKeys> KeyStore::ensure(const std::string& ref, std::int64_t keys_generation) {
  auto current = load(ref);
  if (!current) return current.error();
  if (current->has_value() && (*current)->keys_generation >= keys_generation) return **current;
  auto keys = secrets::generate_tenant_keys(ref, issuer_, clock_.now_unix_ms() / 1000);
  if (!keys) return keys.error();
  // Rotation renews the keys, not the stack's own data keys.
  if (current->has_value() && !(*current)->keys.stack_seed.empty())
    keys->stack_seed = (*current)->keys.stack_seed;
  const std::string sealed = secrets::seal(key_, ref, to_json(*keys));
  // Only a newer generation replaces what is stored (two writers agree).
  auto stored = pool_.with_tx([&](pqxx::work& tx) -> Result<Unit> {
    tx.exec_params(
        "INSERT INTO tenant_secrets (ref, keys_generation, sealed) VALUES ($1, $2, $3) "
        "ON CONFLICT (ref) DO UPDATE SET keys_generation = EXCLUDED.keys_generation, "
        "sealed = EXCLUDED.sealed, updated_at = now() "
        "WHERE tenant_secrets.keys_generation < EXCLUDED.keys_generation",
        ref, keys_generation, sealed);
    tx.commit();
    return Unit{};
  });
  if (!stored) return stored.error();
  auto now = load(ref);  // what won
  if (!now) return now.error();
  if (!now->has_value()) return make_error(errc::unavailable, "tenant keys vanished; retry");
  return **now;
}

Status KeyStore::remove(const std::string& ref) {
  auto r = pool_.with_tx([&](pqxx::work& tx) -> Result<Unit> {
    tx.exec_params("DELETE FROM tenant_secrets WHERE ref = $1", ref);
    tx.commit();
    return Unit{};
  });
  if (!r) return r.error();
  return Status::Ok();
}

}  // namespace supaplane::keystore
