#include "limits.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstring>
#include <thread>

#include "supaplane/auth/password.hpp"
#include "supaplane/core/ids.hpp"

namespace supaplane::api {

RateLimiter::RateLimiter(double per_minute, double burst, const Clock& clock, std::size_t max_keys)
    : per_ms_(per_minute / 60'000.0),
      burst_(std::max(1.0, burst)),
      clock_(clock),
      max_keys_(std::max<std::size_t>(1, max_keys)) {}

bool RateLimiter::allow(const std::string& key) {
  if (per_ms_ <= 0) return true;
  const std::int64_t now = clock_.now_unix_ms();
  std::lock_guard lk(mu_);
  auto it = buckets_.find(key);
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_keys_) prune(now);
    it = buckets_.emplace(key, Bucket{burst_, now}).first;
  }
  Bucket& b = it->second;
  if (now > b.at_ms) {
    b.tokens = std::min(burst_, b.tokens + static_cast<double>(now - b.at_ms) * per_ms_);
    b.at_ms = now;
  }
  if (b.tokens < 1.0) return false;
  b.tokens -= 1.0;
  return true;
}

void RateLimiter::prune(std::int64_t now_ms) {
  // A bucket that has refilled completely is the same as no bucket.
  const double full_after_ms = burst_ / per_ms_;
  std::erase_if(buckets_, [&](const auto& kv) {
    return static_cast<double>(now_ms - kv.second.at_ms) >= full_after_ms;
  });
  if (buckets_.size() < max_keys_) return;
  // Still full (a flood of distinct keys): drop the older half.
  std::vector<std::int64_t> ages;
  ages.reserve(buckets_.size());
  for (const auto& [k, b] : buckets_) ages.push_back(b.at_ms);
  auto mid = ages.begin() + static_cast<std::ptrdiff_t>(ages.size() / 2);
  std::nth_element(ages.begin(), mid, ages.end());
  const std::int64_t cutoff = *mid;
  std::erase_if(buckets_, [&](const auto& kv) { return kv.second.at_ms <= cutoff; });
}

std::size_t RateLimiter::size() {
  std::lock_guard lk(mu_);
  return buckets_.size();
}

ConcurrencyGate::ConcurrencyGate(int concurrent, int max_waiting, int wait_ms)
    : concurrent_(std::max(1, concurrent)),
      max_waiting_(std::max(0, max_waiting)),
      wait_ms_(std::max(0, wait_ms)) {}

ConcurrencyGate::Slot::~Slot() {
  if (g_) g_->leave();
}

std::optional<ConcurrencyGate::Slot> ConcurrencyGate::enter() {
  std::unique_lock lk(mu_);
  if (active_ < concurrent_) {
    ++active_;
    return Slot(this);
  }
  if (waiting_ >= max_waiting_) return std::nullopt;
  ++waiting_;
  const bool got =
      cv_.wait_for(lk, std::chrono::milliseconds(wait_ms_), [&] { return active_ < concurrent_; });
  --waiting_;
  if (!got) return std::nullopt;
  ++active_;
  return Slot(this);
}

void ConcurrencyGate::leave() {
  {
    std::lock_guard lk(mu_);
    --active_;
  }
  cv_.notify_one();
}

int ConcurrencyGate::active() {
  std::lock_guard lk(mu_);
  return active_;
}

std::string peer_host(const std::string& peer) {
  std::string_view p = peer;
  if (p.starts_with("ipv4:")) {
    p.remove_prefix(5);
    return std::string(p.substr(0, p.rfind(':')));
  }
  if (p.starts_with("ipv6:")) {
    p.remove_prefix(5);
    if (p.starts_with("[")) {
      const auto close = p.find(']');
      if (close != std::string_view::npos) return std::string(p.substr(1, close - 1));
    }
    return std::string(p);
  }
  return std::string(p);  // unix:..., or a form we do not know: the whole peer
}

namespace {
/// An address as 16 bytes (IPv4 mapped into IPv6), or nullopt.
std::optional<std::array<unsigned char, 16>> ip_bytes(const std::string& s) {
  std::array<unsigned char, 16> out{};
  in_addr v4{};
  if (::inet_pton(AF_INET, s.c_str(), &v4) == 1) {
    out[10] = out[11] = 0xff;
    std::memcpy(out.data() + 12, &v4, 4);
    return out;
  }
  in6_addr v6{};
  if (::inet_pton(AF_INET6, s.c_str(), &v6) == 1) {
    std::memcpy(out.data(), &v6, 16);
    return out;
  }
  return std::nullopt;
}
}  // namespace

