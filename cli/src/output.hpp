#pragma once
#include <google/protobuf/timestamp.pb.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "supaplane/events/history.hpp"
#include "supaplane/v1/api.pb.h"
#include "supaplane/v1/types.pb.h"

namespace supaplane::cli {

/// Key order matters to readers of --json output.
using Json = nlohmann::ordered_json;

/// FREE / STARTER / PRO ("-" when unspecified).
std::string plan_name(v1::Plan p);
/// PROVISIONING, ACTIVE, ... (no PHASE_ prefix).
std::string phase_label(v1::Phase p);
/// RUNNING / PAUSED / DELETED.
std::string desired_state_name(v1::DesiredState d);

/// Case-insensitive; accepts "active" and "PHASE_ACTIVE".
std::optional<v1::Phase> parse_phase(std::string_view s);
/// free | starter | pro, case-insensitive.
std::optional<v1::Plan> parse_plan(std::string_view s);

std::int64_t unix_ms(const google::protobuf::Timestamp& t);
/// RFC 3339 with milliseconds; "-" for an unset timestamp.
std::string format_time(const google::protobuf::Timestamp& t);
std::string format_time_ms(std::int64_t unix_ms);

Json tenant_json(const v1::Tenant& t);
/// A `key  value` block, one field per line.
void print_tenant(std::ostream& out, const v1::Tenant& t);

/// A history record from the API's representation.
events::HistoryRecord to_history(const v1::TenantEventRecord& e);
/// `details` parsed as JSON (kept as a string when it does not parse).
Json details_json(const std::string& details);
Json event_json(const events::HistoryRecord& r);
/// SEQ TIME ACTOR TYPE DETAILS.
void print_event_table(std::ostream& out, const std::vector<events::HistoryRecord>& records);

/// Pretty-printed JSON and a newline.
void print_json(std::ostream& out, const Json& j);

/// Columns padded to the widest cell (UTF-8 aware); the last column is not padded.
class Table {
 public:
  explicit Table(std::vector<std::string> headers);
  void add(std::vector<std::string> row);
  void print(std::ostream& out) const;
  bool empty() const noexcept { return rows_.empty(); }

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace supaplane::cli
