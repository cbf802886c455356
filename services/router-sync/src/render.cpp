#include "render.hpp"

#include <cctype>
#include <cstdio>

#include "supaplane/core/ids.hpp"

namespace supaplane::router {

using nlohmann::json;

namespace {
const char* kForwardAuth = "supaplane-forward-auth";
const char* kStripApikey = "supaplane-strip-apikey";
const char* kConsoleService = "supaplane-console";
const char* kMaintenanceService = "supaplane-maintenance";

std::string host_rule(const std::string& host) { return "Host(`" + host + "`)"; }

std::string api_rule(const std::string& host) {
  std::string r = host_rule(host) + " && (";
  bool first = true;
  for (const auto& p : api_prefixes()) {
    if (!first) r += " || ";
    r += "PathPrefix(`" + p + "`)";
    first = false;
  }
  return r + ")";
}

json router(const RenderOptions& o, std::string rule, const std::string& service, int priority,
            json middlewares = json()) {
  json r = {{"rule", std::move(rule)}, {"service", service}, {"priority", priority}};
  if (!o.entry_points.empty()) r["entryPoints"] = o.entry_points;
  if (!middlewares.is_null()) r["middlewares"] = std::move(middlewares);
  return r;
}

json lb(const std::string& url) {
  return {{"loadBalancer", {{"servers", json::array({{{"url", url}}})}, {"passHostHeader", true}}}};
}

bool plain_key(std::string_view k) {
  if (k.empty()) return false;
  for (char c : k)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
  return true;
}

void scalar(std::string& out, const json& j) {
  if (j.is_string())
    yaml_quoted(out, j.get_ref<const std::string&>());  // quoted: "on" or "123" stay strings
  else if (j.is_boolean())
    out += j.get<bool>() ? "true" : "false";
  else if (j.is_null())
    out += "null";
  else if (j.is_number_integer())
    out += std::to_string(j.get<std::int64_t>());
  else
    out += j.dump();
}

/// Compact JSON without nlohmann's serializer (several times slower here);
/// the same bytes as dump() for our configurations.
void emit_json(std::string& out, const json& j) {
  if (j.is_object()) {
    out += '{';
    bool first = true;
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (!first) out += ',';
      first = false;
      json_quoted(out, it.key());
      out += ':';
      emit_json(out, it.value());
    }
    out += '}';
  } else if (j.is_array()) {
    out += '[';
    bool first = true;
    for (const auto& v : j) {
      if (!first) out += ',';
      first = false;
      emit_json(out, v);
    }
    out += ']';
  } else if (j.is_string()) {
    json_quoted(out, j.get_ref<const std::string&>());
  } else if (j.is_number_integer()) {
    out += std::to_string(j.get<std::int64_t>());
  } else if (j.is_boolean()) {
    out += j.get<bool>() ? "true" : "false";
  } else {
    out += j.dump();
  }
}

bool nested(const json& j) { return (j.is_object() || j.is_array()) && !j.empty(); }

/// Block-style YAML, two spaces per level, sequences indented under their key.
void emit(std::string& out, const json& j, std::size_t indent) {
  const std::string pad(indent, ' ');
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      out += pad;
      if (plain_key(it.key()))
        out += it.key();
      else
        yaml_quoted(out, it.key());
      out += ':';
      if (nested(it.value())) {
        out += '\n';
        emit(out, it.value(), indent + 2);
      } else {
        out += ' ';
        if (it.value().is_object())
          out += "{}";
        else if (it.value().is_array())
          out += "[]";
        else
          scalar(out, it.value());
        out += '\n';
      }
    }
  } else if (j.is_array()) {
    for (const auto& v : j) {
      out += pad;
      out += "- ";
      if (v.is_object() && !v.empty()) {
        // The first key on the dash's line, the rest aligned with it.
        std::string inner;
        emit(inner, v, indent + 2);
        out += inner.substr(indent + 2);
      } else if (nested(v)) {
        out += '\n';
        emit(out, v, indent + 2);
      } else {
        scalar(out, v);
        out += '\n';
      }
    }
  }
}
}  // namespace

RouteTenant route_tenant(const v1::TenantState& s) {
  return RouteTenant{s.ref(), s.phase(), s.plan(), s.gateway_url(), s.db_host(), s.db_upstream()};
}

