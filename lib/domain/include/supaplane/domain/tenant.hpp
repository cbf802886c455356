#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "supaplane/core/result.hpp"
#include "supaplane/v1/events.pb.h"
#include "supaplane/v1/types.pb.h"

namespace supaplane::domain {

namespace v1 = ::supaplane::v1;

enum class CommandKind {
  create,
  pause,
  resume,
  remove,  // delete
  rotate_keys,
  suspend,
  unsuspend,
  change_plan,
};

const char* to_string(CommandKind k) noexcept;

/// A request to change a tenant's desired state. Authorization (who may send
/// which command) is checked by the service; the aggregate checks whether the
/// transition is possible.
struct TenantCommand {
  CommandKind kind{CommandKind::pause};
  std::string name;                     // create
  v1::Plan plan{v1::PLAN_UNSPECIFIED};  // create, change_plan
  std::string owner_account_id;         // create
  std::string reason;                   // suspend
};

/// Metadata of the stream message that carried an event.
struct EventMeta {
  std::string ref;
  std::uint64_t sequence{0};
  std::int64_t occurred_at_unix_ms{0};
};

/// True when `state` describes a tenant that was created.
inline bool exists(const v1::TenantState& s) { return s.created_sequence() != 0; }

/// The events `cmd` produces against `state` (empty = accepted, nothing to do),
/// or an error: not_found, already_exists, invalid_argument,
/// failed_precondition.
Result<std::vector<v1::TenantEvent>> decide(const v1::TenantState& state, const TenantCommand& cmd);

/// Applies one event. Unknown kinds (KIND_NOT_SET) only move `version`.
v1::TenantState fold(v1::TenantState state, const v1::TenantEvent& event, const EventMeta& meta);

/// The phase the tenant is reported in, from desired and observed state.
v1::Phase derive_phase(const v1::TenantState& s);

/// COMING_UP | ACTIVE_HEALTHY | UNHEALTHY (the Management API's names).
const char* service_health_name(v1::ServiceHealthStatus h);

/// True when the latest health report has a service UNHEALTHY (ACTIVE_UNHEALTHY).
bool any_service_unhealthy(const v1::TenantState& s);

/// Supabase Management API status name for the tenant (COMING_UP, …).
const char* management_api_status(const v1::TenantState& s);

const char* phase_name(v1::Phase p);

/// "tenant.pause_requested" etc.; "tenant.unknown" for KIND_NOT_SET.
std::string event_type(const v1::TenantEvent& e);

/// True for the plans a customer may choose.
bool valid_plan(v1::Plan p) noexcept;

}  // namespace supaplane::domain
