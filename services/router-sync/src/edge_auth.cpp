#include "edge_auth.hpp"

#include <algorithm>

#include "render.hpp"
#include "supaplane/auth/jwt.hpp"
#include "supaplane/secrets/secrets.hpp"

namespace supaplane::router {

namespace {
constexpr std::string_view kPublishable = "sb_publishable_";
constexpr std::string_view kSecret = "sb_secret_";

bool key_chars_ok(std::string_view s) {
  return s.size() >= 16 && s.size() <= 128 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
         });
}

/// An opaque key's shape: prefix and 16..128 URL-safe characters.
bool opaque_key_shape(std::string_view k) {
  if (k.substr(0, kPublishable.size()) == kPublishable)
    return key_chars_ok(k.substr(kPublishable.size()));
  if (k.substr(0, kSecret.size()) == kSecret) return key_chars_ok(k.substr(kSecret.size()));
  return false;
}

/// "Bearer <token>" → token; empty when absent or not a bearer.
std::string_view bearer(std::string_view h) {
  constexpr std::string_view p = "Bearer ";
  if (h.size() <= p.size() || h.substr(0, p.size()) != p) return {};
  return h.substr(p.size());
}

/// Three base64url parts: a JWT (a user's session), passed through to the gateway.
bool jwt_shape(std::string_view t) {
  return std::count(t.begin(), t.end(), '.') == 2 && t.size() < 8192 &&
         std::all_of(t.begin(), t.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-' || c == '.';
         });
}

std::string lower(std::string_view s) {
  std::string r(s);
  std::transform(r.begin(), r.end(), r.begin(), [](unsigned char c) { return std::tolower(c); });
  return r;
}
}  // namespace

EdgeAuth::EdgeAuth(std::string issuer, std::string base_domain, const Clock& clock,
                   std::int64_t token_ttl_s, std::int64_t reissue_s)
    : issuer_(std::move(issuer)),
      base_domain_(std::move(base_domain)),
      clock_(clock),
      ttl_s_(token_ttl_s),
      reissue_s_(reissue_s) {}

void EdgeAuth::set_lazy_secrets(LazySecrets lazy) {
  std::lock_guard lk(open_mu_);
  lazy_ = std::move(lazy);
  if (lazy_.capacity < 1) lazy_.capacity = 1;
}

void EdgeAuth::forget_open(const std::string& ref) {
  std::lock_guard lk(open_mu_);
  auto it = open_.find(ref);
  if (it == open_.end()) return;
  open_lru_.erase(it->second.lru);
  open_.erase(it);
  counters_.secrets_cached = open_.size();
}

std::string EdgeAuth::secret_of(const std::string& ref, std::int64_t gen) {
  decltype(lazy_.open) opener;
  {
    std::lock_guard lk(open_mu_);
    if (auto it = open_.find(ref); it != open_.end() && it->second.keys_generation == gen) {
      open_lru_.splice(open_lru_.begin(), open_lru_, it->second.lru);
      return it->second.secret;
    }
    opener = lazy_.open;
  }
  std::string sealed;
  {
    std::shared_lock lk(mu_);
    auto t = tenants_.find(ref);
    if (t == tenants_.end() || t->second.keys.keys_generation != gen) return {};  // changed
    if (!t->second.keys.jwt_secret.empty()) return t->second.keys.jwt_secret;
    sealed = t->second.keys.sealed_jwt_secret;
  }
  if (sealed.empty() || !opener) return {};
  auto opened = opener(ref, sealed);
  if (!opened || opened->empty()) {
    ++counters_.secrets_unopenable;
    // Not installed, as if never loaded: its requests answer 401 until the
    // sync loads the keys again (from the key store) and installs them.
    {
      std::unique_lock lk(mu_);
      auto t = tenants_.find(ref);
      if (t == tenants_.end() || t->second.keys.keys_generation != gen) return {};  // replaced
      by_hash_.erase(t->second.keys.publishable_hash);
      by_hash_.erase(t->second.keys.secret_hash);
      t->second.keys = EdgeKeys{};
    }
    {
      std::lock_guard tl(token_mu_);
      tokens_.erase({ref, false});
      tokens_.erase({ref, true});
    }
    std::function<void(const std::string&)> told;
    {
      std::lock_guard lk(open_mu_);
      told = lazy_.on_unopenable;
    }
    if (told) told(ref);
    return {};
  }
  ++counters_.secrets_opened;
  std::lock_guard lk(open_mu_);
  auto [it, fresh] = open_.try_emplace(ref);
  if (fresh) {
    open_lru_.push_front(ref);
    it->second.lru = open_lru_.begin();
  } else {
    open_lru_.splice(open_lru_.begin(), open_lru_, it->second.lru);
  }
  it->second.keys_generation = gen;
  it->second.secret = *opened;
  while (open_.size() > lazy_.capacity) {
    open_.erase(open_lru_.back());
    open_lru_.pop_back();
  }
  counters_.secrets_cached = open_.size();
  return std::move(*opened);
}

