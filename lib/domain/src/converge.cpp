#include "supaplane/domain/converge.hpp"

#include "supaplane/domain/tenant.hpp"

namespace supaplane::domain {

const char* to_string(StackAction a) noexcept {
  switch (a) {
    case StackAction::none:
      return "none";
    case StackAction::provision:
      return "provision";
    case StackAction::pause:
      return "pause";
    case StackAction::resume:
      return "resume";
    case StackAction::remove:
      return "remove";
  }
  return "unknown";
}

StackAction plan_convergence(const v1::TenantState& s) {
  if (!exists(s) || s.observed_state() == v1::OBSERVED_STATE_DELETED) return StackAction::none;
  const bool settled = s.observed_generation() == s.generation() && !s.drifted();
  if (s.desired_state() == v1::DESIRED_STATE_DELETED) return StackAction::remove;
  // A FAILED tenant waits for a new desire (a later command or an admin retry).
  if (settled && s.observed_state() == v1::OBSERVED_STATE_FAILED) return StackAction::none;
  const bool want_paused = s.suspended() || s.desired_state() == v1::DESIRED_STATE_PAUSED;
  if (want_paused) {
    return settled && s.observed_state() == v1::OBSERVED_STATE_PAUSED ? StackAction::none
                                                                      : StackAction::pause;
  }
  if (settled && s.observed_state() == v1::OBSERVED_STATE_RUNNING) return StackAction::none;
  if (s.observed_state() == v1::OBSERVED_STATE_PAUSED) return StackAction::resume;
  return StackAction::provision;
}

namespace {
void set_database(v1::TenantDatabase* d, const Applied& a) {
  d->set_name(a.db_name);
  d->set_user(a.db_user);
  d->set_schema(a.db_schema);
  d->set_host(a.db_host);
  d->set_port(a.db_port);
  d->set_upstream(a.db_upstream);
}
}  // namespace

v1::TenantEvent outcome_event(StackAction action, std::int64_t generation, const Applied& applied) {
  v1::TenantEvent e;
  switch (action) {
    case StackAction::provision: {
      auto* c = e.mutable_stack_converged();
      c->set_observed_generation(generation);
      c->set_keys_generation(applied.keys_generation);
      c->set_gateway_url(applied.gateway_url);
      set_database(c->mutable_database(), applied);
      for (const auto& h : applied.health) *c->add_services() = h;
      break;
    }
    case StackAction::pause:
      e.mutable_stack_paused()->set_observed_generation(generation);
      e.mutable_stack_paused()->set_keys_generation(applied.keys_generation);
      break;
    case StackAction::resume: {
      auto* r = e.mutable_stack_resumed();
      r->set_observed_generation(generation);
      r->set_keys_generation(applied.keys_generation);
      r->set_gateway_url(applied.gateway_url);
      set_database(r->mutable_database(), applied);
      for (const auto& h : applied.health) *r->add_services() = h;
      break;
    }
    case StackAction::remove:
      e.mutable_stack_deleted()->set_observed_generation(generation);
      break;
    case StackAction::none:
      break;
  }
  return e;
}

bool announce_start(const v1::TenantState& s, StackAction action) {
  return action == StackAction::provision && s.started_generation() < s.generation();
}

bool keys_rotation_pending(const v1::TenantState& s) {
  return s.ever_active() && s.applied_keys_generation() < s.keys_generation();
}

v1::TenantEvent failure_event(std::int64_t generation, const std::string& reason, int attempt,
                              bool final) {
  v1::TenantEvent e;
  auto* f = e.mutable_converge_failed();
  f->set_observed_generation(generation);
  f->set_reason(reason);
  f->set_attempt(attempt);
  f->set_final(final);
  return e;
}

}  // namespace supaplane::domain
