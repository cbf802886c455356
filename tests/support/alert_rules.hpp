#pragma once
#include <string>
#include <vector>

namespace supaplane::testenv {

/// One metric named in one alert rule's expression.
struct AlertMetricUse {
  std::string alert;
  std::string metric;
};

/// Path of deploy/prometheus/alerts.yml in the source tree.
std::string alerts_file();
/// The group names in the alerts file.
std::vector<std::string> alert_groups();
/// Every (alert, supaplane_* metric) pair of the rules of `group`; throws
/// std::runtime_error if the group is missing or a rule has no alert / expr.
std::vector<AlertMetricUse> alert_metric_uses(const std::string& group);
/// The names in `uses` that a Prometheus text exposition lacks (a name
/// counts as present when some sample line starts with it).
std::vector<std::string> missing_metrics(const std::vector<AlertMetricUse>& uses,
                                         const std::string& exposition);

}  // namespace supaplane::testenv
