#include "render_state.hpp"

#include <cstring>

#include "supaplane/core/ids.hpp"
#include "traefik_dir.hpp"

namespace supaplane::router {

namespace {
constexpr std::string_view kHeader = "supaplane-router-sync render state 1\n";

class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}
  void u64(std::uint64_t v) {
    char b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<char>((v >> (8 * i)) & 0xff);
    out_.append(b, 8);
  }
  void str(std::string_view s) {
    u64(s.size());
    out_.append(s);
  }

 private:
  std::string& out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool u64(std::uint64_t& v) {
    if (in_.size() - pos_ < 8) return false;
    v = 0;
    for (int i = 0; i < 8; ++i)
      v |= static_cast<std::uint64_t>(static_cast<unsigned char>(in_[pos_ + i])) << (8 * i);
    pos_ += 8;
    return true;
  }
  bool i64(std::int64_t& v) {
    std::uint64_t u = 0;
    if (!u64(u)) return false;
    v = static_cast<std::int64_t>(u);
    return true;
  }
  bool str(std::string& s) {
    std::uint64_t n = 0;
    if (!u64(n) || n > in_.size() - pos_) return false;
    s.assign(in_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  bool done() const { return pos_ == in_.size(); }

 private:
  std::string_view in_;
  std::size_t pos_{0};
};

Error corrupt(const std::string& what) { return make_error(errc::corrupt, "render state " + what); }
}  // namespace

std::string render_fingerprint(const RenderOptions& o, const EndpointPattern& gateway,
                               const EndpointPattern& db) {
  std::string f;
  Writer w(f);
  w.str("render 1");  // bump when the rendering of a tenant changes
  w.str(o.base_domain);
  w.u64(o.entry_points.size());
  for (const auto& e : o.entry_points) w.str(e);
  w.str(o.db_entry_point);
  w.str(gateway.source());
  w.str(db.source());
  return f;
}

std::string encode_render_state(const RenderState& s) {
  std::string body;
  std::size_t guess = 256;
  for (const auto& t : s.tenants) guess += 320 + t.json.size() + t.keys.sealed_jwt_secret.size();
  body.reserve(guess);
  Writer w(body);
  w.str(s.generation);
  w.u64(s.checkpoint);
  w.str(s.fingerprint);
  w.u64(s.tenants.size());
  for (const auto& t : s.tenants) {
    w.str(t.route.ref);
    w.u64(static_cast<std::uint64_t>(t.route.phase));
    w.u64(static_cast<std::uint64_t>(t.route.plan));
    w.str(t.route.gateway_url);
    w.str(t.route.db_host);
    w.str(t.route.db_upstream);
    w.u64(static_cast<std::uint64_t>(t.want));
    w.u64(t.yaml_hash);
    w.u64(t.yaml_size);
    w.str(t.json.text());
    for (int i = 0; i < TenantJson::kSections; ++i)
      w.u64(t.json.end(static_cast<TenantJson::Section>(i)));
    w.u64(static_cast<std::uint64_t>(t.keys.keys_generation));
    w.str(t.keys.publishable_hash);
    w.str(t.keys.secret_hash);
    w.str(t.keys.sealed_jwt_secret);
  }
  std::string out(kHeader);
  out.reserve(kHeader.size() + 8 + body.size());
  Writer(out).u64(TraefikDir::content_hash(body));
  out += body;
  return out;
}

Status walk_render_state(std::string_view bytes,
                         const std::function<bool(const RenderState&)>& head,
                         const std::function<void(SavedTenant&)>& each) {
  if (bytes.substr(0, kHeader.size()) != kHeader) return corrupt("header is not ours");
  Reader sum_reader(bytes.substr(kHeader.size(), 8));
  std::uint64_t sum = 0;
  if (!sum_reader.u64(sum)) return corrupt("cut short");
  const std::string_view body = bytes.substr(kHeader.size() + 8);
  if (TraefikDir::content_hash(body) != sum) return corrupt("checksum does not match");
  Reader r(body);
  RenderState s;
  std::uint64_t n = 0;
  if (!r.str(s.generation) || !r.u64(s.checkpoint) || !r.str(s.fingerprint) || !r.u64(n))
    return corrupt("cut short");
  if (n > body.size()) return corrupt("tenant count is impossible");
  if (!head(s)) return Status::Ok();
  SavedTenant t;
  std::string json;
  for (std::uint64_t i = 0; i < n; ++i) {
    std::uint64_t phase = 0, plan = 0;
    std::uint64_t ends[TenantJson::kSections] = {};
    bool ok = r.str(t.route.ref) && r.u64(phase) && r.u64(plan) && r.str(t.route.gateway_url) &&
              r.str(t.route.db_host) && r.str(t.route.db_upstream) && r.i64(t.want) &&
              r.u64(t.yaml_hash) && r.u64(t.yaml_size) && r.str(json);
    for (auto& e : ends) ok = ok && r.u64(e);
    ok = ok && r.i64(t.keys.keys_generation) && r.str(t.keys.publishable_hash) &&
         r.str(t.keys.secret_hash) && r.str(t.keys.sealed_jwt_secret);
    if (!ok) return corrupt("cut short");
    if (!ids::parse_tenant_ref(t.route.ref)) return corrupt("has an invalid tenant ref");
    if (!v1::Phase_IsValid(static_cast<int>(phase)) || !v1::Plan_IsValid(static_cast<int>(plan)))
      return corrupt("has an unknown phase or plan");
    t.route.phase = static_cast<v1::Phase>(phase);
    t.route.plan = static_cast<v1::Plan>(plan);
    std::uint32_t e32[TenantJson::kSections];
    for (int k = 0; k < TenantJson::kSections; ++k) {
      if (ends[k] > json.size()) return corrupt("has a JSON part out of bounds");
      e32[k] = static_cast<std::uint32_t>(ends[k]);
    }
    if (!TenantJson::from_parts(std::move(json), e32, t.json))
      return corrupt("has a JSON part out of bounds");
    each(t);
    json.clear();
  }
  if (!r.done()) return corrupt("has trailing bytes");
  return Status::Ok();
}

Result<RenderState> decode_render_state(std::string_view bytes) {
  RenderState out;
  auto st = walk_render_state(
      bytes,
      [&out](const RenderState& s) {
        out = s;
        return true;
      },
      [&out](SavedTenant& t) { out.tenants.push_back(std::move(t)); });
  if (!st) return st.error();
  return out;
}

}  // namespace supaplane::router
