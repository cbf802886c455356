#pragma once
#include <string>
#include <vector>

namespace supaplane::testenv {

/// One metric named in one expression: an alert rule's, or a dashboard
/// panel's (`where` names the alert or the panel).
struct MetricUse {
  std::string where;
  std::string metric;
};

/// Path of deploy/prometheus/alerts.yml in the source tree.
std::string alerts_file();
/// The group names in the alerts file.
std::vector<std::string> alert_groups();
/// Every (alert, supaplane_* metric) pair of the rules of `group`; throws
/// std::runtime_error if the group is missing or a rule has no alert / expr.
std::vector<MetricUse> alert_metric_uses(const std::string& group);
/// Path of deploy/grafana/dashboards/supaplane-overview.json.
std::string dashboard_file();
/// Every (panel title, supaplane_* metric) pair of the dashboard's panels
/// whose metric starts with `prefix` ("" = all). Throws std::runtime_error
/// if a panel has no target expression or its datasource is not the
/// provisioned one (uid supaplane-prometheus).
std::vector<MetricUse> dashboard_metric_uses(const std::string& prefix = "");

/// A service's monitoring against one scrape of its /metrics: its alert
/// group and the dashboard's panels on `metric_prefix`.
struct MonitoringCheck {
  std::size_t alert_uses{0};         ///< metric uses in the group's rules
  std::size_t panel_uses{0};         ///< metric uses in the dashboard's panels
  std::vector<std::string> missing;  ///< "<alert or panel> uses <metric>" not exported
};
MonitoringCheck check_monitoring(const std::string& alert_group, const std::string& metric_prefix,
                                 const std::string& exposition);

/// The names in `uses` that a Prometheus text exposition lacks (a name
/// counts as present when some sample line starts with it).
std::vector<std::string> missing_metrics(const std::vector<MetricUse>& uses,
                                         const std::string& exposition);

}  // namespace supaplane::testenv