void EdgeAuth::set_phase(const std::string& ref, v1::Phase phase) {
  std::unique_lock lk(mu_);
  tenants_[ref].phase = phase;
}

void EdgeAuth::replace_keys(Tenant& t, const std::string& ref, EdgeKeys keys) {
  by_hash_.erase(t.keys.publishable_hash);
  by_hash_.erase(t.keys.secret_hash);
  by_hash_[keys.publishable_hash] = Owner{ref, false};
  by_hash_[keys.secret_hash] = Owner{ref, true};
  t.keys = std::move(keys);
}

void EdgeAuth::set_keys(const std::string& ref, EdgeKeys keys) {
  {
    std::unique_lock lk(mu_);
    replace_keys(tenants_[ref], ref, std::move(keys));
  }
  forget_open(ref);
  std::lock_guard tl(token_mu_);
  tokens_.erase({ref, false});
  tokens_.erase({ref, true});
}

void EdgeAuth::install(std::vector<EdgeTenant> batch) {
  {
    std::unique_lock lk(mu_);
    tenants_.reserve(tenants_.size() + batch.size());
    std::size_t with_keys = 0;
    for (const auto& e : batch) with_keys += e.keys.keys_generation >= 0 ? 1 : 0;
    by_hash_.reserve(by_hash_.size() + 2 * with_keys);
    for (auto& e : batch) {
      auto& t = tenants_[e.ref];
      t.phase = e.phase;
      if (e.keys.keys_generation >= 0) replace_keys(t, e.ref, std::move(e.keys));
    }
  }
  // What was opened or issued with the keys these replace.
  {
    std::lock_guard lk(open_mu_);
    if (!open_.empty())
      for (const auto& e : batch)
        if (e.keys.keys_generation >= 0)
          if (auto it = open_.find(e.ref); it != open_.end()) {
            open_lru_.erase(it->second.lru);
            open_.erase(it);
          }
    counters_.secrets_cached = open_.size();
  }
  std::lock_guard tl(token_mu_);
  if (!tokens_.empty())
    for (const auto& e : batch)
      if (e.keys.keys_generation >= 0) {
        tokens_.erase({e.ref, false});
        tokens_.erase({e.ref, true});
      }
}

void EdgeAuth::drop_keys(const std::string& ref) {
  {
    std::unique_lock lk(mu_);
    auto it = tenants_.find(ref);
    if (it == tenants_.end()) return;
    by_hash_.erase(it->second.keys.publishable_hash);
    by_hash_.erase(it->second.keys.secret_hash);
    it->second.keys = EdgeKeys{};
  }
  forget_open(ref);
  std::lock_guard tl(token_mu_);
  tokens_.erase({ref, false});
  tokens_.erase({ref, true});
}

void EdgeAuth::forget(const std::string& ref) {
  drop_keys(ref);
  std::unique_lock lk(mu_);
  tenants_.erase(ref);
}

EdgeKeys EdgeAuth::keys_of(const std::string& ref) const {
  std::shared_lock lk(mu_);
  auto it = tenants_.find(ref);
  return it == tenants_.end() ? EdgeKeys{} : it->second.keys;
}

