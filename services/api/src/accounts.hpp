#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <pqxx/pqxx>
#include <string>

#include "supaplane/auth/token.hpp"
#include "supaplane/core/result.hpp"
#include "supaplane/event_store/event_store.hpp"
#include "supaplane/pg/pool.hpp"
#include "supaplane/v1/types.pb.h"

namespace supaplane::api {

struct AccountRow {
  std::string id;
  std::string email;
  std::string password_hash;
  auth::Role role{auth::Role::customer};
  std::int64_t created_at_unix_ms{0};
};

/// Accounts in the platform PostgreSQL, through a small pool of connections
/// (a broken one is dropped and replaced on the next call). Thread-safe.
class AccountStore {
 public:
  explicit AccountStore(std::string dsn);
  ~AccountStore();
  /// Creates the table if needed.
  Status migrate();
  /// Inserts an account; `in_tx` runs inside the transaction before commit
  /// (the caller appends the AccountCreated event there): if it fails,
  /// nothing is stored. Known gap: an append that succeeded followed by a
  /// failed commit leaves an `account.created` with no account behind it.
  /// already_exists when the e-mail is taken.
  Result<AccountRow> create(const std::string& email, const std::string& password_hash,
                            auth::Role role, const std::function<Status(const AccountRow&)>& in_tx);
  Result<AccountRow> find_by_email(const std::string& email);
  /// Replaces the account's password hash only if it still is `old_hash`
  /// (a concurrent change wins). Returns whether it was replaced.
  Result<bool> replace_password_hash(const std::string& id, const std::string& old_hash,
                                     const std::string& new_hash);
  Result<AccountRow> find_by_id(const std::string& id);
  /// Creates the admin account, or makes the existing one admin with this password.
  Result<AccountRow> ensure_admin(const std::string& email, const std::string& password_hash,
                                  const std::function<Status(const AccountRow&)>& on_create);
  Status ping();

 private:
  template <typename F>
  auto with_tx(F&& f) -> decltype(f(std::declval<pqxx::work&>()));
  pg::Pool pool_;
};

/// Appends `account.created` for a new account (id and role only: the
/// e-mail stays in PostgreSQL). Called inside the insert's transaction.
Status append_account_created(event_store::EventStore& store, const AccountRow& account,
                              const v1::Actor& actor, std::int64_t now_unix_ms);

/// Lower-cases and trims an e-mail address.
std::string normalize_email(std::string email);

}  // namespace supaplane::api
