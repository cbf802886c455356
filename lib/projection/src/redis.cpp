#include "supaplane/projection/redis.hpp"

#include <sys/time.h>

namespace supaplane::projection {

namespace {
int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
/// Percent-decodes the userinfo of a URL; false on a broken escape.
bool percent_decode(std::string_view in, std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out.push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return false;
    const int hi = hex_digit(in[i + 1]), lo = hex_digit(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}
}  // namespace

std::string RedisAddress::describe() const {
  std::string s = host + ":" + std::to_string(port);
  if (!user.empty()) s += " as " + user;
  return s;
}

Result<RedisAddress> parse_redis_url(const std::string& url) {
  std::string rest = url;
  const std::string scheme = "redis://";
  if (rest.rfind(scheme, 0) == 0) rest = rest.substr(scheme.size());
  RedisAddress a;
  // The userinfo ends at the last '@' (the database path is digits); the
  // user ends at the first ':', so a password may hold ':', '/' and '@'.
  if (auto at = rest.rfind('@'); at != std::string::npos) {
    const std::string userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const auto colon = userinfo.find(':');
    const std::string_view user = std::string_view(userinfo).substr(0, colon);
    if (!percent_decode(user, a.user))
      return make_error(errc::invalid_argument, "bad percent-escape in the redis url's user");
    if (colon != std::string::npos &&
        !percent_decode(std::string_view(userinfo).substr(colon + 1), a.password))
      return make_error(errc::invalid_argument, "bad percent-escape in the redis url's password");
    if (colon == std::string::npos && !a.user.empty())
      // Not repeated: `redis://secret@host` is a password written as a user.
      return make_error(errc::invalid_argument,
                        "the redis url has a user but no password (redis://user:password@host, "
                        "or redis://:password@host for requirepass)");
  }
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    const std::string db = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
    if (!db.empty()) {
      if (db.find_first_not_of("0123456789") != std::string::npos || db.size() > 2)
        return make_error(errc::invalid_argument, "bad database number in redis url");
      a.db = std::stoi(db);
    }
  }
  auto colon = rest.rfind(':');
  if (colon == std::string::npos) {
    a.host = rest.empty() ? a.host : rest;
    return a;
  }
  a.host = rest.substr(0, colon);
  const std::string port = rest.substr(colon + 1);
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos)
    return make_error(errc::invalid_argument, "bad port in redis url");
  a.port = std::stoi(port);
  return a;
}

RedisConnection::RedisConnection(RedisAddress addr, std::vector<Script*> scripts)
    : addr_(std::move(addr)), scripts_(std::move(scripts)) {}

RedisConnection::~RedisConnection() {
  if (ctx_) redisFree(ctx_);
}

Error RedisConnection::reply_error(const redisReply* r) {
  const std::string text(r->str, r->len);
  if (text.rfind("NOSCRIPT", 0) == 0) {
    // The server lost our scripts (SCRIPT FLUSH): reconnect, which reloads
    // them, and let the caller retry. Replies still queued are lost with the
    // connection; pipelining callers re-send their batch.
    redisFree(ctx_);
    ctx_ = nullptr;
    return make_error(errc::unavailable, "redis lost its scripts; reloading");
  }
  return make_error(errc::internal, "redis: " + text);
}

Error RedisConnection::drop(const std::string& what) {
  std::string msg = "redis " + what;
  if (ctx_ && ctx_->err) msg += ": " + std::string(ctx_->errstr);
  if (ctx_) {
    redisFree(ctx_);
    ctx_ = nullptr;
  }
  return make_error(errc::unavailable, msg);
}

