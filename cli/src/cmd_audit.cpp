// audit: a tenant's history (and its state at a time) read straight from the
// event log, bypassing the API and its read model.
#include <iostream>
#include <memory>
#include <optional>

#include "commands.hpp"
#include "event_log.hpp"
#include "exit_codes.hpp"
#include "output.hpp"
#include "supaplane/core/ids.hpp"
#include "supaplane/core/time.hpp"
#include "supaplane/domain/tenant.hpp"

namespace supaplane::cli {

namespace {

struct AuditOptions {
  std::string ref;
  std::string as_of;
};

Json state_json(const v1::TenantState& s, std::int64_t as_of) {
  Json j;
  j["as_of"] = format_rfc3339_ms(as_of);
  j["ref"] = s.ref();
  j["name"] = s.name();
  j["plan"] = plan_name(s.plan());
  j["phase"] = domain::phase_name(s.phase());
  j["status"] = domain::management_api_status(s);
  j["desired_state"] = desired_state_name(s.desired_state());
  j["generation"] = s.generation();
  j["observed_generation"] = s.observed_generation();
  j["suspended"] = s.suspended();
  j["suspend_reason"] = s.suspend_reason();
  j["version"] = s.version();
  return j;
}

void print_state(std::ostream& out, const v1::TenantState& s, std::int64_t as_of) {
  out << "\nstate at " << format_rfc3339_ms(as_of) << ":\n";
  Table kv({"", ""});
  kv.add({"ref", s.ref()});
  kv.add({"name", s.name()});
  kv.add({"plan", plan_name(s.plan())});
  kv.add({"phase", domain::phase_name(s.phase())});
  kv.add({"status", domain::management_api_status(s)});
  kv.add({"desired state", desired_state_name(s.desired_state())});
  kv.add({"generation", std::to_string(s.generation())});
  kv.add({"observed generation", std::to_string(s.observed_generation())});
  kv.add({"suspended", s.suspended() ? "yes: " + s.suspend_reason() : "no"});
  kv.add({"version", std::to_string(s.version())});
  kv.print(out);
}

int audit(const GlobalOptions& g, const AuditOptions& o) {
  auto ref = ids::parse_tenant_ref(o.ref);
  if (!ref) return fail_usage("invalid tenant ref '" + o.ref + "': " + ref.error().message);
  std::optional<std::int64_t> as_of;
  if (!o.as_of.empty()) {
    as_of = parse_rfc3339_ms(o.as_of);
    if (!as_of)
      return fail_usage("--as-of: '" + o.as_of +
                        "' is not an RFC 3339 time (e.g. 2026-11-22T10:00:00Z)");
  }

  auto store = open_event_log(g);
  if (!store) return fail(store.error(), nats_where(g));
  auto msgs = (*store)->read_subject("platform.tenant." + ref->str());
  if (!msgs) return fail(msgs.error(), nats_where(g));
  if (msgs->empty())
    return fail(ExitCode::not_found, "tenant " + ref->str() + " not found in the event log");

  // Same cut as fold_history: stop at the first event after the time.
  std::vector<events::HistoryRecord> records;
  for (const auto& m : *msgs) {
    auto r = events::describe(m);
    if (as_of && r.time_unix_ms > *as_of) break;
    records.push_back(std::move(r));
  }

  Json events = Json::array();
  if (g.json)
    for (const auto& r : records) events.push_back(event_json(r));

  if (!as_of) {
    if (g.json) {
      print_json(std::cout, events);
    } else {
      print_event_table(std::cout, records);
    }
    return 0;
  }

  const v1::TenantState state = events::fold_history(ref->str(), *msgs, as_of);
  if (!domain::exists(state))
    return fail(ExitCode::not_found,
                "tenant " + ref->str() + " did not exist yet at " + format_rfc3339_ms(*as_of));
  if (g.json) {
    Json j;
    j["events"] = std::move(events);
    j["state"] = state_json(state, *as_of);
    print_json(std::cout, j);
  } else {
    print_event_table(std::cout, records);
    print_state(std::cout, state, *as_of);
  }
  return 0;
}

}  // namespace

void add_audit_command(CLI::App& app, const GlobalOptions& g, Action& action) {
  auto o = std::make_shared<AuditOptions>();
  auto* cmd =
      add_command(app, "audit", "a tenant's full history from the event log (NATS, not the API)");
  cmd->add_option("ref", o->ref, "tenant ref (20 lowercase letters)")->required();
  cmd->add_option("--as-of", o->as_of,
                  "RFC 3339 time: history up to it and the state folded at it");
  on_parsed(cmd, action, [&g, o] { return audit(g, *o); });
}

}  // namespace supaplane::cli
