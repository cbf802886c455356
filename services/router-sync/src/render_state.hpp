#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "edge_auth.hpp"
#include "render.hpp"
#include "supaplane/core/result.hpp"

namespace supaplane::router {

/// One tenant as router-sync held it when it stopped: its routes (after the
/// endpoint patterns), the keys generation it wants, the hash and size of
/// its file, its part of the HTTP body, and its installed keys (hashes and
/// the sealed JWT secret only; `keys_generation` -1 when none were installed).
struct SavedTenant {
  RouteTenant route{};
  std::int64_t want{-1};
  std::uint64_t yaml_hash{0};
  std::uint64_t yaml_size{0};
  TenantJson json{};
  EdgeKeys keys{};  ///< jwt_secret always empty: only the sealed form is saved
};

/// router-sync's rendered state, saved on a clean stop next to the manifest
/// so that a restart where nothing changed need not read every tenant and
/// key from Redis and render them again. Valid only for the projection it
/// was built from: the same live generation at the same checkpoint, and the
/// same rendering options.
struct RenderState {
  static constexpr const char* kFile = ".supaplane-render-state";
  std::string generation{};
  std::uint64_t checkpoint{0};
  std::string fingerprint{};  ///< render_fingerprint of the options it was rendered with
  std::vector<SavedTenant> tenants{};

  bool matches(std::string_view gen, std::uint64_t cp, std::string_view fp) const {
    return generation == gen && checkpoint == cp && fingerprint == fp;
  }
};

/// Everything besides the tenants that a tenant's file and JSON part depend on.
std::string render_fingerprint(const RenderOptions& o, const EndpointPattern& gateway,
                               const EndpointPattern& db);

/// A header line, a checksum (SipHash-2-4 of the body) and the body:
/// length-prefixed fields.
std::string encode_render_state(const RenderState& s);
/// `corrupt` when the header, the checksum or any field is wrong (a cut
/// short or edited file is never half used).
Result<RenderState> decode_render_state(std::string_view bytes);
/// The same without keeping the tenants: `head` gets the state without
/// them, then (unless it returns false) `each` gets every tenant in turn, in
/// the order saved (a callee may move from it). The checksum is checked
/// before either is called, but a format error can still end the walk part
/// way: apply nothing irreversible until it returns Ok.
Status walk_render_state(std::string_view bytes,
                         const std::function<bool(const RenderState&)>& head,
                         const std::function<void(SavedTenant&)>& each);

}  // namespace supaplane::router
