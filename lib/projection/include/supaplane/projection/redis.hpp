#pragma once
#include <hiredis/hiredis.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "supaplane/core/result.hpp"

namespace supaplane::projection {

struct ReplyFree {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyFree>;

struct RedisAddress {
  std::string host{"127.0.0.1"};
  int port{6379};
  int db{0};
  /// An ACL user (Redis 6+) and its password; both empty: no AUTH. A
  /// password alone authenticates as `default` (requirepass).
  std::string user;
  std::string password;
  /// "host:port" and the user, never the password: safe for logs and errors.
  std::string describe() const;
};
/// "redis://[user[:password]@]host:port[/db]" or "host:port"; user and
/// password are percent-decoded ("%40" for '@'). Errors never repeat the
/// password.
Result<RedisAddress> parse_redis_url(const std::string& url);

/// A Lua script identified by its SHA1 once loaded.
struct Script {
  std::string source;
  std::string sha;
};

/// One hiredis connection. Not thread-safe: one owner at a time (see RedisPool).
class RedisConnection {
 public:
  RedisConnection(RedisAddress addr, std::vector<Script*> scripts);
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  /// Connects (or reconnects after an error) and loads the scripts.
  Status ensure();
  Result<Reply> command(const std::vector<std::string>& argv);
  /// Pipelining: queue commands, then read one reply per queued command.
  void append(const std::vector<std::string>& argv);
  Result<Reply> get_reply();
  /// EVALSHA argv for `script` with no keys.
  static std::vector<std::string> evalsha(const Script& script, std::vector<std::string> args);
  bool healthy() const { return ctx_ && ctx_->err == 0; }

 private:
  Error drop(const std::string& what);
  Error reply_error(const redisReply* r);
  RedisAddress addr_;
  std::vector<Script*> scripts_;
  redisContext* ctx_{nullptr};
};

/// A small pool of connections for request threads.
class RedisPool {
 public:
  RedisPool(RedisAddress addr, std::vector<Script*> scripts, std::size_t max_idle = 16);
  class Lease {
   public:
    Lease(RedisPool& pool, std::unique_ptr<RedisConnection> c) : pool_(pool), c_(std::move(c)) {}
    ~Lease();
    Lease(Lease&&) = default;
    RedisConnection* operator->() { return c_.get(); }
    RedisConnection& operator*() { return *c_; }

   private:
    RedisPool& pool_;
    std::unique_ptr<RedisConnection> c_;
  };
  Lease acquire();

 private:
  friend class Lease;
  RedisAddress addr_;
  std::vector<Script*> scripts_;
  std::size_t max_idle_;
  std::mutex mu_;
  std::vector<std::unique_ptr<RedisConnection>> idle_;
};

}  // namespace supaplane::projection
