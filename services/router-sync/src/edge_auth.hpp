#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "supaplane/core/time.hpp"
#include "supaplane/v1/types.pb.h"

namespace supaplane::router {

namespace v1 = ::supaplane::v1;

/// What the edge knows of one tenant's keys: hashes of the opaque keys and
/// the JWT secret (in memory only).
struct EdgeKeys {
  std::int64_t keys_generation{-1};  ///< -1: none (0 is the first generation)
  std::string publishable_hash;
  std::string secret_hash;
  std::string jwt_secret;
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

  void set_phase(const std::string& ref, v1::Phase phase);
  /// Installs the keys of `ref` (replacing older ones).
  void set_keys(const std::string& ref, EdgeKeys keys);
  /// Forgets the keys of `ref` (rotation pending, or deleted).
  void drop_keys(const std::string& ref);
  void forget(const std::string& ref);
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
};

}  // namespace supaplane::router