Result<EndpointPattern> EndpointPattern::compile(const std::string& pattern,
                                                 const std::string& what) {
  constexpr std::string_view kRef = "{ref}";
  if (pattern.find(kRef) == std::string::npos)
    return make_error(errc::invalid_argument, what + " must contain {ref}", what);
  std::string re = pattern;
  for (auto at = re.find(kRef); at != std::string::npos; at = re.find(kRef, at))
    re.replace(at, kRef.size(), "([a-z]{20})"), at += 11;
  EndpointPattern p;
  p.source_ = pattern;
  try {
    p.re_ = std::make_shared<const std::regex>(re, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    return make_error(errc::invalid_argument, what + " is not a regular expression: " + e.what(),
                      what);
  }
  return p;
}

bool EndpointPattern::allows(const std::string& ref, const std::string& value) const {
  if (!re_) return false;
  std::smatch m;
  if (!std::regex_match(value, m, *re_)) return false;
  bool some = false;
  for (std::size_t i = 1; i < m.size(); ++i) {
    if (!m[i].matched) continue;
    if (m[i].str() != ref) return false;
    some = true;
  }
  return some;
}

bool serves_api(v1::Phase p) { return p == v1::PHASE_ACTIVE || p == v1::PHASE_RECONCILING; }

const std::vector<std::string>& api_prefixes() {
  static const std::vector<std::string> p = {"/auth/v1",     "/rest/v1",    "/graphql/v1",
                                             "/realtime/v1", "/storage/v1", "/functions/v1"};
  return p;
}

std::string plan_slug(v1::Plan p) {
  switch (p) {
    case v1::PLAN_STARTER:
      return "starter";
    case v1::PLAN_PRO:
      return "pro";
    default:
      return "free";  // unspecified plans are limited like free ones
  }
}

json render_base(const RenderOptions& o) {
  json c;
  c["http"]["services"][kConsoleService] = lb(o.console_url);
  c["http"]["services"][kMaintenanceService] = lb(o.self_url);
  c["http"]["middlewares"][kForwardAuth]["forwardAuth"] = {
      {"address", o.self_url + "/auth/forward"},
      {"trustForwardHeader", false},  // X-Forwarded-Host must be the real Host
      {"authResponseHeaders", json::array({"Authorization"})}};
  // The opaque key stays at the edge: the tenant's services get the JWT the
  // edge put in Authorization, never the key (an empty value removes it).
  c["http"]["middlewares"][kStripApikey]["headers"]["customRequestHeaders"] = {{"apikey", ""}};
  for (const auto& [plan, rl] : o.rate_limits)
    c["http"]["middlewares"]["supaplane-ratelimit-" + plan_slug(plan)]["rateLimit"] = {
        {"average", rl.average}, {"burst", rl.burst}, {"period", "1s"}};
  return c;
}

json render_tenant(const RouteTenant& t, const RenderOptions& o) {
  if (t.phase == v1::PHASE_DELETED || t.phase == v1::PHASE_UNSPECIFIED) return json();
  const std::string host = t.ref + "." + o.base_domain;
  const std::string prefix = "tenant-" + t.ref;
  json c;
  auto& routers = c["http"]["routers"];
  if (t.phase == v1::PHASE_PAUSED || t.phase == v1::PHASE_SUSPENDED) {
    // Every path of the host answers 503 from router-sync's maintenance handler.
    routers[prefix + "-maintenance"] = router(o, host_rule(host), kMaintenanceService, 300);
    return c;
  }
  if (serves_api(t.phase) && !t.gateway_url.empty()) {
    routers[prefix + "-api"] = router(
        o, api_rule(host), prefix + "-gateway", 200,
        json::array({kForwardAuth, kStripApikey, "supaplane-ratelimit-" + plan_slug(t.plan)}));
    c["http"]["services"][prefix + "-gateway"] = lb(t.gateway_url);
  } else {
    // Provisioning, pausing, resuming, deleting, failed: the API answers 503 with the phase.
    routers[prefix + "-api"] = router(o, api_rule(host), kMaintenanceService, 200);
  }
  routers[prefix + "-console"] = router(o, host_rule(host), kConsoleService, 100);
  if (serves_api(t.phase) && !t.db_upstream.empty() && !t.db_host.empty()) {
    // PostgreSQL through the edge: Traefik terminates TLS (PostgreSQL's
    // STARTTLS included) and picks the tenant by SNI.
    json r{{"rule", "HostSNI(`" + t.db_host + "`)"},
           {"service", prefix + "-db"},
           {"entryPoints", json::array({o.db_entry_point})},
           {"tls", json::object()}};
    c["tcp"]["routers"][prefix + "-db"] = r;
    c["tcp"]["services"][prefix + "-db"]["loadBalancer"]["servers"] =
        json::array({json{{"address", t.db_upstream}}});
  }
  return c;
}

namespace {
/// Writes one tenant's configuration as YAML and as JSON members side by
/// side, in the order the document's sorted keys give (so the bytes are the
/// same as rendering the document). Keys are ours (`tenant-<ref>-…`), values
/// go through the escapers.
class TextWriter {
 public:
  TextWriter(std::string* yaml, std::string* json) : y_(yaml), j_(json) {}

  /// Starts a section's member at YAML indent 4 (`http:` / `routers:` above it).
  void member(std::string_view name) {
    if (y_) {
      y_->append(4, ' ');
      key(name);
      *y_ += ":\n";
    }
    if (j_) {
      if (!first_member_) *j_ += ',';
      first_member_ = false;
      json_quoted(*j_, name);
      *j_ += ":{";
    }
    first_field_ = true;
  }
  void end_member() {
    if (j_) *j_ += '}';
  }
  /// Ends a section's run of members (the JSON parts are one per section).
  void end_section() { first_member_ = true; }

  void string_list(std::string_view k, const std::vector<std::string>& vs, std::size_t indent) {
    if (vs.empty()) return;
    if (y_) {
      y_->append(indent, ' ');
      *y_ += k;
      *y_ += ":\n";
      for (const auto& v : vs) {
        y_->append(indent + 2, ' ');
        *y_ += "- ";
        yaml_quoted(*y_, v);
        *y_ += '\n';
      }
    }
    if (j_) {
      field(k);
      *j_ += '[';
      for (std::size_t i = 0; i < vs.size(); ++i) {
        if (i) *j_ += ',';
        json_quoted(*j_, vs[i]);
      }
      *j_ += ']';
    }
  }
  void string(std::string_view k, std::string_view v, std::size_t indent) {
    if (y_) {
      y_->append(indent, ' ');
      *y_ += k;
      *y_ += ": ";
      yaml_quoted(*y_, v);
      *y_ += '\n';
    }
    if (j_) {
      field(k);
      json_quoted(*j_, v);
    }
  }
  void raw(std::string_view k, std::string_view yaml_value, std::string_view json_value,
           std::size_t indent) {
    if (y_) {
      y_->append(indent, ' ');
      *y_ += k;
      *y_ += ": ";
      *y_ += yaml_value;
      *y_ += '\n';
    }
    if (j_) {
      field(k);
      *j_ += json_value;
    }
  }
  /// `k:` opening a nested object.
  void open(std::string_view k, std::size_t indent) {
    if (y_) {
      y_->append(indent, ' ');
      *y_ += k;
      *y_ += ":\n";
    }
    if (j_) {
      field(k);
      *j_ += '{';
    }
    first_field_ = true;
  }
  void close() {
    if (j_) *j_ += '}';
    first_field_ = false;
  }
  /// `servers: [{k: v}]`, the one-element list both load balancers use.
  void servers(std::string_view k, std::string_view v, std::size_t indent) {
    if (y_) {
      y_->append(indent, ' ');
      *y_ += "servers:\n";
      y_->append(indent + 2, ' ');
      *y_ += "- ";
      *y_ += k;
      *y_ += ": ";
      yaml_quoted(*y_, v);
      *y_ += '\n';
    }
    if (j_) {
      field("servers");
      *j_ += "[{";
      json_quoted(*j_, k);
      *j_ += ':';
      json_quoted(*j_, v);
      *j_ += "}]";
    }
  }
  void line(std::string_view l) {
    if (y_) *y_ += l;
  }

 private:
  void key(std::string_view k) {
    if (plain_key(k))
      *y_ += k;
    else
      yaml_quoted(*y_, k);
  }
  void field(std::string_view k) {
    if (!first_field_) *j_ += ',';
    first_field_ = false;
    json_quoted(*j_, k);
    *j_ += ':';
  }

  std::string* y_;
  std::string* j_;
  bool first_member_{true};
  bool first_field_{true};
};

struct RouterText {
  std::string name;
  std::string rule;
  std::string service;
  int priority{-1};  ///< none when negative (TCP routers)
  const std::vector<std::string>* entry_points{nullptr};
  std::vector<std::string> middlewares{};
  bool tls{false};
};

void write_router(TextWriter& w, const RouterText& r) {
  w.member(r.name);
  if (r.entry_points) w.string_list("entryPoints", *r.entry_points, 6);
  w.string_list("middlewares", r.middlewares, 6);
  if (r.priority >= 0) {
    const auto prio = std::to_string(r.priority);
    w.raw("priority", prio, prio, 6);
  }
  w.string("rule", r.rule, 6);
  w.string("service", r.service, 6);
  if (r.tls) w.raw("tls", "{}", "{}", 6);
  w.end_member();
}
}  // namespace

bool render_tenant_text(const RouteTenant& t, const RenderOptions& o, std::string* yaml,
                        TenantJson* json) {
  if (yaml) yaml->clear();
  if (json) {  // keeps its buffer: a caller may render many tenants into one
    json->text_.clear();
    for (auto& e : json->end_) e = 0;
  }
  if (t.phase == v1::PHASE_DELETED || t.phase == v1::PHASE_UNSPECIFIED) return false;
  const std::string host = t.ref + "." + o.base_domain;
  const std::string prefix = "tenant-" + t.ref;
  std::string* jtext = json ? &json->text_ : nullptr;
  if (yaml) {
    yaml->reserve(1536);
    *yaml = "# Generated by supaplane-router-sync. Do not edit: it is rewritten.\n";
  }
  if (jtext) jtext->reserve(768);
  auto end_section = [&](TenantJson::Section s) {
    if (json) json->end_[s] = static_cast<std::uint32_t>(jtext->size());
  };
  const std::vector<std::string>* eps = o.entry_points.empty() ? nullptr : &o.entry_points;
  TextWriter w(yaml, jtext);
  w.line("http:\n  routers:\n");
  if (t.phase == v1::PHASE_PAUSED || t.phase == v1::PHASE_SUSPENDED) {
    write_router(w, {prefix + "-maintenance", host_rule(host), kMaintenanceService, 300, eps});
    end_section(TenantJson::kHttpRouters);
    end_section(TenantJson::kHttpServices);
    end_section(TenantJson::kTcpRouters);
    end_section(TenantJson::kTcpServices);
    return true;
  }
  const bool gateway = serves_api(t.phase) && !t.gateway_url.empty();
  if (gateway)
    write_router(w, {prefix + "-api",
                     api_rule(host),
                     prefix + "-gateway",
                     200,
                     eps,
                     {kForwardAuth, kStripApikey, "supaplane-ratelimit-" + plan_slug(t.plan)}});
  else
    write_router(w, {prefix + "-api", api_rule(host), kMaintenanceService, 200, eps});
  write_router(w, {prefix + "-console", host_rule(host), kConsoleService, 100, eps});
  end_section(TenantJson::kHttpRouters);
  w.end_section();
  if (gateway) {
    w.line("  services:\n");
    w.member(prefix + "-gateway");
    w.open("loadBalancer", 6);
    w.raw("passHostHeader", "true", "true", 8);
    w.servers("url", t.gateway_url, 8);
    w.close();
    w.end_member();
  }
  end_section(TenantJson::kHttpServices);
  w.end_section();
  if (serves_api(t.phase) && !t.db_upstream.empty() && !t.db_host.empty()) {
    const std::vector<std::string> db_eps{o.db_entry_point};
    w.line("tcp:\n  routers:\n");
    write_router(
        w, {prefix + "-db", "HostSNI(`" + t.db_host + "`)", prefix + "-db", -1, &db_eps, {}, true});
    end_section(TenantJson::kTcpRouters);
    w.end_section();
    w.line("  services:\n");
    w.member(prefix + "-db");
    w.open("loadBalancer", 6);
    w.servers("address", t.db_upstream, 8);
    w.close();
    w.end_member();
  } else {
    end_section(TenantJson::kTcpRouters);
  }
  end_section(TenantJson::kTcpServices);
  return true;
}

void merge_config(json& into, const json& part) {
  if (part.is_null()) return;
  into.merge_patch(part);
}

void yaml_quoted(std::string& out, std::string_view v) {
  out += '"';
  std::size_t run = 0;  // start of the stretch that needs no escaping
  for (std::size_t i = 0; i < v.size(); ++i) {
    const auto c = static_cast<unsigned char>(v[i]);
    if (c != '"' && c != '\\' && c >= 0x20 && c != 0x7f) continue;
    out.append(v, run, i - run);
    run = i + 1;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default: {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\x%02x", c);
        out += buf;
      }
    }
  }
  out.append(v, run, v.size() - run);
  out += '"';
}

