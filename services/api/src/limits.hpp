#pragma once
// What keeps the api answering under abuse: password hashing (argon2id, tens
// of MiB each) under a concurrency cap, token-bucket rate limits per caller
// address and per e-mail, the caller's address itself, and the number of
// open watch streams per account. All in memory, per replica.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "supaplane/core/result.hpp"
#include "supaplane/core/time.hpp"

namespace supaplane::api {

/// Token buckets keyed by a string. A bucket holds up to `burst` tokens and
/// refills `per_minute` tokens a minute; each allowed call takes one.
/// Memory is bounded: beyond `max_keys` buckets, full ones (indistinguishable
/// from absent ones) are dropped first, then the oldest.
class RateLimiter {
 public:
  /// per_minute <= 0 = no limit.
  RateLimiter(double per_minute, double burst, const Clock& clock, std::size_t max_keys = 100'000);
  /// Takes a token for `key`; false when its bucket is empty.
  bool allow(const std::string& key);
  std::size_t size();

 private:
  struct Bucket {
    double tokens{0};
    std::int64_t at_ms{0};
  };
  void prune(std::int64_t now_ms);
  double per_ms_;
  double burst_;
  const Clock& clock_;
  std::size_t max_keys_;
  std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;
};

/// At most `concurrent` holders at a time; at most `max_waiting` callers
/// wait for a slot, each at most `wait_ms`. Beyond that a caller is turned
/// away at once, so a flood costs neither memory nor threads.
class ConcurrencyGate {
 public:
  ConcurrencyGate(int concurrent, int max_waiting, int wait_ms);

  /// Released on destruction.
  class Slot {
   public:
    explicit Slot(ConcurrencyGate* g) : g_(g) {}
    Slot(Slot&& o) noexcept : g_(o.g_) { o.g_ = nullptr; }
    Slot& operator=(Slot&&) = delete;
    Slot(const Slot&) = delete;
    ~Slot();

   private:
    ConcurrencyGate* g_;
  };
  /// A slot, or nullopt when too many wait already or the wait ran out.
  std::optional<Slot> enter();
  int active();
  /// Holders plus waiters: the callers that may be inside the gate at once.
  int capacity() const { return concurrent_ + max_waiting_; }

 private:
  void leave();
  int concurrent_;
  int max_waiting_;
  int wait_ms_;
  std::mutex mu_;
  std::condition_variable cv_;
  int active_{0};
  int waiting_{0};
};

/// The caller's address for rate limits: the peer's host, or the first
/// `x-forwarded-for` entry when the peer is one of `trusted_proxies` (the
/// console's bridge sets it to its browser's address).
std::string caller_address(const grpc::ServerContextBase& sc,
                           const std::vector<std::string>& trusted_proxies);
/// Whether `address` is `entry`: an address, or a network in CIDR form
/// ("10.0.0.0/8", "fd00::/8"); IPv4 also matches its IPv4-mapped IPv6 form.
bool address_in(const std::string& address, const std::string& entry);
/// "ipv4:127.0.0.1:5000" → "127.0.0.1", "ipv6:[::1]:5000" → "::1".
std::string peer_host(const std::string& peer);

/// Open streams per key (an account), at most `max_per_key` each.
class StreamCounter {
 public:
  explicit StreamCounter(int max_per_key) : max_(max_per_key) {}
  bool acquire(const std::string& key);
  void release(const std::string& key);

 private:
  int max_;
  std::mutex mu_;
  std::map<std::string, int> open_;
};

/// Tenants of one account, for quotas.
struct TenantCount {
  int free{0};
  int total{0};
};

/// The creates this replica has accepted for each account, so that a burst
/// of CreateTenant calls cannot slip past a quota between an append and its
/// projection. A reader counts every one its own projection read does not
/// show; they are forgotten a while after their append (the projection
/// applies within milliseconds).
class QuotaLedger {
 public:
  static constexpr std::chrono::seconds kRemember{30};
  /// `counted`: the account's tenants (not deleted) in the projection;
  /// `seen`: every ref that read had for it (deleted ones too).
  /// Reserves one more if the limits allow; else the error names the limit.
  Status reserve(const std::string& account, bool free, TenantCount counted,
                 const std::set<std::string>& seen, int max_free, int max_total);
  /// The create finished: the new tenant's ref, or "" if it failed.
  void finish(const std::string& account, bool free, const std::string& ref);

 private:
  struct Pending {
    bool free{false};
    std::string ref;  ///< "" while the append is in flight
    std::chrono::steady_clock::time_point done{};
  };
  std::mutex mu_;
  std::map<std::string, std::vector<Pending>> pending_;
};

/// The api's limits, built from its options.
struct Limits {
  Limits(int auth_concurrency, int auth_max_waiting, int auth_wait_ms, double per_address,
         double per_email, const std::string& trusted_proxies, int watch_per_account,
         const Clock& clock);
  ConcurrencyGate hashing;
  RateLimiter per_address;
  RateLimiter per_email;
  std::vector<std::string> trusted_proxies;
  StreamCounter watchers;
  QuotaLedger quota;
  /// Verified against for an unknown e-mail, so Login costs the same either way.
  std::string decoy_hash;
};

}  // namespace supaplane::api
