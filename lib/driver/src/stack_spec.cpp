#include "supaplane/driver/stack_spec.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <regex>
#include <set>
#include <sstream>

#include "supaplane/secrets/secrets.hpp"

namespace supaplane::driver {

namespace {
Error bad(const std::string& file, const std::string& where, const std::string& what) {
  return make_error(errc::invalid_argument, "stack spec " + file + ": " + where + ": " + what,
                    where);
}

const std::regex& name_re() {
  static const std::regex r("^[a-z][a-z0-9]{0,19}$");
  return r;
}
const std::regex& secret_re() {
  static const std::regex r("^secret\\.[a-z][a-z0-9_]{0,39}$");
  return r;
}

/// Every `{{x}}` in `s`, or an error for an unclosed one.
Result<std::vector<std::string>> placeholders(const std::string& s) {
  std::vector<std::string> out;
  for (std::size_t at = s.find("{{"); at != std::string::npos; at = s.find("{{", at)) {
    const auto end = s.find("}}", at);
    if (end == std::string::npos) return make_error(errc::invalid_argument, "unclosed {{");
    std::string name = s.substr(at + 2, end - at - 2);
    name.erase(0, name.find_first_not_of(' '));
    name.erase(name.find_last_not_of(' ') + 1);
    out.push_back(name);
    at = end + 2;
  }
  return out;
}

Status check_template(const std::string& file, const std::string& where, const std::string& s) {
  auto names = placeholders(s);
  if (!names) return bad(file, where, names.error().message);
  const auto& known = StackSpec::template_names();
  for (const auto& n : *names) {
    if (std::find(known.begin(), known.end(), n) != known.end()) continue;
    if (std::regex_match(n, secret_re())) continue;
    return bad(file, where, "unknown template name {{" + n + "}}");
  }
  return Status::Ok();
}

Result<std::vector<std::string>> string_list(const YAML::Node& n, const std::string& file,
                                             const std::string& where) {
  std::vector<std::string> out;
  if (!n) return out;
  if (n.IsScalar()) {
    out.push_back(n.as<std::string>());
    return out;
  }
  if (!n.IsSequence()) return bad(file, where, "must be a list of strings");
  for (const auto& x : n) {
    if (!x.IsScalar()) return bad(file, where, "must be a list of strings");
    out.push_back(x.as<std::string>());
  }
  return out;
}

Result<std::int64_t> number(const YAML::Node& n, const std::string& file, const std::string& where,
                            std::int64_t lo, std::int64_t hi, std::int64_t dflt) {
  if (!n) return dflt;
  std::int64_t v = 0;
  try {
    v = n.as<std::int64_t>();
  } catch (const YAML::Exception&) {
    return bad(file, where, "must be an integer");
  }
  if (v < lo || v > hi)
    return bad(file, where, "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
  return v;
}

Result<Resources> resources(const YAML::Node& n, const std::string& file,
                            const std::string& where) {
  if (!n.IsMap()) return bad(file, where, "must be a map of cpus, memory_mb, pids");
  Resources r;
  for (const auto& kv : n) {
    const std::string k = kv.first.as<std::string>();
    if (k != "cpus" && k != "memory_mb" && k != "pids")
      return bad(file, where + "." + k, "unknown field (cpus, memory_mb, pids)");
  }
  if (n["cpus"]) {
    try {
      r.cpus = n["cpus"].as<double>();
    } catch (const YAML::Exception&) {
      return bad(file, where + ".cpus", "must be a number");
    }
    if (r.cpus < 0 || r.cpus > 256) return bad(file, where + ".cpus", "must be between 0 and 256");
  }
  auto mem = number(n["memory_mb"], file, where + ".memory_mb", 0, 1 << 20, 0);
  if (!mem) return mem.error();
  if (*mem != 0 && *mem < 6) return bad(file, where + ".memory_mb", "must be at least 6 (MB)");
  r.memory_mb = *mem;
  auto pids = number(n["pids"], file, where + ".pids", 0, 1 << 22, 0);
  if (!pids) return pids.error();
  r.pids = *pids;
  return r;
}

Result<std::map<std::string, Resources>> plan_resources(const YAML::Node& n,
                                                        const std::string& file,
                                                        const std::string& where) {
  std::map<std::string, Resources> out;
  if (!n) return out;
  if (!n.IsMap()) return bad(file, where, "must map plans (free, starter, pro) to limits");
  for (const auto& kv : n) {
    const std::string plan = kv.first.as<std::string>();
    if (plan != "free" && plan != "starter" && plan != "pro")
      return bad(file, where + "." + plan, "unknown plan (free, starter, pro)");
    auto r = resources(kv.second, file, where + "." + plan);
    if (!r) return r.error();
    out[plan] = *r;
  }
  return out;
}

const std::set<std::string> kServiceFields = {
    "image",        "health_name", "command",   "entrypoint", "environment",
    "healthcheck",  "depends_on",  "volumes",   "tmpfs",      "read_only",
    "capabilities", "user",        "resources", "on_healthy"};

Result<ServiceSpec> parse_service(const std::string& name, const YAML::Node& n,
                                  const std::string& file) {
  ServiceSpec s;
  s.name = name;
  if (!std::regex_match(name, name_re()))
    return bad(file, name,
               "service names are 1-20 lowercase letters or digits, starting with a letter");
  if (!n.IsMap()) return bad(file, name, "must be a map");
  for (const auto& kv : n) {
    const std::string k = kv.first.as<std::string>();
    if (!kServiceFields.count(k)) return bad(file, name + "." + k, "unknown field");
  }
  if (!n["image"] || !n["image"].IsScalar() || n["image"].as<std::string>().empty())
    return bad(file, name + ".image", "is required");
  s.image = n["image"].as<std::string>();
  if (s.image.find("{{") != std::string::npos)
    return bad(file, name + ".image", "cannot be a template (pin the image)");
  if (n["health_name"]) s.health_name = n["health_name"].as<std::string>();
  auto cmd = string_list(n["command"], file, name + ".command");
  if (!cmd) return cmd.error();
  s.command = *cmd;
  auto ep = string_list(n["entrypoint"], file, name + ".entrypoint");
  if (!ep) return ep.error();
  s.entrypoint = *ep;
  for (const auto& part : s.command)
    if (auto st = check_template(file, name + ".command", part); !st) return st.error();
  for (const auto& part : s.entrypoint)
    if (auto st = check_template(file, name + ".entrypoint", part); !st) return st.error();
  if (const auto env = n["environment"]) {
    if (!env.IsMap()) return bad(file, name + ".environment", "must be a map");
    static const std::regex env_re("^[A-Za-z_][A-Za-z0-9_]*$");
    for (const auto& kv : env) {
      const std::string k = kv.first.as<std::string>();
      if (!std::regex_match(k, env_re))
        return bad(file, name + ".environment." + k, "not a variable name");
      if (!kv.second.IsScalar()) return bad(file, name + ".environment." + k, "must be a string");
      const std::string v = kv.second.as<std::string>();
      if (auto st = check_template(file, name + ".environment." + k, v); !st) return st.error();
      s.environment[k] = v;
    }
  }
  if (const auto hc = n["healthcheck"]) {
    if (!hc.IsMap()) return bad(file, name + ".healthcheck", "must be a map");
    auto test = string_list(hc["test"], file, name + ".healthcheck.test");
    if (!test) return test.error();
    if (test->empty() || ((*test)[0] != "CMD" && (*test)[0] != "CMD-SHELL"))
      return bad(file, name + ".healthcheck.test", "must start with CMD or CMD-SHELL");
    s.healthcheck.test = *test;
    for (const auto& part : s.healthcheck.test)
      if (auto st = check_template(file, name + ".healthcheck.test", part); !st) return st.error();
    auto iv =
        number(hc["interval_ms"], file, name + ".healthcheck.interval_ms", 100, 3'600'000, 5'000);
    if (!iv) return iv.error();
    auto to =
        number(hc["timeout_ms"], file, name + ".healthcheck.timeout_ms", 100, 3'600'000, 5'000);
    if (!to) return to.error();
    auto sp =
        number(hc["start_period_ms"], file, name + ".healthcheck.start_period_ms", 0, 3'600'000, 0);
    if (!sp) return sp.error();
    auto rt = number(hc["retries"], file, name + ".healthcheck.retries", 1, 1000, 3);
    if (!rt) return rt.error();
    s.healthcheck.interval_ms = *iv;
    s.healthcheck.timeout_ms = *to;
    s.healthcheck.start_period_ms = *sp;
    s.healthcheck.retries = static_cast<int>(*rt);
  }
  if (const auto deps = n["depends_on"]) {
    if (!deps.IsMap())
      return bad(file, name + ".depends_on", "must map services to healthy|started");
    for (const auto& kv : deps) {
      const std::string d = kv.first.as<std::string>();
      const std::string cond = kv.second.IsScalar() ? kv.second.as<std::string>() : "";
      if (cond != "healthy" && cond != "started")
        return bad(file, name + ".depends_on." + d, "condition must be healthy or started");
      s.depends_on[d] = cond;
    }
  }
  if (const auto vols = n["volumes"]) {
    if (!vols.IsMap()) return bad(file, name + ".volumes", "must map volume names to paths");
    for (const auto& kv : vols) {
      const std::string v = kv.first.as<std::string>();
      if (!std::regex_match(v, name_re()))
        return bad(file, name + ".volumes." + v,
                   "volume names are 1-20 lowercase letters or digits");
      const std::string path = kv.second.IsScalar() ? kv.second.as<std::string>() : "";
      if (path.empty() || path[0] != '/')
        return bad(file, name + ".volumes." + v, "must be an absolute path");
      s.volumes[v] = path;
    }
  }
  auto tmpfs = string_list(n["tmpfs"], file, name + ".tmpfs");
  if (!tmpfs) return tmpfs.error();
  s.tmpfs = *tmpfs;
  for (const auto& t : s.tmpfs)
    if (t.empty() || t[0] != '/') return bad(file, name + ".tmpfs", "paths must be absolute");
  if (n["read_only"]) {
    try {
      s.read_only = n["read_only"].as<bool>();
    } catch (const YAML::Exception&) {
      return bad(file, name + ".read_only", "must be true or false");
    }
  }
  auto caps = string_list(n["capabilities"], file, name + ".capabilities");
  if (!caps) return caps.error();
  static const std::regex cap_re("^[A-Z_]{2,32}$");
  for (const auto& c : *caps) {
    if (!std::regex_match(c, cap_re))
      return bad(file, name + ".capabilities", "bad capability " + c);
    if (c == "SYS_ADMIN" || c == "ALL" || c == "NET_ADMIN" || c == "SYS_MODULE" ||
        c == "SYS_PTRACE")
      return bad(file, name + ".capabilities", c + " is never granted to a tenant's service");
  }
  s.capabilities = *caps;
  if (n["user"]) s.user = n["user"].as<std::string>();
  auto res = plan_resources(n["resources"], file, name + ".resources");
  if (!res) return res.error();
  s.resources = *res;
  if (const auto hook = n["on_healthy"]) {
    const std::string where = name + ".on_healthy";
    if (!hook.IsMap()) return bad(file, where, "must be a map with exec");
    for (const auto& kv : hook) {
      const std::string k = kv.first.as<std::string>();
      if (k != "exec") return bad(file, where + "." + k, "unknown field (exec)");
    }
    if (hook["exec"] && !hook["exec"].IsSequence())
      return bad(file, where + ".exec", "must be a list of strings (the command's arguments)");
    auto exec = string_list(hook["exec"], file, where + ".exec");
    if (!exec) return exec.error();
    if (exec->empty()) return bad(file, where + ".exec", "is required (the command to run)");
    for (const auto& part : *exec)
      if (part.find("{{") != std::string::npos)
        return bad(file, where + ".exec",
                   "cannot be a template (an exec's command line is visible to every client of "
                   "the daemon: read secrets from the container's environment)");
    if (s.healthcheck.test.empty())
      return bad(file, where, "needs a healthcheck (it runs once the service is healthy)");
    s.on_healthy.exec = *exec;
  }
  return s;
}

/// Dependencies first (Kahn's algorithm, ties in file order); a cycle or an
/// unknown dependency is an error.
Result<std::vector<ServiceSpec>> ordered(std::vector<ServiceSpec> in, const std::string& file) {
  std::map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < in.size(); ++i) index[in[i].name] = i;
  for (const auto& s : in)
    for (const auto& [d, _] : s.depends_on) {
      if (!index.count(d)) return bad(file, s.name + ".depends_on." + d, "no such service");
      if (d == s.name)
        return bad(file, s.name + ".depends_on." + d, "a service cannot wait for itself");
    }
  std::vector<ServiceSpec> out;
  std::set<std::string> placed;
  while (out.size() < in.size()) {
    bool progress = false;
    for (const auto& s : in) {
      if (placed.count(s.name)) continue;
      bool ready = true;
      for (const auto& [d, _] : s.depends_on) ready = ready && placed.count(d);
      if (!ready) continue;
      out.push_back(s);
      placed.insert(s.name);
      progress = true;
    }
    if (!progress) {
      std::string left;
      for (const auto& s : in)
        if (!placed.count(s.name)) left += (left.empty() ? "" : ", ") + s.name;
      return bad(file, "depends_on", "dependency cycle among " + left);
    }
  }
  return out;
}
}  // namespace

const char* plan_key(v1::Plan plan) {
  switch (plan) {
    case v1::PLAN_STARTER:
      return "starter";
    case v1::PLAN_PRO:
      return "pro";
    default:
      return "free";
  }
}

const std::vector<std::string>& StackSpec::template_names() {
  static const std::vector<std::string> names = {
      "ref",         "base_domain", "api_url", "jwt_secret",   "anon_key", "service_role_key",
      "db_password", "jwt_issuer",  "db_name", "stack_network"};
  return names;
}

const ServiceSpec* StackSpec::find(const std::string& name) const {
  for (const auto& s : services)
    if (s.name == name) return &s;
  return nullptr;
}

Resources StackSpec::resources_for(const ServiceSpec& svc, v1::Plan plan) const {
  const std::string key = plan_key(plan);
  if (auto it = svc.resources.find(key); it != svc.resources.end()) return it->second;
  if (auto it = default_resources.find(key); it != default_resources.end()) return it->second;
  return {};
}

Result<StackSpec> parse_stack_spec(const std::string& yaml_text, const std::string& file) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return bad(file, "yaml", e.what());
  }
  if (!root.IsMap()) return bad(file, "top level", "must be a map");
  static const std::set<std::string> top = {"version", "services", "gateway", "database",
                                            "default_resources"};
  for (const auto& kv : root) {
    const std::string k = kv.first.as<std::string>();
    if (!top.count(k)) return bad(file, k, "unknown top-level field");
  }
  if (!root["version"] || root["version"].as<std::string>() != "1")
    return bad(file, "version", "must be 1");
  StackSpec spec;
  spec.file = file;
  const auto services = root["services"];
  if (!services || !services.IsMap() || services.size() == 0)
    return bad(file, "services", "must map at least one service name to its settings");
  std::vector<ServiceSpec> list;
  for (const auto& kv : services) {
    auto s = parse_service(kv.first.as<std::string>(), kv.second, file);
    if (!s) return s.error();
    list.push_back(std::move(*s));
  }
  std::set<std::string> health_names;
  for (const auto& s : list) {
    if (s.health_name.empty()) continue;
    if (!health_names.insert(s.health_name).second)
      return bad(file, s.name + ".health_name", "'" + s.health_name + "' is used twice");
  }
  auto sorted = ordered(std::move(list), file);
  if (!sorted) return sorted.error();
  spec.services = std::move(*sorted);
  const auto gw = root["gateway"];
  if (!gw || !gw.IsMap() || !gw["service"])
    return bad(file, "gateway.service", "is required (the service that is the API gateway)");
  spec.gateway_service = gw["service"].as<std::string>();
  if (!spec.find(spec.gateway_service))
    return bad(file, "gateway.service", "no service named " + spec.gateway_service);
  auto gp = number(gw["port"], file, "gateway.port", 1, 65535, 8000);
  if (!gp) return gp.error();
  spec.gateway_port = static_cast<int>(*gp);
  const auto db = root["database"];
  if (!db || !db.IsMap() || !db["service"])
    return bad(file, "database.service", "is required (db or pooler: where connections go)");
  spec.database_service = db["service"].as<std::string>();
  if (!spec.find(spec.database_service))
    return bad(file, "database.service", "no service named " + spec.database_service);
  auto dp = number(db["port"], file, "database.port", 1, 65535, 5432);
  if (!dp) return dp.error();
  spec.database_port = static_cast<int>(*dp);
  if (db["user"]) spec.database_user = db["user"].as<std::string>();
  if (db["name"]) spec.database_name = db["name"].as<std::string>();
  if (auto st = check_template(file, "database.user", spec.database_user); !st) return st.error();
  auto dr = plan_resources(root["default_resources"], file, "default_resources");
  if (!dr) return dr.error();
  spec.default_resources = *dr;
  return spec;
}

Result<StackSpec> load_stack_spec(const std::string& file) {
  std::ifstream in(file);
  if (!in)
    return make_error(errc::invalid_argument, "stack spec " + file + ": cannot be read",
                      "stack_spec");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_stack_spec(ss.str(), file);
}

Result<std::string> render_template(const std::string& tmpl,
                                    const std::map<std::string, std::string>& values,
                                    const std::string& stack_seed) {
  std::string out;
  std::size_t pos = 0;
  for (std::size_t at = tmpl.find("{{"); at != std::string::npos; at = tmpl.find("{{", pos)) {
    const auto end = tmpl.find("}}", at);
    if (end == std::string::npos) return make_error(errc::invalid_argument, "unclosed {{");
    out.append(tmpl, pos, at - pos);
    std::string name = tmpl.substr(at + 2, end - at - 2);
    name.erase(0, name.find_first_not_of(' '));
    name.erase(name.find_last_not_of(' ') + 1);
    if (auto it = values.find(name); it != values.end()) {
      out += it->second;
    } else if (name.rfind("secret.", 0) == 0 && !stack_seed.empty()) {
      out += secrets::derive_stack_secret(stack_seed, name.substr(7));
    } else {
      return make_error(errc::invalid_argument, "unknown template name {{" + name + "}}");
    }
    pos = end + 2;
  }
  out.append(tmpl, pos, std::string::npos);
  return out;
}

}  // namespace supaplane::driver