bool address_in(const std::string& address, const std::string& entry) {
  const auto slash = entry.find('/');
  const auto a = ip_bytes(address);
  const auto net = ip_bytes(entry.substr(0, slash));
  if (!a || !net) return address == entry;
  int bits = 128;
  if (slash != std::string::npos) {
    int prefix = -1;
    const std::string p = entry.substr(slash + 1);
    const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), prefix);
    if (ec != std::errc() || end != p.data() + p.size() || prefix < 0) return false;
    const bool v4 = entry.find(':') == std::string::npos;
    bits = v4 ? 96 + prefix : prefix;
    if (bits > 128) return false;
  }
  for (int i = 0; i < 16 && bits > 0; ++i, bits -= 8) {
    const unsigned char mask = bits >= 8 ? 0xff : static_cast<unsigned char>(0xff << (8 - bits));
    if (((*a)[i] & mask) != ((*net)[i] & mask)) return false;
  }
  return true;
}

std::string caller_address(const grpc::ServerContextBase& sc,
                           const std::vector<std::string>& trusted_proxies) {
  const std::string host = peer_host(sc.peer());
  if (std::none_of(trusted_proxies.begin(), trusted_proxies.end(),
                   [&](const std::string& t) { return address_in(host, t); }))
    return host;
  const auto& md = sc.client_metadata();
  auto it = md.find("x-forwarded-for");
  if (it == md.end()) return host;
  std::string_view v(it->second.data(), it->second.size());
  v = v.substr(0, v.find(','));
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
  if (v.empty() || v.size() > 64) return host;
  return std::string(v);
}

bool StreamCounter::acquire(const std::string& key) {
  std::lock_guard lk(mu_);
  int& n = open_[key];
  if (max_ > 0 && n >= max_) {
    if (n == 0) open_.erase(key);
    return false;
  }
  ++n;
  return true;
}

void StreamCounter::release(const std::string& key) {
  std::lock_guard lk(mu_);
  auto it = open_.find(key);
  if (it == open_.end()) return;
  if (--it->second <= 0) open_.erase(it);
}

Status QuotaLedger::reserve(const std::string& account, bool free, TenantCount counted,
                            const std::set<std::string>& seen, int max_free, int max_total) {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lk(mu_);
  auto& mine = pending_[account];
  std::erase_if(mine, [&](const Pending& p) { return !p.ref.empty() && now - p.done > kRemember; });
  // Creates this read does not show yet count on top of it.
  TenantCount n = counted;
  for (const auto& p : mine) {
    if (!p.ref.empty() && seen.count(p.ref)) continue;
    ++n.total;
    if (p.free) ++n.free;
  }
  Status verdict = Status::Ok();
  if (max_total > 0 && n.total >= max_total)
    verdict = make_error(errc::resource_exhausted,
                         "this account has " + std::to_string(n.total) +
                             " tenants, the most it may have; delete one first");
  else if (free && max_free > 0 && n.free >= max_free)
    verdict =
        make_error(errc::resource_exhausted,
                   "this account has " + std::to_string(n.free) +
                       " FREE tenants, the most it may have; delete one or choose a paid plan");
  if (verdict) mine.push_back(Pending{free, {}, {}});
  if (mine.empty()) pending_.erase(account);
  return verdict;
}

void QuotaLedger::finish(const std::string& account, bool free, const std::string& ref) {
  std::lock_guard lk(mu_);
  auto it = pending_.find(account);
  if (it == pending_.end()) return;
  auto& mine = it->second;
  auto p = std::find_if(mine.begin(), mine.end(),
                        [&](const Pending& x) { return x.ref.empty() && x.free == free; });
  if (p == mine.end()) return;
  // A failed create, or a repeated request answering with a tenant already
  // remembered, takes no place of its own.
  if (ref.empty() ||
      std::any_of(mine.begin(), mine.end(), [&](const Pending& x) { return x.ref == ref; })) {
    mine.erase(p);
  } else {
    p->ref = ref;
    p->done = std::chrono::steady_clock::now();
  }
  if (mine.empty()) pending_.erase(it);
}

namespace {
std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    std::size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    std::string item = s.substr(start, end - start);
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    if (!item.empty()) out.push_back(item);
    start = end + 1;
  }
  return out;
}
}  // namespace

Limits::Limits(int auth_concurrency, int auth_max_waiting, int auth_wait_ms, double per_address,
               double per_email, const std::string& proxies, int watch_per_account,
               const Clock& clock)
    : hashing(auth_concurrency > 0
                  ? auth_concurrency
                  : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())),
              auth_max_waiting, auth_wait_ms),
      per_address(per_address, per_address, clock),
      per_email(per_email, per_email, clock),
      trusted_proxies(split_list(proxies)),
      watchers(watch_per_account) {
  // A hash of a password nobody knows, with the parameters real ones use.
  auto h = auth::hash_password(ids::random_hex_id());
  if (h) decoy_hash = std::move(*h);
}

}  // namespace supaplane::api
