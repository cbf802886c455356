#pragma once
#include <memory>
#include <mutex>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "supaplane/core/result.hpp"
#include "supaplane/logging/logging.hpp"

namespace supaplane::pg {

/// libpq waits forever for an unreachable host by default; bound it (unless
/// the connection string names its own `connect_timeout`).
inline std::string with_connect_timeout(std::string dsn, int seconds = 3) {
  if (dsn.find("connect_timeout") != std::string::npos) return dsn;
  const std::string t = "connect_timeout=" + std::to_string(seconds);
  if (dsn.rfind("postgres://", 0) == 0 || dsn.rfind("postgresql://", 0) == 0)
    return dsn + (dsn.find('?') == std::string::npos ? "?" : "&") + t;
  return dsn + " " + t;
}

/// The same connection string pointed at database `db` (URI or key=value;
/// in key=value form the last `dbname` wins).
inline std::string with_dbname(const std::string& dsn, const std::string& db) {
  for (const char* scheme : {"postgresql://", "postgres://"}) {
    const std::string s = scheme;
    if (dsn.rfind(s, 0) != 0) continue;
    const auto query = dsn.find('?');
    const auto slash = dsn.find('/', s.size());
    const auto end = query == std::string::npos ? dsn.size() : query;
    const auto cut = slash == std::string::npos || slash > end ? end : slash;
    return dsn.substr(0, cut) + "/" + db + dsn.substr(end);
  }
  return dsn + " dbname=" + db;
}

/// Connections to one database, handed out one per call so a slow call
/// never holds up the others; a broken one is dropped. Thread-safe.
class Pool {
 public:
  Pool(std::string dsn, std::string component)
      : dsn_(with_connect_timeout(std::move(dsn))), component_(std::move(component)) {}

  /// Runs `f(pqxx::work&)` (which commits what it wants kept) and returns its
  /// Result, or the mapped error of a failed connection or statement.
  template <typename F>
  auto with_tx(F&& f) -> decltype(f(std::declval<pqxx::work&>())) {
    std::unique_ptr<pqxx::connection> conn = take();
    try {
      if (!conn || !conn->is_open()) conn = std::make_unique<pqxx::connection>(dsn_);
      auto result = [&] {
        pqxx::work tx(*conn);
        return f(tx);
      }();
      give_back(std::move(conn));
      return result;
    } catch (const pqxx::unique_violation&) {
      give_back(std::move(conn));
      return make_error(errc::already_exists, "already exists");
    } catch (const pqxx::broken_connection&) {
      return make_error(errc::unavailable, component_ + " database unavailable");
    } catch (const pqxx::sql_error& e) {
      // The statement may hold a secret: log the SQLSTATE and message only.
      logging::get(component_)->error("database error {}: {}", e.sqlstate(), e.what());
      return make_error(errc::unavailable, component_ + " database error");
    } catch (const std::exception& e) {
      logging::get(component_)->error("database error: {}", e.what());
      return make_error(errc::unavailable, component_ + " database error");
    }
  }

 private:
  std::unique_ptr<pqxx::connection> take() {
    std::lock_guard lk(mu_);
    if (idle_.empty()) return nullptr;
    auto c = std::move(idle_.back());
    idle_.pop_back();
    return c;
  }
  void give_back(std::unique_ptr<pqxx::connection> c) {
    std::lock_guard lk(mu_);
    if (idle_.size() < kMaxIdle) idle_.push_back(std::move(c));
  }
  static constexpr std::size_t kMaxIdle = 8;
  std::string dsn_;
  std::string component_;
  std::mutex mu_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_;
};

}  // namespace supaplane::pg