Status RedisConnection::ensure() {
  if (ctx_ && ctx_->err == 0) return Status::Ok();
  if (ctx_) {
    redisFree(ctx_);
    ctx_ = nullptr;
  }
  timeval tv{2, 0};
  ctx_ = redisConnectWithTimeout(addr_.host.c_str(), addr_.port, tv);
  if (!ctx_ || ctx_->err) return drop("connect " + addr_.describe());
  timeval rw{5, 0};
  redisSetTimeout(ctx_, rw);
  if (!addr_.password.empty()) {
    // AUTH [user] password. Redis's refusal (WRONGPASS / NOPERM) never
    // carries the password, and neither does our message.
    Reply r(static_cast<redisReply*>(
        addr_.user.empty()
            ? redisCommand(ctx_, "AUTH %b", addr_.password.data(), addr_.password.size())
            : redisCommand(ctx_, "AUTH %b %b", addr_.user.data(), addr_.user.size(),
                           addr_.password.data(), addr_.password.size())));
    if (!r) return drop("auth");
    if (r->type == REDIS_REPLY_ERROR) {
      const std::string why(r->str, r->len);
      redisFree(ctx_);
      ctx_ = nullptr;
      return make_error(errc::permission_denied,
                        "redis at " + addr_.describe() + " refused the login: " + why);
    }
  }
  if (addr_.db != 0) {
    Reply r(static_cast<redisReply*>(redisCommand(ctx_, "SELECT %d", addr_.db)));
    if (!r || r->type == REDIS_REPLY_ERROR) return drop("select db");
  }
  for (Script* s : scripts_) {
    Reply r(static_cast<redisReply*>(
        redisCommand(ctx_, "SCRIPT LOAD %b", s->source.data(), s->source.size())));
    if (!r) return drop("script load");
    if (r->type != REDIS_REPLY_STRING)
      return make_error(errc::internal,
                        "redis script load failed: " + std::string(r->str ? r->str : "?"));
    // Scripts are shared by every connection; the SHA is the same for all.
    static std::mutex sha_mu;
    std::lock_guard lk(sha_mu);
    if (s->sha.empty()) s->sha.assign(r->str, r->len);
  }
  return Status::Ok();
}

namespace {
std::vector<const char*> argv_ptrs(const std::vector<std::string>& argv,
                                   std::vector<size_t>& lens) {
  std::vector<const char*> p;
  p.reserve(argv.size());
  lens.clear();
  for (const auto& a : argv) {
    p.push_back(a.data());
    lens.push_back(a.size());
  }
  return p;
}
}  // namespace

Result<Reply> RedisConnection::command(const std::vector<std::string>& argv) {
  if (auto st = ensure(); !st) return st.error();
  std::vector<size_t> lens;
  auto p = argv_ptrs(argv, lens);
  Reply r(static_cast<redisReply*>(
      redisCommandArgv(ctx_, static_cast<int>(argv.size()), p.data(), lens.data())));
  if (!r) return drop(argv.empty() ? "command" : argv[0]);
  if (r->type == REDIS_REPLY_ERROR) return reply_error(r.get());
  return r;
}

void RedisConnection::append(const std::vector<std::string>& argv) {
  if (!ctx_) return;
  std::vector<size_t> lens;
  auto p = argv_ptrs(argv, lens);
  redisAppendCommandArgv(ctx_, static_cast<int>(argv.size()), p.data(), lens.data());
}

Result<Reply> RedisConnection::get_reply() {
  if (!ctx_) return make_error(errc::unavailable, "redis not connected");
  void* raw = nullptr;
  if (redisGetReply(ctx_, &raw) != REDIS_OK || !raw) return drop("pipeline");
  Reply r(static_cast<redisReply*>(raw));
  if (r->type == REDIS_REPLY_ERROR) return reply_error(r.get());
  return r;
}

std::vector<std::string> RedisConnection::evalsha(const Script& script,
                                                  std::vector<std::string> args) {
  std::vector<std::string> argv;
  argv.reserve(args.size() + 3);
  argv.push_back("EVALSHA");
  argv.push_back(script.sha);
  argv.push_back("0");
  for (auto& a : args) argv.push_back(std::move(a));
  return argv;
}

RedisPool::RedisPool(RedisAddress addr, std::vector<Script*> scripts, std::size_t max_idle)
    : addr_(std::move(addr)), scripts_(std::move(scripts)), max_idle_(max_idle) {}

RedisPool::Lease RedisPool::acquire() {
  {
    std::lock_guard lk(mu_);
    if (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      return Lease(*this, std::move(c));
    }
  }
  return Lease(*this, std::make_unique<RedisConnection>(addr_, scripts_));
}

RedisPool::Lease::~Lease() {
  if (!c_ || !c_->healthy()) return;
  std::lock_guard lk(pool_.mu_);
  if (pool_.idle_.size() < pool_.max_idle_) pool_.idle_.push_back(std::move(c_));
}

}  // namespace supaplane::projection
