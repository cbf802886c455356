#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "supaplane/v1/events.pb.h"
#include "supaplane/v1/types.pb.h"

namespace supaplane::domain {

namespace v1 = ::supaplane::v1;

/// What a driver must do to a tenant's stack.
enum class StackAction {
  none,       ///< observed already matches the latest desire
  provision,  ///< create if missing, allow connections (also re-converges a running stack)
  pause,      ///< exist but refuse connections (suspension pauses too)
  resume,     ///< allow connections again
  remove,     ///< delete the stack and everything it owns
};

const char* to_string(StackAction a) noexcept;

/// The provisioner's level-triggered decision: from the latest folded state
/// only (commands queued during a long step collapse into one action), for
/// generation `s.generation()`. Pure.
StackAction plan_convergence(const v1::TenantState& s);

/// What the driver reported back with a successful action.
struct Applied {
  std::int64_t keys_generation{0};  ///< keys the stack now uses
  std::string gateway_url;          ///< where the tenant's API answers
  std::string db_name, db_user, db_schema;
  std::string db_host;  ///< the public database endpoint
  int db_port{0};
  std::string db_upstream;  ///< what the edge forwards db_host to (docker driver)
  std::vector<v1::ServiceHealth> health;
};

/// The outcome event appended after `action` succeeded for `generation`.
v1::TenantEvent outcome_event(StackAction action, std::int64_t generation,
                              const Applied& applied = {});

/// True when the stack still uses keys older than the desired ones: the
/// driver must then end sessions opened with the old credentials.
bool keys_rotation_pending(const v1::TenantState& s);

/// True when `action` on `s` should first be announced with ProvisioningStarted
/// (provisioning a generation not announced yet).
bool announce_start(const v1::TenantState& s, StackAction action);

/// A failed attempt; `final` once retries are exhausted (the tenant goes FAILED).
v1::TenantEvent failure_event(std::int64_t generation, const std::string& reason, int attempt,
                              bool final);

}  // namespace supaplane::domain
