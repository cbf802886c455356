#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "supaplane/core/result.hpp"
#include "supaplane/v1/types.pb.h"

namespace supaplane::router {

namespace v1 = ::supaplane::v1;

/// What routing needs of one tenant (a slice of TenantState).
struct RouteTenant {
  std::string ref;
  v1::Phase phase{v1::PHASE_UNSPECIFIED};
  v1::Plan plan{v1::PLAN_UNSPECIFIED};
  std::string gateway_url;
  std::string db_host{};      ///< public database host (docker driver: db.<ref>.<base-domain>)
  std::string db_upstream{};  ///< the container the edge forwards it to (host:port)
};
RouteTenant route_tenant(const v1::TenantState& s);

/// Where an outcome event may send a tenant's traffic: a regular
/// expression (matched against the whole value) in which `{ref}` stands for
/// the tenant's own ref, so an event can never route one tenant's requests,
/// and the JWTs minted for them, to another tenant or elsewhere. Capture
/// groups other than `{ref}` are not allowed (use `(?:...)`).
class EndpointPattern {
 public:
  /// invalid_argument naming `what` when `pattern` is not a regex or has no `{ref}`.
  static Result<EndpointPattern> compile(const std::string& pattern, const std::string& what);
  bool allows(const std::string& ref, const std::string& value) const;
  const std::string& source() const { return source_; }

 private:
  std::string source_;
  std::shared_ptr<const std::regex> re_;
};

/// SUPAPLANE_GATEWAY_URL_PATTERN's default: both drivers' gateway URLs.
inline const char* kDefaultGatewayUrlPattern =
    R"(http://(?:{ref}\.gateway\.internal|sp-{ref}-[a-z0-9]+):[0-9]{1,5})";
/// SUPAPLANE_DB_UPSTREAM_PATTERN's default: the docker driver's db route.
inline const char* kDefaultDbUpstreamPattern = R"(sp-{ref}-[a-z0-9]+:[0-9]{1,5})";

/// Phases in which the tenant's stack serves its API: ACTIVE, and
/// RECONCILING (a running stack converging a change such as a key rotation
/// or a plan change must not go dark).
bool serves_api(v1::Phase p);

/// Traefik rate limit of one plan (requests per second, burst).
struct RateLimit {
  int average{0};
  int burst{0};
};

/// Everything the rendering depends on besides the tenants. Plain values.
struct RenderOptions {
  std::string base_domain{"supabase.localhost"};
  std::string console_url{"http://127.0.0.1:3000"};
  std::string self_url{"http://127.0.0.1:8082"};  ///< how Traefik reaches router-sync
  std::vector<std::string> entry_points;          ///< empty: Traefik's default (all)
  /// The TCP entrypoint of tenants' database routes (HostSNI, TLS at the edge).
  std::string db_entry_point{"postgres"};
  std::map<v1::Plan, RateLimit> rate_limits{
      {v1::PLAN_FREE, {20, 40}}, {v1::PLAN_STARTER, {100, 200}}, {v1::PLAN_PRO, {500, 1000}}};
};

/// The API path prefixes that go to a tenant's gateway.
const std::vector<std::string>& api_prefixes();

/// Lower-case plan name used in middleware names ("free", "starter", "pro").
std::string plan_slug(v1::Plan p);

/// The shared part: console and maintenance services, the ForwardAuth
/// middleware, one rate-limit middleware per plan.
nlohmann::json render_base(const RenderOptions& o);
/// One tenant's routers and services; null when the tenant has no routes
/// (deleted, or no phase yet).
nlohmann::json render_tenant(const RouteTenant& t, const RenderOptions& o);

/// Merges `part` (a dynamic configuration) into `into`.
void merge_config(nlohmann::json& into, const nlohmann::json& part);

/// One tenant's part of the HTTP provider's body, as text: the members it
/// adds to each section (`"name":{...}` joined by commas, no braces), in one
/// string. About 500 bytes a tenant, where the document was about 7 KiB.
class TenantJson {
 public:
  enum Section { kHttpRouters, kHttpServices, kTcpRouters, kTcpServices, kSections };
  std::string_view section(Section s) const {
    const std::uint32_t begin = s == 0 ? 0 : end_[s - 1];
    return std::string_view(text_).substr(begin, end_[s] - begin);
  }
  std::size_t size() const { return text_.size(); }
  const std::string& text() const { return text_; }
  std::uint32_t end(Section s) const { return end_[s]; }
  /// From `text` and the end of each section in it; false (and `out`
  /// untouched) unless the ends are in order and within the text.
  static bool from_parts(std::string text, const std::uint32_t (&ends)[kSections],
                         TenantJson& out) {
    std::uint32_t prev = 0;
    for (auto e : ends) {
      if (e < prev || e > text.size()) return false;
      prev = e;
    }
    if (prev != text.size()) return false;
    out.text_ = std::move(text);
    for (int i = 0; i < kSections; ++i) out.end_[i] = ends[i];
    return true;
  }

 private:
  friend bool render_tenant_text(const RouteTenant&, const RenderOptions&, std::string*,
                                 TenantJson*);
  std::string text_{};
  std::uint32_t end_[kSections]{};
};

/// The same configuration as `render_tenant`, written straight as text: the
/// tenant's file (`yaml`, the bytes `to_yaml(render_tenant(t, o))` gives) and
/// its JSON parts (`json`); either may be null. False (outputs left empty)
/// when the tenant has no routes. Every inserted value goes through the one
/// YAML and the one JSON string escaper; refs and endpoints are validated
/// before they get here (a ref by the projection, endpoints by their
/// patterns), so escaping is the second line, not the first.
bool render_tenant_text(const RouteTenant& t, const RenderOptions& o, std::string* yaml,
                        TenantJson* json);

/// The HTTP provider's body: `base` and every tenant's configuration as one
/// JSON document (what the directory holds, merged).
std::string dynamic_json(const nlohmann::json& base,
                         const std::map<std::string, TenantJson>& tenants);

/// The escapers every rendered value goes through, exposed for their tests:
/// a YAML double-quoted scalar and a JSON string, quotes included.
void yaml_quoted(std::string& out, std::string_view v);
void json_quoted(std::string& out, std::string_view v);

/// YAML of a dynamic configuration, deterministic (keys sorted), with a header comment.
std::string to_yaml(const nlohmann::json& config);

/// File names in the watched directory.
inline const char* kBaseFile = "supaplane-base.yml";
std::string tenant_file(const std::string& ref);
/// The ref of a tenant file name, empty if `name` is not one.
std::string ref_of_file(const std::string& name);

/// Valid host of a tenant: `<ref>.<base_domain>` → ref (empty otherwise).
std::string ref_of_host(std::string_view host, std::string_view base_domain);

}  // namespace supaplane::router
