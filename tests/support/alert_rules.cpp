#include "alert_rules.hpp"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <stdexcept>

namespace supaplane::testenv {

std::string alerts_file() {
  return std::string(SUPAPLANE_SOURCE_DIR) + "/deploy/prometheus/alerts.yml";
}

std::vector<std::string> alert_groups() {
  std::vector<std::string> out;
  for (const auto& g : YAML::LoadFile(alerts_file())["groups"])
    out.push_back(g["name"].as<std::string>());
  return out;
}

std::vector<MetricUse> alert_metric_uses(const std::string& group) {
  const std::regex metric("supaplane_[a-z_]+");
  for (const auto& g : YAML::LoadFile(alerts_file())["groups"]) {
    if (g["name"].as<std::string>() != group) continue;
    std::vector<MetricUse> out;
    for (const auto& rule : g["rules"]) {
      if (!rule["alert"] || !rule["expr"])
        throw std::runtime_error("a rule of group " + group + " has no alert or expr");
      const std::string alert = rule["alert"].as<std::string>();
      const std::string expr = rule["expr"].as<std::string>();
      bool any = false;
      for (std::sregex_iterator it(expr.begin(), expr.end(), metric), end; it != end; ++it) {
        out.push_back({alert, it->str()});
        any = true;
      }
      if (!any) out.push_back({alert, ""});  // e.g. up{job=...}: nothing to check
    }
    return out;
  }
  throw std::runtime_error("no alert group " + group + " in " + alerts_file());
}

std::string dashboard_file() {
  return std::string(SUPAPLANE_SOURCE_DIR) + "/deploy/grafana/dashboards/supaplane-overview.json";
}

std::vector<MetricUse> dashboard_metric_uses(const std::string& prefix) {
  std::ifstream in(dashboard_file());
  if (!in) throw std::runtime_error("cannot read " + dashboard_file());
  const auto doc = nlohmann::json::parse(in);
  const std::regex metric("supaplane_[a-z_]+");
  std::vector<MetricUse> out;
  for (const auto& panel : doc.at("panels")) {
    if (panel.at("type") == "row") continue;
    const std::string title = panel.at("title").get<std::string>();
    if (panel.at("datasource").at("uid") != "supaplane-prometheus")
      throw std::runtime_error("panel " + title + " is not on the provisioned datasource");
    if (panel.at("targets").empty()) throw std::runtime_error("panel " + title + " has no target");
    for (const auto& target : panel.at("targets")) {
      const std::string expr = target.at("expr").get<std::string>();
      if (expr.empty()) throw std::runtime_error("panel " + title + " has an empty expression");
      for (std::sregex_iterator it(expr.begin(), expr.end(), metric), end; it != end; ++it)
        if (it->str().rfind(prefix, 0) == 0) out.push_back({title, it->str()});
    }
  }
  return out;
}

std::vector<std::string> missing_metrics(const std::vector<MetricUse>& uses,
                                         const std::string& exposition) {
  std::vector<std::string> missing;
  for (const auto& u : uses) {
    if (u.metric.empty()) continue;
    const std::string at_line = "\n" + u.metric;
    bool found = false;
    for (auto pos = exposition.find(at_line); pos != std::string::npos;
         pos = exposition.find(at_line, pos + 1)) {
      const char next =
          pos + at_line.size() < exposition.size() ? exposition[pos + at_line.size()] : '\n';
      if (next == ' ' || next == '{') {  // the name itself, not a longer one
        found = true;
        break;
      }
    }
    if (!found) missing.push_back(u.where + " uses " + u.metric);
  }
  return missing;
}

MonitoringCheck check_monitoring(const std::string& alert_group, const std::string& metric_prefix,
                                 const std::string& exposition) {
  const auto alerts = alert_metric_uses(alert_group);
  const auto panels = dashboard_metric_uses(metric_prefix);
  MonitoringCheck c{alerts.size(), panels.size(), missing_metrics(alerts, exposition)};
  for (auto& m : missing_metrics(panels, exposition)) c.missing.push_back(std::move(m));
  return c;
}

}  // namespace supaplane::testenv
