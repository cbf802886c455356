#include "accounts.hpp"

#include <pqxx/pqxx>

#include "supaplane/core/ids.hpp"
#include "supaplane/logging/logging.hpp"
#include "supaplane/v1/events.pb.h"

namespace supaplane::api {

namespace {
AccountRow row_of(const pqxx::row& r) {
  AccountRow a;
  a.id = r[0].as<std::string>();
  a.email = r[1].as<std::string>();
  a.password_hash = r[2].as<std::string>();
  a.role = r[3].as<std::string>() == "admin" ? auth::Role::admin : auth::Role::customer;
  a.created_at_unix_ms = static_cast<std::int64_t>(r[4].as<double>() * 1000.0);
  return a;
}
constexpr const char* kColumns =
    "id, email, password_hash, role, extract(epoch from created_at)::float8";
}  // namespace

std::string normalize_email(std::string email) {
  while (!email.empty() && (email.back() == ' ' || email.back() == '\t')) email.pop_back();
  std::size_t i = 0;
  while (i < email.size() && (email[i] == ' ' || email[i] == '\t')) ++i;
  email = email.substr(i);
  for (auto& c : email) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return email;
}

Status append_account_created(event_store::EventStore& store, const AccountRow& account,
                              const v1::Actor& actor, std::int64_t now_unix_ms) {
  v1::EventEnvelope env;
  env.set_event_id(ids::random_hex_id());
  env.set_aggregate_id(account.id);
  env.set_occurred_at_unix_ms(now_unix_ms);
  *env.mutable_actor() = actor;
  env.mutable_account()->mutable_created()->set_role(auth::to_string(account.role));
  event_store::OutgoingEvent ev;
  ev.subject = "platform.account." + account.id;
  ev.expected = event_store::Expected::no_message();
  ev.msg_id = "account:" + account.id;
  ev.event_type = "account.created";
  ev.schema = "supaplane.v1.AccountEvent";
  ev.body = env.SerializeAsString();
  auto r = store.append(ev);
  if (!r) return r.error();
  return Status::Ok();
}

AccountStore::AccountStore(std::string dsn) : pool_(std::move(dsn), "accounts") {}
AccountStore::~AccountStore() = default;

template <typename F>
auto AccountStore::with_tx(F&& f) -> decltype(f(std::declval<pqxx::work&>())) {
  auto r = pool_.with_tx(std::forward<F>(f));
  if (!r && r.error().code == errc::already_exists)
    return make_error(errc::already_exists, "an account with this email already exists", "email");
  return r;
}

Status AccountStore::migrate() {
  auto r = with_tx([](pqxx::work& tx) -> Result<Unit> {
    tx.exec(
        "CREATE TABLE IF NOT EXISTS accounts ("
        " id text PRIMARY KEY,"
        " email text NOT NULL UNIQUE,"
        " password_hash text NOT NULL,"
        " role text NOT NULL CHECK (role IN ('customer','admin')),"
        " created_at timestamptz NOT NULL DEFAULT now())");
    tx.commit();
    return Unit{};
  });
  if (!r) return r.error();
  return Status::Ok();
}

Status AccountStore::ping() {
  auto r = with_tx([](pqxx::work& tx) -> Result<Unit> {
    tx.exec("SELECT 1");
    return Unit{};
  });
  if (!r) return r.error();
  return Status::Ok();
}

Result<AccountRow> AccountStore::create(const std::string& email, const std::string& hash,
                                        auth::Role role,
                                        const std::function<Status(const AccountRow&)>& in_tx) {
  return with_tx([&](pqxx::work& tx) -> Result<AccountRow> {
    const std::string id = ids::new_account_id();
    auto res = tx.exec_params(std::string("INSERT INTO accounts (id, email, password_hash, role) "
                                          "VALUES ($1, $2, $3, $4) RETURNING ") +
                                  kColumns,
                              id, email, hash, auth::to_string(role));
    AccountRow row = row_of(res[0]);
    if (in_tx) {
      if (auto st = in_tx(row); !st) return st.error();  // tx aborts on scope exit
    }
    tx.commit();
    return row;
  });
}

Result<AccountRow> AccountStore::find_by_email(const std::string& email) {
  return with_tx([&](pqxx::work& tx) -> Result<AccountRow> {
    auto res = tx.exec_params(std::string("SELECT ") + kColumns + " FROM accounts WHERE email = $1",
                              email);
    if (res.empty()) return make_error(errc::not_found, "no such account");
    return row_of(res[0]);
  });
}

Result<bool> AccountStore::replace_password_hash(const std::string& id, const std::string& old_hash,
                                                 const std::string& new_hash) {
  return with_tx([&](pqxx::work& tx) -> Result<bool> {
    auto res = tx.exec_params(
        "UPDATE accounts SET password_hash = $3 WHERE id = $1 AND password_hash = $2", id, old_hash,
        new_hash);
    tx.commit();
    return res.affected_rows() == 1;
  });
}

Result<AccountRow> AccountStore::find_by_id(const std::string& id) {
  return with_tx([&](pqxx::work& tx) -> Result<AccountRow> {
    auto res =
        tx.exec_params(std::string("SELECT ") + kColumns + " FROM accounts WHERE id = $1", id);
    if (res.empty()) return make_error(errc::not_found, "no such account");
    return row_of(res[0]);
  });
}

Result<AccountRow> AccountStore::ensure_admin(
    const std::string& email, const std::string& hash,
    const std::function<Status(const AccountRow&)>& on_create) {
  auto existing = find_by_email(email);
  if (existing) {
    // The configured admin's password follows the configuration; a
    // customer who signed up with that address first is never promoted.
    if (existing->role != auth::Role::admin)
      return make_error(errc::failed_precondition,
                        "SUPAPLANE_ADMIN_EMAIL belongs to a customer account; configure another "
                        "address for the admin",
                        "admin_email");
    return with_tx([&](pqxx::work& tx) -> Result<AccountRow> {
      auto res = tx.exec_params(std::string("UPDATE accounts SET password_hash = $2 "
                                            "WHERE email = $1 AND role = 'admin' RETURNING ") +
                                    kColumns,
                                email, hash);
      if (res.empty())
        return make_error(errc::failed_precondition,
                          "SUPAPLANE_ADMIN_EMAIL belongs to a customer account", "admin_email");
      tx.commit();
      return row_of(res[0]);
    });
  }
  if (existing.error().code != errc::not_found) return existing.error();
  return create(email, hash, auth::Role::admin, on_create);
}

}  // namespace supaplane::api
