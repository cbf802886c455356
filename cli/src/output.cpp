#include "output.hpp"

#include <algorithm>
#include <cctype>

#include "supaplane/core/time.hpp"
#include "supaplane/domain/tenant.hpp"

namespace supaplane::cli {

namespace {

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string strip_prefix(const std::string& s, std::string_view prefix) {
  return s.rfind(prefix, 0) == 0 ? s.substr(prefix.size()) : s;
}

/// Display width of UTF-8 text: code points, not bytes.
std::size_t display_width(std::string_view s) {
  return static_cast<std::size_t>(std::count_if(
      s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

/// Cells stay on one line whatever a tenant name or payload contains.
std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  return s.empty() ? "-" : s;
}

}  // namespace

std::string plan_name(v1::Plan p) {
  if (p == v1::PLAN_UNSPECIFIED) return "-";
  return strip_prefix(v1::Plan_Name(p), "PLAN_");
}

std::string phase_label(v1::Phase p) { return domain::phase_name(p); }

std::string desired_state_name(v1::DesiredState d) {
  if (d == v1::DESIRED_STATE_UNSPECIFIED) return "-";
  return strip_prefix(v1::DesiredState_Name(d), "DESIRED_STATE_");
}

std::optional<v1::Phase> parse_phase(std::string_view s) {
  std::string name = upper(s);
  if (name.rfind("PHASE_", 0) != 0) name = "PHASE_" + name;
  v1::Phase p{};
  if (!v1::Phase_Parse(name, &p) || p == v1::PHASE_UNSPECIFIED) return std::nullopt;
  return p;
}

std::optional<v1::Plan> parse_plan(std::string_view s) {
  v1::Plan p{};
  if (!v1::Plan_Parse("PLAN_" + upper(s), &p) || !domain::valid_plan(p)) return std::nullopt;
  return p;
}

std::int64_t unix_ms(const google::protobuf::Timestamp& t) {
  return t.seconds() * 1000 + t.nanos() / 1'000'000;
}

std::string format_time(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  return format_rfc3339_ms(unix_ms(t));
}

std::string format_time_ms(std::int64_t ms) { return ms == 0 ? "-" : format_rfc3339_ms(ms); }

Json tenant_json(const v1::Tenant& t) {
  Json j;
  j["ref"] = t.ref();
  j["name"] = t.name();
  j["plan"] = plan_name(t.plan());
  j["phase"] = phase_label(t.phase());
  j["status"] = t.status();
  j["desired_state"] = desired_state_name(t.desired_state());
  j["generation"] = t.generation();
  j["observed_generation"] = t.observed_generation();
  j["suspended"] = t.suspended();
  j["suspend_reason"] = t.suspend_reason();
  j["created_at"] = format_time(t.created_at());
  j["updated_at"] = format_time(t.updated_at());
  j["owner_account_id"] = t.owner_account_id();
  j["api_url"] = t.api_url();
  j["version"] = t.version();
  j["active_deployment_count"] = t.active_deployment_count();
  j["last_error"] = t.last_error();
  return j;
}

void print_tenant(std::ostream& out, const v1::Tenant& t) {
  Table kv({"", ""});
  kv.add({"ref", t.ref()});
  kv.add({"name", t.name()});
  kv.add({"plan", plan_name(t.plan())});
  kv.add({"phase", phase_label(t.phase())});
  kv.add({"status", t.status()});
  kv.add({"desired state", desired_state_name(t.desired_state())});
  kv.add({"generation", std::to_string(t.generation()) + " (observed " +
                            std::to_string(t.observed_generation()) + ")"});
  kv.add({"suspended", t.suspended() ? "yes: " + t.suspend_reason() : "no"});
  kv.add({"api url", t.api_url()});
  kv.add({"owner", t.owner_account_id()});
  kv.add({"deployments", std::to_string(t.active_deployment_count())});
  kv.add({"created", format_time(t.created_at())});
  kv.add({"updated", format_time(t.updated_at())});
  kv.add({"version", std::to_string(t.version())});
  if (!t.last_error().empty()) kv.add({"last error", t.last_error()});
  kv.print(out);
}

events::HistoryRecord to_history(const v1::TenantEventRecord& e) {
  events::HistoryRecord r;
  r.sequence = e.sequence();
  r.time_unix_ms = unix_ms(e.time());
  r.actor = e.actor();
  r.type = e.type();
  r.details = e.details();
  r.correlation_id = e.correlation_id();
  r.event_id = e.event_id();
  return r;
}

Json details_json(const std::string& details) {
  Json j = Json::parse(details, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return details;
  return j;
}

Json event_json(const events::HistoryRecord& r) {
  Json j;
  j["sequence"] = r.sequence;
  j["time"] = format_time_ms(r.time_unix_ms);
  j["actor"] = r.actor;
  j["type"] = r.type;
  j["details"] = details_json(r.details);
  j["correlation_id"] = r.correlation_id;
  j["event_id"] = r.event_id;
  return j;
}

void print_event_table(std::ostream& out, const std::vector<events::HistoryRecord>& records) {
  Table t({"SEQ", "TIME", "ACTOR", "TYPE", "DETAILS"});
  for (const auto& r : records)
    t.add({std::to_string(r.sequence), format_time_ms(r.time_unix_ms), r.actor, r.type,
           r.details == "{}" ? "" : r.details});
  t.print(out);
}

void print_json(std::ostream& out, const Json& j) {
  out << j.dump(2, ' ', false, Json::error_handler_t::replace) << "\n";
}

Table::Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}

void Table::add(std::vector<std::string> row) {
  row.resize(headers_.size());
  for (auto& cell : row) cell = one_line(std::move(cell));
  rows_.push_back(std::move(row));
}

void Table::print(std::ostream& out) const {
  std::vector<std::size_t> widths(headers_.size(), 0);
  const bool has_header = std::any_of(headers_.begin(), headers_.end(),
                                      [](const std::string& h) { return !h.empty(); });
  auto measure = [&](const std::vector<std::string>& row) {
    for (std::size_t i = 0; i < row.size(); ++i)
      widths[i] = std::max(widths[i], display_width(row[i]));
  };
  if (has_header) measure(headers_);
  for (const auto& r : rows_) measure(r);
  auto emit = [&](const std::vector<std::string>& row) {
    for (std::size_t i = 0; i < row.size(); ++i) {
      out << row[i];
      if (i + 1 < row.size()) out << std::string(widths[i] - display_width(row[i]) + 2, ' ');
    }
    out << "\n";
  };
  if (has_header) emit(headers_);
  for (const auto& r : rows_) emit(r);
}

}  // namespace supaplane::cli
