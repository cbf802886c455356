#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "supaplane/core/result.hpp"
#include "supaplane/core/time.hpp"
#include "supaplane/v1/types.pb.h"

namespace supaplane::router {

namespace v1 = ::supaplane::v1;

/// What the edge knows of one tenant's keys: hashes of the opaque keys and
/// the JWT secret (in memory only), either opened or still sealed.
struct EdgeKeys {
  std::int64_t keys_generation{-1};  ///< -1: none (0 is the first generation)
  std::string publishable_hash;
  std::string secret_hash;
  std::string jwt_secret;  ///< opened; empty when only the sealed form is known
  /// As stored in Redis (secrets::seal, the ref as context): opened on first
  /// use by the LazySecrets opener, so a start does not decrypt every
  /// tenant's secret (most are never needed before they are rotated).
  std::string sealed_jwt_secret{};
};

/// One tenant of a bulk install (EdgeAuth::install): its phase, and its
/// keys when it has any (keys_generation >= 0).
struct EdgeTenant {
  std::string ref;
  v1::Phase phase{v1::PHASE_UNSPECIFIED};
  EdgeKeys keys{};
};

/// How the edge opens sealed JWT secrets, and how many opened ones it keeps.
struct LazySecrets {
  /// Opens `sealed` (bound to `ref`); an error when it does not open.
  std::function<Result<std::string>(const std::string& ref, std::string_view sealed)> open{};
  /// Told (outside every lock of the edge) of a tenant whose sealed secret
  /// did not open; its keys are dropped first, so its requests answer 401
  /// until keys are installed again.
  std::function<void(const std::string& ref)> on_unopenable{};
  std::size_t capacity{10000};  ///< opened secrets kept (least recently used go first)
};

/// Counters of the lazily opened secrets (read by the app's metrics).
struct EdgeCounters {
  std::atomic<std::uint64_t> secrets_opened{0};      ///< sealed secrets opened (cache misses)
  std::atomic<std::uint64_t> secrets_unopenable{0};  ///< sealed secrets that did not open
  std::atomic<std::uint64_t> secrets_cached{0};      ///< opened secrets held now
};

/// The answer of one ForwardAuth check.
struct EdgeDecision {
  int status{401};
  std::string authorization;  ///< "Bearer <jwt>" on 200
  std::string reason;         ///< for the JSON body of 401 / 503 (never a key)
};

/// The in-memory table behind `GET /auth/forward`: key hash → (ref, role),
/// ref → phase and signing secret. Many readers (request threads), few
/// writers (the sync thread). Issued tokens are cached per (ref, role) and
/// re-signed after `reissue_s`, so a request costs a hash and a lookup.
class EdgeAuth {
 public:
  EdgeAuth(std::string issuer, std::string base_domain, const Clock& clock,
           std::int64_t token_ttl_s = 300, std::int64_t reissue_s = 30);

  /// Opener of sealed secrets; without one, keys with only a sealed secret
  /// cannot sign (their requests answer 503). Call before serving.
  void set_lazy_secrets(LazySecrets lazy);
  const EdgeCounters& counters() const { return counters_; }

  void set_phase(const std::string& ref, v1::Phase phase);
  /// Installs the keys of `ref` (replacing older ones).
  void set_keys(const std::string& ref, EdgeKeys keys);
  /// set_phase (and set_keys where keys are given) of many tenants at once,
  /// under one lock with the tables sized once: a start installs every
  /// tenant this way.
  void install(std::vector<EdgeTenant> tenants);
  /// Forgets the keys of `ref` (rotation pending, or deleted).
  void drop_keys(const std::string& ref);
  void forget(const std::string& ref);
  /// The keys installed for `ref` (keys_generation -1 if none).
  EdgeKeys keys_of(const std::string& ref) const;
  /// The generation of the keys installed for `ref`, -1 if none.
  std::int64_t keys_generation(const std::string& ref) const;

  /// Checks a request: `host` from X-Forwarded-Host, `apikey` and
  /// `authorization` headers (either may be empty).
  EdgeDecision check(std::string_view host, std::string_view apikey,
                     std::string_view authorization);
  /// The phase of the tenant of `host` (PHASE_UNSPECIFIED if unknown).
  v1::Phase phase_of_host(std::string_view host) const;

 private:
  struct Owner {
    std::string ref;
    bool service_role{false};
  };
  struct Tenant {
    v1::Phase phase{v1::PHASE_UNSPECIFIED};
    EdgeKeys keys;
  };
  struct CachedToken {
    std::string bearer;
    std::int64_t issued{0};
    std::int64_t keys_generation{0};
  };
  struct OpenSecret {
    std::int64_t keys_generation{-1};
    std::string secret{};
    std::list<std::string>::iterator lru{};
  };
  /// The JWT secret of `ref` at keys generation `gen`: the opened one if
  /// installed, else from the cache, else opened now (no lock of the caller
  /// held). Empty when the keys changed meanwhile or the secret does not open.
  std::string secret_of(const std::string& ref, std::int64_t gen);
  void forget_open(const std::string& ref);
  /// Installs `keys` as `ref`'s (in `t`, its entry), their hashes replacing
  /// the old ones. Call with mu_ held exclusively.
  void replace_keys(Tenant& t, const std::string& ref, EdgeKeys keys);
  std::string issuer_;
  std::string base_domain_;
  const Clock& clock_;
  std::int64_t ttl_s_;
  std::int64_t reissue_s_;
  mutable std::shared_mutex mu_;
  std::unordered_map<std::string, Owner> by_hash_;
  std::unordered_map<std::string, Tenant> tenants_;
  std::mutex token_mu_;
  std::map<std::pair<std::string, bool>, CachedToken> tokens_;
  LazySecrets lazy_;
  std::mutex open_mu_;  ///< taken alone, never with mu_ or token_mu_ held
  std::unordered_map<std::string, OpenSecret> open_;
  std::list<std::string> open_lru_;  ///< refs of `open_`, most recently used first
  EdgeCounters counters_;
};

}  // namespace supaplane::router