std::int64_t EdgeAuth::keys_generation(const std::string& ref) const {
  std::shared_lock lk(mu_);
  auto it = tenants_.find(ref);
  return it == tenants_.end() ? -1 : it->second.keys.keys_generation;
}

v1::Phase EdgeAuth::phase_of_host(std::string_view host) const {
  auto ref = ref_of_host(lower(host), base_domain_);
  if (ref.empty()) return v1::PHASE_UNSPECIFIED;
  std::shared_lock lk(mu_);
  auto it = tenants_.find(ref);
  return it == tenants_.end() ? v1::PHASE_UNSPECIFIED : it->second.phase;
}

EdgeDecision EdgeAuth::check(std::string_view host, std::string_view apikey,
                             std::string_view authorization) {
  const std::string ref = ref_of_host(lower(host), base_domain_);
  if (ref.empty()) return {401, {}, "unknown host"};
  std::string_view key = apikey;
  std::string_view pass_through;
  if (key.empty()) {
    key = bearer(authorization);
  } else if (auto b = bearer(authorization); !b.empty() && jwt_shape(b)) {
    pass_through = b;  // a user's session JWT next to the apikey: the gateway checks it
  }
  if (key.empty()) return {401, {}, "no apikey or bearer key"};
  if (!opaque_key_shape(key)) return {401, {}, "malformed key"};
  const std::string hash = secrets::key_hash(key);
  bool service_role = false;
  std::int64_t gen = 0;
  {
    std::shared_lock lk(mu_);
    auto t = tenants_.find(ref);
    if (t == tenants_.end()) return {401, {}, "unknown tenant"};
    if (t->second.phase == v1::PHASE_DELETED) return {401, {}, "unknown tenant"};
    if (!serves_api(t->second.phase)) return {503, {}, v1::Phase_Name(t->second.phase)};
    auto o = by_hash_.find(hash);
    if (o == by_hash_.end() || o->second.ref != ref) return {401, {}, "invalid key"};
    service_role = o->second.service_role;
    gen = t->second.keys.keys_generation;
  }
  const std::int64_t now = clock_.now_unix_ms() / 1000;
  auto fresh = [&](const CachedToken& c) {
    return !c.bearer.empty() && c.keys_generation == gen && now - c.issued < reissue_s_ &&
           now >= c.issued;
  };
  if (pass_through.empty()) {
    // Most requests end here: the token issued a moment ago, no secret needed.
    std::lock_guard tl(token_mu_);
    if (auto c = tokens_.find({ref, service_role}); c != tokens_.end() && fresh(c->second))
      return {200, c->second.bearer, {}};
  }
  const std::string secret = secret_of(ref, gen);
  if (secret.empty()) return {401, {}, "invalid key"};  // rotated meanwhile, or not openable
  if (!pass_through.empty()) {
    // A user's session: it must be the tenant's own (its JWT secret signed
    // it, any `ref` names this tenant) and unexpired, checked here so that a
    // forged or foreign token never reaches the tenant's services.
    auto claims = auth::verify_hs256(secret, std::string(pass_through), now);
    if (!claims) return {401, {}, "invalid bearer token"};
    if (claims->exp <= 0) return {401, {}, "bearer token without expiry"};
    if (!claims->ref.empty() && claims->ref != ref)
      return {401, {}, "bearer token of another tenant"};
    return {200, "Bearer " + std::string(pass_through), {}};
  }
  auth::JwtClaims claims;
  claims.role = service_role ? "service_role" : "anon";
  claims.iss = issuer_;
  claims.ref = ref;
  claims.iat = now;
  claims.exp = now + ttl_s_;
  auto tok = auth::sign_hs256(secret, claims);
  if (!tok) return {500, {}, "cannot sign"};
  std::lock_guard tl(token_mu_);
  auto& c = tokens_[{ref, service_role}];
  if (!fresh(c)) {  // another thread may have signed meanwhile: keep one token
    c.bearer = "Bearer " + *tok;
    c.issued = now;
    c.keys_generation = gen;
  }
  return {200, c.bearer, {}};
}

}  // namespace supaplane::router