void json_quoted(std::string& out, std::string_view v) {
  out += '"';
  std::size_t run = 0;  // start of the stretch that needs no escaping
  for (std::size_t i = 0; i < v.size(); ++i) {
    const auto c = static_cast<unsigned char>(v[i]);
    if (c != '"' && c != '\\' && c >= 0x20) continue;
    out.append(v, run, i - run);
    run = i + 1;
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    }
  }
  out.append(v, run, v.size() - run);
  out += '"';
}

std::string to_yaml(const json& config) {
  std::string out = "# Generated by supaplane-router-sync. Do not edit: it is rewritten.\n";
  out.reserve(1024);
  emit(out, config, 0);
  return out;
}

std::string dynamic_json(const json& base, const std::map<std::string, TenantJson>& tenants) {
  // Concatenated per section from each tenant's kept text: no document is
  // built or merged (a merge of 100,000 tenants is a deep copy of everything).
  std::size_t total = 4096;
  for (const auto& [ref, t] : tenants) total += t.size() + 8;
  std::string out;
  out.reserve(total);
  out += '{';
  bool first_proto = true;
  for (const char* proto : {"http", "tcp"}) {
    const bool http = std::string_view(proto) == "http";
    std::string section;
    bool first_kind = true;
    for (const char* kind : {"middlewares", "routers", "services"}) {
      const std::string_view k = kind;
      std::string body;
      if (k != "middlewares" || !http) body.reserve(total / (http ? 2 : 8));
      if (auto p = base.find(proto); p != base.end())
        if (auto it = p->find(kind); it != p->end())
          for (auto e = it->begin(); e != it->end(); ++e) {
            if (!body.empty()) body += ',';
            json_quoted(body, e.key());
            body += ':';
            emit_json(body, e.value());
          }
      if (k != "middlewares") {
        const auto sec =
            http ? (k == "routers" ? TenantJson::kHttpRouters : TenantJson::kHttpServices)
                 : (k == "routers" ? TenantJson::kTcpRouters : TenantJson::kTcpServices);
        for (const auto& [ref, t] : tenants) {
          const auto part = t.section(sec);
          if (part.empty()) continue;
          if (!body.empty()) body += ',';
          body += part;
        }
      }
      if (body.empty()) continue;
      if (!first_kind) section += ',';
      first_kind = false;
      section += '"';
      section += kind;
      section += "\":{";
      section += body;
      section += '}';
    }
    if (section.empty() && !http) continue;
    if (!first_proto) out += ',';
    first_proto = false;
    out += '"';
    out += proto;
    out += "\":{";
    out += section;
    out += '}';
  }
  return out + "}";
}

std::string tenant_file(const std::string& ref) { return "tenant-" + ref + ".yml"; }

std::string ref_of_file(const std::string& name) {
  const std::string pre = "tenant-", suf = ".yml";
  if (name.size() <= pre.size() + suf.size() || name.compare(0, pre.size(), pre) != 0 ||
      name.compare(name.size() - suf.size(), suf.size(), suf) != 0)
    return {};
  auto ref = name.substr(pre.size(), name.size() - pre.size() - suf.size());
  return ids::parse_tenant_ref(ref) ? ref : std::string();
}

std::string ref_of_host(std::string_view host, std::string_view base_domain) {
  if (auto colon = host.rfind(':'); colon != std::string_view::npos) host = host.substr(0, colon);
  if (host.size() <= base_domain.size() + 1) return {};
  if (host.substr(host.size() - base_domain.size()) != base_domain ||
      host[host.size() - base_domain.size() - 1] != '.')
    return {};
  auto ref = host.substr(0, host.size() - base_domain.size() - 1);
  return ids::parse_tenant_ref(ref) ? std::string(ref) : std::string();
}

}  // namespace supaplane::router
