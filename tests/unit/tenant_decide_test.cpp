// decide(): every phase × command cell (docs/api.md, "Phase × command").
#include <gtest/gtest.h>

#include <map>

#include "supaplane/domain/tenant.hpp"
#include "tenant_fixtures.hpp"

namespace {

namespace v1 = supaplane::v1;
using supaplane::errc;
using namespace supaplane::domain;
using namespace supaplane::testfix;

// Expected outcome of a cell: an event kind, "noop", or an error.
struct Cell {
  v1::TenantEvent::KindCase event{v1::TenantEvent::KIND_NOT_SET};
  bool noop{false};
  bool error{false};
  errc code{errc::internal};
};
Cell ev(v1::TenantEvent::KindCase k) { return {k, false, false, errc::internal}; }
Cell noop() { return {v1::TenantEvent::KIND_NOT_SET, true, false, errc::internal}; }
Cell err(errc c) { return {v1::TenantEvent::KIND_NOT_SET, false, true, c}; }

using K = v1::TenantEvent::KindCase;
const std::vector<CommandKind> kCommands = {CommandKind::create,      CommandKind::pause,
                                            CommandKind::resume,      CommandKind::remove,
                                            CommandKind::rotate_keys, CommandKind::suspend,
                                            CommandKind::unsuspend,   CommandKind::change_plan};

// Columns follow kCommands.
std::map<v1::Phase, std::vector<Cell>> table() {
  const Cell AE = err(errc::already_exists);
  const Cell FP = err(errc::failed_precondition);
  const auto live = [&](Cell pause, Cell resume) {
    return std::vector<Cell>{AE,
                             pause,
                             resume,
                             ev(K::kDeletionRequested),
                             ev(K::kKeysRotationRequested),
                             ev(K::kSuspended),
                             noop(),
                             ev(K::kPlanChanged)};
  };
  const std::vector<Cell> gone = {AE, FP, FP, noop(), FP, FP, FP, FP};
  return {
      {v1::PHASE_PROVISIONING, live(ev(K::kPauseRequested), noop())},
      {v1::PHASE_ACTIVE, live(ev(K::kPauseRequested), noop())},
      {v1::PHASE_PAUSING, live(noop(), ev(K::kResumeRequested))},
      {v1::PHASE_PAUSED, live(noop(), ev(K::kResumeRequested))},
      {v1::PHASE_RESUMING, live(ev(K::kPauseRequested), noop())},
      {v1::PHASE_SUSPENDED,
       {AE, ev(K::kPauseRequested), FP, ev(K::kDeletionRequested), ev(K::kKeysRotationRequested),
        noop(), ev(K::kUnsuspended), ev(K::kPlanChanged)}},
      {v1::PHASE_RECONCILING, live(ev(K::kPauseRequested), noop())},
      {v1::PHASE_DELETING, gone},
      {v1::PHASE_DELETED, gone},
      // A FAILED tenant can be resumed: that is the retry.
      {v1::PHASE_FAILED, live(ev(K::kPauseRequested), ev(K::kResumeRequested))},
  };
}

TEST(TenantDecide, EveryPhaseTimesEveryCommand) {
  int cells = 0;
  for (const auto& [phase, row] : table()) {
    const v1::TenantState s = in_phase(phase);
    ASSERT_EQ(row.size(), kCommands.size());
    for (std::size_t i = 0; i < kCommands.size(); ++i) {
      TenantCommand c;
      c.kind = kCommands[i];
      c.name = "x";
      c.plan = v1::PLAN_PRO;
      c.owner_account_id = kOwner;
      c.reason = "unpaid";
      const auto r = decide(s, c);
      const Cell& want = row[i];
      SCOPED_TRACE(std::string(phase_name(phase)) + " × " + to_string(c.kind));
      ++cells;
      if (want.error) {
        ASSERT_FALSE(r.ok());
        EXPECT_EQ(r.error().code, want.code);
      } else if (want.noop) {
        ASSERT_TRUE(r.ok()) << r.error().message;
        EXPECT_TRUE(r->empty());
      } else {
        ASSERT_TRUE(r.ok()) << r.error().message;
        ASSERT_EQ(r->size(), 1u);
        EXPECT_EQ(r->front().kind_case(), want.event);
      }
    }
  }
  EXPECT_EQ(cells, 10 * 8);
}

TEST(TenantDecide, NonexistentTenantOnlyAcceptsCreate) {
  v1::TenantState none;
  for (auto k : kCommands) {
    TenantCommand c;
    c.kind = k;
    c.name = "shop";
    c.plan = v1::PLAN_STARTER;
    c.owner_account_id = kOwner;
    c.reason = "r";
    auto r = decide(none, c);
    if (k == CommandKind::create) {
      ASSERT_TRUE(r.ok());
      EXPECT_EQ(r->front().created().generation(), 1);
      EXPECT_EQ(r->front().created().plan(), v1::PLAN_STARTER);
    } else {
      ASSERT_FALSE(r.ok());
      EXPECT_EQ(r.error().code, errc::not_found);
    }
  }
}

TEST(TenantDecide, CreateValidatesNamePlanAndOwner) {
  TenantCommand c;
  c.kind = CommandKind::create;
  c.owner_account_id = kOwner;
  c.plan = v1::PLAN_FREE;
  c.name = "";
  EXPECT_EQ(decide({}, c).error().field, "name");
  c.name = std::string(65, 'a');
  EXPECT_EQ(decide({}, c).error().field, "name");
  c.name = "bad\nname";
  EXPECT_EQ(decide({}, c).error().field, "name");
  c.name = "   ";
  EXPECT_EQ(decide({}, c).error().field, "name");
  c.name = "ok";
  c.plan = v1::PLAN_UNSPECIFIED;
  EXPECT_EQ(decide({}, c).error().field, "plan");
  c.plan = static_cast<v1::Plan>(42);
  EXPECT_EQ(decide({}, c).error().field, "plan");
  c.plan = v1::PLAN_PRO;
  c.owner_account_id = "nobody";
  EXPECT_EQ(decide({}, c).error().code, errc::invalid_argument);
}

TEST(TenantDecide, SuspendNeedsAReason) {
  const auto s = in_phase(v1::PHASE_ACTIVE);
  TenantCommand c;
  c.kind = CommandKind::suspend;
  EXPECT_EQ(decide(s, c).error().field, "reason");
  c.reason = std::string(257, 'r');
  EXPECT_EQ(decide(s, c).error().field, "reason");
}

TEST(TenantDecide, PauseWhileProvisioningIsQueued) {
  auto s = in_phase(v1::PHASE_PROVISIONING);
  TenantCommand c;
  c.kind = CommandKind::pause;
  auto r = decide(s, c);
  ASSERT_TRUE(r.ok());
  s = fold(s, r->front(), {kRef, 10, 5000});
  EXPECT_EQ(s.phase(), v1::PHASE_PAUSING);
  EXPECT_EQ(s.desired_state(), v1::DESIRED_STATE_PAUSED);
  EXPECT_EQ(s.generation(), 2);
  c.kind = CommandKind::resume;
  s = fold(s, decide(s, c)->front(), {kRef, 11, 5001});
  EXPECT_EQ(s.phase(), v1::PHASE_PROVISIONING);  // never active yet
  EXPECT_EQ(s.generation(), 3);
}

TEST(TenantDecide, DeleteIsFinal) {
  auto s = in_phase(v1::PHASE_DELETING);
  for (auto k : {CommandKind::pause, CommandKind::resume, CommandKind::unsuspend}) {
    TenantCommand c;
    c.kind = k;
    EXPECT_EQ(decide(s, c).error().code, errc::failed_precondition);
  }
}

TEST(TenantDecide, SuspendedTenantCannotBeResumedUntilUnsuspended) {
  auto s = in_phase(v1::PHASE_SUSPENDED);
  TenantCommand pause;
  pause.kind = CommandKind::pause;
  s = fold(s, decide(s, pause)->front(), {kRef, 20, 1});
  TenantCommand resume;
  resume.kind = CommandKind::resume;
  EXPECT_EQ(decide(s, resume).error().code, errc::failed_precondition);
  TenantCommand unsuspend;
  unsuspend.kind = CommandKind::unsuspend;
  s = fold(s, decide(s, unsuspend)->front(), {kRef, 21, 2});
  EXPECT_FALSE(s.suspended());
  auto r = decide(s, resume);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->front().kind_case(), K::kResumeRequested);
}

}  // namespace

namespace {

TEST(TenantDecide, RepeatingTheDesireOfAFailedTenantIsTheRetry) {
  using namespace supaplane::testfix;
  // A tenant that failed to pause: pause again is a new desire, not a no-op.
  auto s = in_phase(v1::PHASE_PAUSING);
  v1::TenantEvent failed;
  failed.mutable_converge_failed()->set_observed_generation(s.generation());
  failed.mutable_converge_failed()->set_final(true);
  s = fold(s, failed, {kRef, s.version() + 1, 5});
  ASSERT_EQ(s.phase(), v1::PHASE_FAILED);
  TenantCommand pause;
  pause.kind = CommandKind::pause;
  auto r = decide(s, pause);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ(r->front().pause_requested().generation(), s.generation() + 1);
}

}  // namespace
