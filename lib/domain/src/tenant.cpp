#include "supaplane/domain/tenant.hpp"

#include "supaplane/core/ids.hpp"

namespace supaplane::domain {

const char* to_string(CommandKind k) noexcept {
  switch (k) {
    case CommandKind::create:
      return "create";
    case CommandKind::pause:
      return "pause";
    case CommandKind::resume:
      return "resume";
    case CommandKind::remove:
      return "delete";
    case CommandKind::rotate_keys:
      return "rotate_keys";
    case CommandKind::suspend:
      return "suspend";
    case CommandKind::unsuspend:
      return "unsuspend";
    case CommandKind::change_plan:
      return "change_plan";
  }
  return "unknown";
}

bool valid_plan(v1::Plan p) noexcept {
  return p == v1::PLAN_FREE || p == v1::PLAN_STARTER || p == v1::PLAN_PRO;
}

namespace {

std::vector<v1::TenantEvent> one(v1::TenantEvent e) {
  std::vector<v1::TenantEvent> v;
  v.push_back(std::move(e));
  return v;
}

Error precondition(std::string msg) {
  return make_error(errc::failed_precondition, std::move(msg));
}

}  // namespace

Result<std::vector<v1::TenantEvent>> decide(const v1::TenantState& s, const TenantCommand& cmd) {
  const std::vector<v1::TenantEvent> nothing;
  if (cmd.kind == CommandKind::create) {
    if (exists(s)) return make_error(errc::already_exists, "tenant already exists");
    if (auto st = ids::validate_tenant_name(cmd.name); !st) return st.error();
    if (!valid_plan(cmd.plan))
      return make_error(errc::invalid_argument, "plan must be FREE, STARTER or PRO", "plan");
    if (!ids::valid_account_id(cmd.owner_account_id))
      return make_error(errc::invalid_argument, "owner account id is malformed",
                        "owner_account_id");
    v1::TenantEvent e;
    auto* c = e.mutable_created();
    c->set_name(cmd.name);
    c->set_plan(cmd.plan);
    c->set_owner_account_id(cmd.owner_account_id);
    c->set_generation(1);
    return one(std::move(e));
  }
  if (!exists(s)) return make_error(errc::not_found, "tenant not found");

  const bool deleting = s.desired_state() == v1::DESIRED_STATE_DELETED;
  if (deleting) {
    if (cmd.kind == CommandKind::remove) return nothing;  // delete is final and idempotent
    return precondition("tenant is deleted or being deleted; only delete is accepted");
  }
  const std::int64_t next = s.generation() + 1;
  v1::TenantEvent e;
  switch (cmd.kind) {
    case CommandKind::create:
      break;  // handled above
    case CommandKind::pause:
      // Pausing a tenant that FAILED to pause records the desire again: a retry.
      if (s.desired_state() == v1::DESIRED_STATE_PAUSED &&
          s.observed_state() != v1::OBSERVED_STATE_FAILED)
        return nothing;
      e.mutable_pause_requested()->set_generation(next);
      return one(std::move(e));
    case CommandKind::resume:
      if (s.suspended())
        return precondition("tenant is suspended; it can be resumed after it is unsuspended");
      if (s.desired_state() == v1::DESIRED_STATE_RUNNING &&
          s.observed_state() != v1::OBSERVED_STATE_FAILED)
        return nothing;
      // Resuming a FAILED tenant records a new desire: the provisioner retries.
      e.mutable_resume_requested()->set_generation(next);
      return one(std::move(e));
    case CommandKind::remove:
      e.mutable_deletion_requested()->set_generation(next);
      return one(std::move(e));
    case CommandKind::rotate_keys:
      e.mutable_keys_rotation_requested()->set_generation(next);
      return one(std::move(e));
    case CommandKind::suspend:
      if (cmd.reason.empty() || cmd.reason.size() > 256)
        return make_error(errc::invalid_argument, "reason must be 1..256 bytes", "reason");
      if (s.suspended()) return nothing;
      e.mutable_suspended()->set_reason(cmd.reason);
      e.mutable_suspended()->set_generation(next);
      return one(std::move(e));
    case CommandKind::unsuspend:
      if (!s.suspended()) return nothing;
      e.mutable_unsuspended()->set_generation(next);
      return one(std::move(e));
    case CommandKind::change_plan:
      if (!valid_plan(cmd.plan))
        return make_error(errc::invalid_argument, "plan must be FREE, STARTER or PRO", "plan");
      if (s.plan() == cmd.plan) return nothing;
      e.mutable_plan_changed()->set_plan(cmd.plan);
      e.mutable_plan_changed()->set_generation(next);
      return one(std::move(e));
  }
  return make_error(errc::internal, "unhandled command");
}

namespace {
void apply_database(v1::TenantState& s, const v1::TenantDatabase& d) {
  if (d.name().empty()) return;  // outcomes recorded before the field existed
  s.set_db_name(d.name());
  s.set_db_user(d.user());
  s.set_db_schema(d.schema());
  s.set_db_host(d.host());
  s.set_db_port(d.port());
  s.set_db_upstream(d.upstream());
}

template <typename Services>
void apply_health(v1::TenantState& s, const Services& services) {
  s.clear_services();
  for (const auto& h : services) *s.add_services() = h;
}
}  // namespace

v1::TenantState fold(v1::TenantState s, const v1::TenantEvent& e, const EventMeta& meta) {
  using K = v1::TenantEvent::KindCase;
  switch (e.kind_case()) {
    case K::kCreated: {
      if (exists(s)) break;  // a second create cannot be appended (expected seq 0); ignore
      const auto& c = e.created();
      s.set_ref(meta.ref);
      s.set_name(c.name());
      s.set_plan(c.plan());
      s.set_owner_account_id(c.owner_account_id());
      s.set_desired_state(v1::DESIRED_STATE_RUNNING);
      s.set_observed_state(v1::OBSERVED_STATE_NONE);
      s.set_generation(c.generation() > 0 ? c.generation() : 1);
      s.set_created_at_unix_ms(meta.occurred_at_unix_ms);
      s.set_created_sequence(meta.sequence);
      break;
    }
    case K::kPauseRequested:
      s.set_desired_state(v1::DESIRED_STATE_PAUSED);
      s.set_generation(e.pause_requested().generation());
      break;
    case K::kResumeRequested:
      s.set_desired_state(v1::DESIRED_STATE_RUNNING);
      s.set_generation(e.resume_requested().generation());
      break;
    case K::kDeletionRequested:
      s.set_desired_state(v1::DESIRED_STATE_DELETED);
      s.set_generation(e.deletion_requested().generation());
      break;
    case K::kKeysRotationRequested:
      s.set_generation(e.keys_rotation_requested().generation());
      s.set_keys_generation(s.generation());
      break;
    case K::kSuspended:
      s.set_suspended(true);
      s.set_suspend_reason(e.suspended().reason());
      s.set_generation(e.suspended().generation());
      break;
    case K::kUnsuspended:
      s.set_suspended(false);
      s.clear_suspend_reason();
      s.set_generation(e.unsuspended().generation());
      break;
    case K::kPlanChanged:
      s.set_plan(e.plan_changed().plan());
      s.set_generation(e.plan_changed().generation());
      break;
    case K::kProvisioningStarted:
      // One deployment exists from now on (being built); drift stays until
      // an outcome says it is repaired.
      s.set_active_deployment_count(1);
      s.set_started_generation(e.provisioning_started().observed_generation());
      break;
    case K::kStackConverged:
      s.set_observed_state(v1::OBSERVED_STATE_RUNNING);
      s.set_observed_generation(e.stack_converged().observed_generation());
      s.set_applied_keys_generation(e.stack_converged().keys_generation());
      if (!e.stack_converged().gateway_url().empty())
        s.set_gateway_url(e.stack_converged().gateway_url());
      apply_database(s, e.stack_converged().database());
      apply_health(s, e.stack_converged().services());
      s.set_ever_active(true);
      s.set_active_deployment_count(1);
      s.set_drifted(false);
      s.clear_last_error();
      break;
    case K::kStackPaused:
      s.set_observed_state(v1::OBSERVED_STATE_PAUSED);
      s.set_observed_generation(e.stack_paused().observed_generation());
      s.set_applied_keys_generation(e.stack_paused().keys_generation());
      s.set_active_deployment_count(1);  // paused: the deployment still exists
      s.set_drifted(false);
      s.clear_services();  // nothing runs
      s.clear_last_error();
      break;
    case K::kStackResumed:
      s.set_observed_state(v1::OBSERVED_STATE_RUNNING);
      s.set_observed_generation(e.stack_resumed().observed_generation());
      s.set_applied_keys_generation(e.stack_resumed().keys_generation());
      if (!e.stack_resumed().gateway_url().empty())
        s.set_gateway_url(e.stack_resumed().gateway_url());
      apply_database(s, e.stack_resumed().database());
      apply_health(s, e.stack_resumed().services());
      s.set_ever_active(true);
      s.set_active_deployment_count(1);
      s.set_drifted(false);
      s.clear_last_error();
      break;
    case K::kStackDeleted:
      s.set_observed_state(v1::OBSERVED_STATE_DELETED);
      s.set_observed_generation(e.stack_deleted().observed_generation());
      s.set_active_deployment_count(0);
      s.set_drifted(false);
      s.clear_services();
      break;
    case K::kConvergeFailed:
      s.set_last_error(e.converge_failed().reason());
      if (e.converge_failed().final()) {
        s.set_observed_state(v1::OBSERVED_STATE_FAILED);
        s.set_observed_generation(e.converge_failed().observed_generation());
      }
      break;
    case K::kDriftDetected:
      s.set_drifted(true);
      break;
    case K::kStackHealthChanged: {
      // Only a report about the generation the stack runs counts (a late one
      // about an older stack says nothing about this one), or the progress
      // of the generation being brought up (provision, resume: services
      // COMING_UP, then ACTIVE_HEALTHY one by one).
      const std::int64_t g = e.stack_health_changed().observed_generation();
      if (g == s.observed_generation() || (g == s.generation() && g > s.observed_generation()))
        apply_health(s, e.stack_health_changed().services());
      break;
    }
    case K::KIND_NOT_SET:
      break;
  }
  if (meta.sequence > s.version()) s.set_version(meta.sequence);
  if (exists(s)) s.set_updated_at_unix_ms(meta.occurred_at_unix_ms);
  if (exists(s)) s.set_phase(derive_phase(s));
  return s;
}

v1::Phase derive_phase(const v1::TenantState& s) {
  if (!exists(s)) return v1::PHASE_UNSPECIFIED;
  if (s.observed_state() == v1::OBSERVED_STATE_DELETED) return v1::PHASE_DELETED;
  if (s.desired_state() == v1::DESIRED_STATE_DELETED) return v1::PHASE_DELETING;
  const bool settled = s.observed_generation() == s.generation();
  if (s.observed_state() == v1::OBSERVED_STATE_FAILED && settled) return v1::PHASE_FAILED;
  if (s.suspended()) return v1::PHASE_SUSPENDED;
  if (s.drifted()) return v1::PHASE_RECONCILING;
  if (s.desired_state() == v1::DESIRED_STATE_PAUSED) {
    return settled && s.observed_state() == v1::OBSERVED_STATE_PAUSED ? v1::PHASE_PAUSED
                                                                      : v1::PHASE_PAUSING;
  }
  // desired RUNNING
  if (settled && s.observed_state() == v1::OBSERVED_STATE_RUNNING) return v1::PHASE_ACTIVE;
  if (!s.ever_active()) return v1::PHASE_PROVISIONING;
  if (s.observed_state() == v1::OBSERVED_STATE_PAUSED) return v1::PHASE_RESUMING;
  return v1::PHASE_RECONCILING;
}

const char* service_health_name(v1::ServiceHealthStatus h) {
  switch (h) {
    case v1::SERVICE_HEALTH_STATUS_ACTIVE_HEALTHY:
      return "ACTIVE_HEALTHY";
    case v1::SERVICE_HEALTH_STATUS_UNHEALTHY:
      return "UNHEALTHY";
    default:
      return "COMING_UP";
  }
}

bool any_service_unhealthy(const v1::TenantState& s) {
  for (const auto& h : s.services())
    if (h.status() == v1::SERVICE_HEALTH_STATUS_UNHEALTHY) return true;
  return false;
}

const char* management_api_status(const v1::TenantState& s) {
  switch (derive_phase(s)) {
    case v1::PHASE_PROVISIONING:
      return "COMING_UP";
    case v1::PHASE_ACTIVE:
      return any_service_unhealthy(s) ? "ACTIVE_UNHEALTHY" : "ACTIVE_HEALTHY";
    case v1::PHASE_PAUSING:
      return "PAUSING";
    case v1::PHASE_PAUSED:
      return "INACTIVE";
    case v1::PHASE_RESUMING:
      return "RESTORING";
    case v1::PHASE_SUSPENDED:
      return "INACTIVE";
    case v1::PHASE_RECONCILING:
      return "ACTIVE_UNHEALTHY";
    case v1::PHASE_DELETING:
      return "GOING_DOWN";
    case v1::PHASE_DELETED:
      return "REMOVED";
    case v1::PHASE_FAILED:
      if (s.desired_state() == v1::DESIRED_STATE_PAUSED) return "PAUSE_FAILED";
      return s.ever_active() ? "RESTORE_FAILED" : "INIT_FAILED";
    default:
      return "UNKNOWN";
  }
}

const char* phase_name(v1::Phase p) {
  switch (p) {
    case v1::PHASE_PROVISIONING:
      return "PROVISIONING";
    case v1::PHASE_ACTIVE:
      return "ACTIVE";
    case v1::PHASE_PAUSING:
      return "PAUSING";
    case v1::PHASE_PAUSED:
      return "PAUSED";
    case v1::PHASE_RESUMING:
      return "RESUMING";
    case v1::PHASE_SUSPENDED:
      return "SUSPENDED";
    case v1::PHASE_RECONCILING:
      return "RECONCILING";
    case v1::PHASE_DELETING:
      return "DELETING";
    case v1::PHASE_DELETED:
      return "DELETED";
    case v1::PHASE_FAILED:
      return "FAILED";
    default:
      return "UNSPECIFIED";
  }
}

std::string event_type(const v1::TenantEvent& e) {
  if (e.kind_case() == v1::TenantEvent::KIND_NOT_SET) return "tenant.unknown";
  const auto* field = e.GetDescriptor()->FindFieldByNumber(static_cast<int>(e.kind_case()));
  return "tenant." + (field ? field->name() : std::string("unknown"));
}

}  // namespace supaplane::domain
