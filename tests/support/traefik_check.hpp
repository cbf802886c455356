#pragma once
// Checks of Traefik dynamic configurations written by router-sync: YAML →
// JSON, merging a directory the way Traefik's file provider does, and the
// consistency rules (unique names, references defined, rule syntax).
#include <yaml-cpp/yaml.h>

#include <cctype>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

namespace supaplane::testenv {

inline nlohmann::json yaml_to_json(const YAML::Node& n) {
  using nlohmann::json;
  switch (n.Type()) {
    case YAML::NodeType::Map: {
      json j = json::object();
      for (const auto& kv : n) j[kv.first.as<std::string>()] = yaml_to_json(kv.second);
      return j;
    }
    case YAML::NodeType::Sequence: {
      json j = json::array();
      for (const auto& v : n) j.push_back(yaml_to_json(v));
      return j;
    }
    case YAML::NodeType::Scalar: {
      // Our emitter double-quotes every string; plain scalars are numbers / booleans.
      if (n.Tag() == "!") return n.as<std::string>();
      const auto s = n.Scalar();
      if (s == "true" || s == "false") return s == "true";
      try {
        std::size_t used = 0;
        long long v = std::stoll(s, &used);
        if (used == s.size()) return v;
      } catch (const std::exception&) {
      }
      return s;
    }
    default:
      return nullptr;
  }
}

/// Validates a Traefik v3 rule: matchers (Host, PathPrefix, Path, ...) with
/// backtick arguments, `&&`, `||`, `!` and parentheses. Empty = valid.
class RuleParser {
 public:
  explicit RuleParser(std::string s) : s_(std::move(s)) {}
  std::string validate() {
    expr();
    ws();
    if (err_.empty() && i_ != s_.size()) err_ = "trailing text at " + std::to_string(i_);
    return err_;
  }

 private:
  void ws() {
    while (i_ < s_.size() && s_[i_] == ' ') ++i_;
  }
  bool eat(const std::string& t) {
    ws();
    if (s_.compare(i_, t.size(), t) == 0) {
      i_ += t.size();
      return true;
    }
    return false;
  }
  void fail(const std::string& m) {
    if (err_.empty()) err_ = m + " at " + std::to_string(i_);
  }
  void expr() {
    term();
    while (err_.empty() && (eat("&&") || eat("||"))) term();
  }
  void term() {
    eat("!");
    if (eat("(")) {
      expr();
      if (!eat(")")) fail("missing )");
      return;
    }
    ws();
    std::string name;
    while (i_ < s_.size() && std::isalpha(static_cast<unsigned char>(s_[i_]))) name += s_[i_++];
    static const std::set<std::string> known = {
        "Host",   "HostRegexp", "Path",         "PathPrefix", "PathRegexp",
        "Method", "Header",     "HeaderRegexp", "Query",      "ClientIP"};
    if (!known.count(name)) return fail("unknown matcher '" + name + "'");
    if (!eat("(")) return fail("missing ( after " + name);
    do {
      ws();
      if (i_ >= s_.size() || s_[i_] != '`') return fail("argument must be in backticks");
      auto end = s_.find('`', i_ + 1);
      if (end == std::string::npos || end == i_ + 1) return fail("bad argument");
      i_ = end + 1;
    } while (eat(","));
    if (!eat(")")) fail("missing ) of " + name);
  }
  std::string s_;
  std::size_t i_{0};
  std::string err_;
};

/// Merges files (name → YAML) as the file provider does; a name defined in
/// two files is reported in `problems`.
inline nlohmann::json merge_yaml_files(const std::map<std::string, std::string>& files,
                                       std::vector<std::string>& problems) {
  nlohmann::json all = nlohmann::json::object();
  for (const auto& [name, text] : files) {
    nlohmann::json j;
    try {
      j = yaml_to_json(YAML::Load(text));
    } catch (const std::exception& e) {
      problems.push_back(name + ": YAML does not parse: " + e.what());
      continue;
    }
    for (const char* kind : {"routers", "services", "middlewares"}) {
      if (!j.contains("http") || !j["http"].contains(kind)) continue;
      for (auto it = j["http"][kind].begin(); it != j["http"][kind].end(); ++it) {
        if (all["http"][kind].contains(it.key()))
          problems.push_back(name + ": " + kind + " " + it.key() + " defined twice");
        all["http"][kind][it.key()] = it.value();
      }
    }
  }
  return all;
}

/// Every router has a valid rule, a defined service and defined middlewares.
inline std::vector<std::string> consistency_problems(const nlohmann::json& config) {
  std::vector<std::string> p;
  const auto& http = config.contains("http") ? config["http"] : nlohmann::json::object();
  auto defined = [&](const char* kind, const std::string& name) {
    return http.contains(kind) && http[kind].contains(name);
  };
  if (http.contains("routers"))
    for (auto it = http["routers"].begin(); it != http["routers"].end(); ++it) {
      const auto& r = it.value();
      if (!r.contains("rule") || !r["rule"].is_string()) {
        p.push_back(it.key() + ": no rule");
      } else if (auto e = RuleParser(r["rule"].get<std::string>()).validate(); !e.empty()) {
        p.push_back(it.key() + ": rule " + e);
      }
      if (!r.contains("service") || !defined("services", r["service"].get<std::string>()))
        p.push_back(it.key() + ": service not defined");
      if (r.contains("middlewares"))
        for (const auto& m : r["middlewares"])
          if (!defined("middlewares", m.get<std::string>()))
            p.push_back(it.key() + ": middleware " + m.get<std::string>() + " not defined");
    }
  if (http.contains("services"))
    for (auto it = http["services"].begin(); it != http["services"].end(); ++it) {
      const auto& servers = it.value()["loadBalancer"]["servers"];
      if (!servers.is_array() || servers.empty() || !servers[0].contains("url"))
        p.push_back(it.key() + ": no server url");
    }
  return p;
}

}  // namespace supaplane::testenv
