// plan_convergence(): what the provisioner does in each phase, and that the
// outcome it reports settles the tenant.
#include "supaplane/domain/converge.hpp"

#include <gtest/gtest.h>

#include "tenant_fixtures.hpp"

namespace {

using namespace supaplane::domain;
using namespace supaplane::testfix;

TEST(Converge, EveryPhase) {
  const std::vector<std::pair<v1::Phase, StackAction>> cases = {
      {v1::PHASE_PROVISIONING, StackAction::provision},
      {v1::PHASE_ACTIVE, StackAction::none},
      {v1::PHASE_PAUSING, StackAction::pause},
      {v1::PHASE_PAUSED, StackAction::none},
      {v1::PHASE_RESUMING, StackAction::resume},
      {v1::PHASE_SUSPENDED, StackAction::pause},        // suspension pauses the stack
      {v1::PHASE_RECONCILING, StackAction::provision},  // drift: converge again
      {v1::PHASE_DELETING, StackAction::remove},
      {v1::PHASE_DELETED, StackAction::none},
      {v1::PHASE_FAILED, StackAction::none},  // waits for a new desire
  };
  for (const auto& [phase, want] : cases)
    EXPECT_EQ(plan_convergence(in_phase(phase)), want) << phase_name(phase);
  EXPECT_EQ(plan_convergence(v1::TenantState{}), StackAction::none);
}

// Applying the planned outcome always settles the tenant: a second plan is none.
TEST(Converge, OutcomeSettlesEveryPhase) {
  for (int p = v1::PHASE_PROVISIONING; p <= v1::PHASE_FAILED; ++p) {
    auto s = in_phase(static_cast<v1::Phase>(p));
    const auto action = plan_convergence(s);
    if (action == StackAction::none) continue;
    s = fold(s, outcome_event(action, s.generation()), {kRef, s.version() + 1, 1});
    EXPECT_EQ(plan_convergence(s), StackAction::none) << phase_name(static_cast<v1::Phase>(p));
  }
}

TEST(Converge, QueuedCommandsCollapseIntoTheLatestDesire) {
  // pause, resume, pause while provisioning: one pause, for the last generation.
  auto s = in_phase(v1::PHASE_PROVISIONING);
  for (auto k : {CommandKind::pause, CommandKind::resume, CommandKind::pause}) {
    TenantCommand c;
    c.kind = k;
    s = fold(s, decide(s, c)->front(), {kRef, s.version() + 1, 2});
  }
  EXPECT_EQ(plan_convergence(s), StackAction::pause);
  EXPECT_EQ(s.generation(), 4);
  // An outcome for an older generation does not settle the newer desire.
  auto stale = fold(s, outcome_event(StackAction::pause, 2), {kRef, s.version() + 1, 3});
  EXPECT_EQ(plan_convergence(stale), StackAction::pause);
}

TEST(Converge, FailureBecomesFinalThenANewCommandRetries) {
  auto s = in_phase(v1::PHASE_PROVISIONING);
  s = fold(s, failure_event(1, "driver down", 1, false), {kRef, s.version() + 1, 2});
  EXPECT_EQ(s.phase(), v1::PHASE_PROVISIONING);
  EXPECT_EQ(plan_convergence(s), StackAction::provision);  // keeps trying
  s = fold(s, failure_event(1, "driver down", 5, true), {kRef, s.version() + 1, 3});
  EXPECT_EQ(s.phase(), v1::PHASE_FAILED);
  EXPECT_EQ(plan_convergence(s), StackAction::none);
  TenantCommand resume;
  resume.kind = CommandKind::resume;
  s = fold(s, decide(s, resume)->front(), {kRef, s.version() + 1, 4});
  EXPECT_EQ(plan_convergence(s), StackAction::provision);
}

TEST(Converge, UnsuspendResumesAPausedStack) {
  auto s = in_phase(v1::PHASE_SUSPENDED);
  s = fold(s, outcome_event(StackAction::pause, s.generation()), {kRef, s.version() + 1, 2});
  EXPECT_EQ(plan_convergence(s), StackAction::none);
  TenantCommand unsuspend;
  unsuspend.kind = CommandKind::unsuspend;
  s = fold(s, decide(s, unsuspend)->front(), {kRef, s.version() + 1, 3});
  EXPECT_EQ(plan_convergence(s), StackAction::resume);
}

}  // namespace

namespace {

TEST(Converge, ProvisioningIsAnnouncedOncePerGeneration) {
  auto s = in_phase(v1::PHASE_PROVISIONING);
  ASSERT_TRUE(announce_start(s, StackAction::provision));
  v1::TenantEvent started;
  started.mutable_provisioning_started()->set_observed_generation(s.generation());
  s = fold(s, started, {kRef, s.version() + 1, 1});
  EXPECT_EQ(s.active_deployment_count(), 1);
  // Announced: still to be provisioned, but not announced again (no loop on
  // the provisioner's own event).
  EXPECT_EQ(plan_convergence(s), StackAction::provision);
  EXPECT_FALSE(announce_start(s, StackAction::provision));
  // Pause, resume and delete are not "provisioning".
  EXPECT_FALSE(announce_start(in_phase(v1::PHASE_PAUSING), StackAction::pause));
  // A new generation (e.g. a key rotation) is announced again.
  s = fold(s, outcome_event(StackAction::provision, s.generation()), {kRef, s.version() + 1, 2});
  TenantCommand rotate;
  rotate.kind = CommandKind::rotate_keys;
  s = fold(s, decide(s, rotate)->front(), {kRef, s.version() + 1, 3});
  EXPECT_TRUE(keys_rotation_pending(s));
  EXPECT_TRUE(announce_start(s, plan_convergence(s)));
  Applied applied;
  applied.keys_generation = s.keys_generation();
  s = fold(s, outcome_event(StackAction::provision, s.generation(), applied),
           {kRef, s.version() + 1, 4});
  EXPECT_FALSE(keys_rotation_pending(s));
}

}  // namespace
