// fold(): phases, generations, the single-deployment invariant, statuses.
#include <gtest/gtest.h>

#include <random>

#include "supaplane/domain/tenant.hpp"

namespace {

namespace v1 = supaplane::v1;
using namespace supaplane::domain;

constexpr const char* kRef = "abcdefghijklmnopqrst";

v1::TenantState created() {
  v1::TenantEvent e;
  auto* c = e.mutable_created();
  c->set_name("shop");
  c->set_plan(v1::PLAN_FREE);
  c->set_owner_account_id("acct_aaaaaaaaaaaaaaaaaaaa");
  c->set_generation(1);
  return fold({}, e, {kRef, 7, 1234});
}

TEST(TenantFold, CreatedIsProvisioningComingUp) {
  const auto s = created();
  EXPECT_EQ(s.ref(), kRef);
  EXPECT_EQ(s.phase(), v1::PHASE_PROVISIONING);
  EXPECT_STREQ(management_api_status(s), "COMING_UP");
  EXPECT_EQ(s.generation(), 1);
  EXPECT_EQ(s.observed_generation(), 0);
  EXPECT_EQ(s.version(), 7u);
  EXPECT_EQ(s.created_sequence(), 7u);
  EXPECT_EQ(s.created_at_unix_ms(), 1234);
  EXPECT_EQ(s.active_deployment_count(), 0);
}

TEST(TenantFold, ConvergedAtCurrentGenerationIsActive) {
  auto s = created();
  v1::TenantEvent e;
  e.mutable_stack_converged()->set_observed_generation(1);
  s = fold(s, e, {kRef, 8, 2000});
  EXPECT_EQ(s.phase(), v1::PHASE_ACTIVE);
  EXPECT_STREQ(management_api_status(s), "ACTIVE_HEALTHY");
  EXPECT_EQ(s.active_deployment_count(), 1);
  EXPECT_EQ(s.updated_at_unix_ms(), 2000);
}

TEST(TenantFold, StaleOutcomeDoesNotSettleNewerDesire) {
  auto s = created();
  v1::TenantEvent pause;
  pause.mutable_pause_requested()->set_generation(2);
  s = fold(s, pause, {kRef, 8, 1});
  v1::TenantEvent conv;  // the provisioner finished generation 1 only
  conv.mutable_stack_converged()->set_observed_generation(1);
  s = fold(s, conv, {kRef, 9, 2});
  EXPECT_EQ(s.phase(), v1::PHASE_PAUSING);
  v1::TenantEvent paused;
  paused.mutable_stack_paused()->set_observed_generation(2);
  s = fold(s, paused, {kRef, 10, 3});
  EXPECT_EQ(s.phase(), v1::PHASE_PAUSED);
  EXPECT_STREQ(management_api_status(s), "INACTIVE");
}

TEST(TenantFold, UnknownKindOnlyMovesVersion) {
  auto s = created();
  const auto before = s;
  s = fold(s, v1::TenantEvent{}, {kRef, 99, 5});
  EXPECT_EQ(s.version(), 99u);
  EXPECT_EQ(s.phase(), before.phase());
  EXPECT_EQ(s.generation(), before.generation());
}

TEST(TenantFold, StatusNamesAreSupabaseManagementApiNames) {
  auto s = created();
  v1::TenantEvent del;
  del.mutable_deletion_requested()->set_generation(2);
  s = fold(s, del, {kRef, 8, 1});
  EXPECT_STREQ(management_api_status(s), "GOING_DOWN");
  v1::TenantEvent gone;
  gone.mutable_stack_deleted()->set_observed_generation(2);
  s = fold(s, gone, {kRef, 9, 1});
  EXPECT_EQ(s.phase(), v1::PHASE_DELETED);
  EXPECT_STREQ(management_api_status(s), "REMOVED");
  EXPECT_EQ(s.active_deployment_count(), 0);
}

TEST(TenantFold, FailedStatusDependsOnWhatFailed) {
  auto s = created();
  v1::TenantEvent f;
  f.mutable_converge_failed()->set_observed_generation(1);
  f.mutable_converge_failed()->set_final(true);
  f.mutable_converge_failed()->set_reason("boom");
  s = fold(s, f, {kRef, 8, 1});
  EXPECT_EQ(s.phase(), v1::PHASE_FAILED);
  EXPECT_STREQ(management_api_status(s), "INIT_FAILED");
  EXPECT_EQ(s.last_error(), "boom");
}

// Random decisions and outcomes: generation grows by one per decision event,
// and active_deployment_count stays in {0, 1}.
TEST(TenantFold, RandomHistoriesKeepInvariants) {
  std::mt19937 rng(42);
  for (int run = 0; run < 200; ++run) {
    auto s = created();
    std::uint64_t seq = 7;
    for (int step = 0; step < 60; ++step) {
      const int pick = static_cast<int>(rng() % 12);
      v1::TenantEvent e;
      if (pick < 7) {
        TenantCommand c;
        c.kind = static_cast<CommandKind>(1 + pick);  // every command but create
        c.reason = "r";
        c.plan = rng() % 2 ? v1::PLAN_PRO : v1::PLAN_FREE;
        auto r = decide(s, c);
        if (!r.ok() || r->empty()) continue;
        const auto gen_before = s.generation();
        s = fold(s, r->front(), {kRef, ++seq, step});
        EXPECT_EQ(s.generation(), gen_before + 1);
        continue;
      }
      const auto g = s.generation();
      switch (pick) {
        case 7:
          e.mutable_provisioning_started()->set_observed_generation(g);
          break;
        case 8:
          e.mutable_stack_converged()->set_observed_generation(g);
          break;
        case 9:
          e.mutable_stack_paused()->set_observed_generation(g);
          break;
        case 10:
          e.mutable_stack_deleted()->set_observed_generation(g);
          break;
        default:
          e.mutable_drift_detected()->set_observed_generation(g);
          break;
      }
      s = fold(s, e, {kRef, ++seq, step});
      EXPECT_GE(s.active_deployment_count(), 0);
      EXPECT_LE(s.active_deployment_count(), 1);
      EXPECT_NE(s.phase(), v1::PHASE_UNSPECIFIED);
    }
  }
}

TEST(TenantFold, HealthReportsDecideActiveHealthyOrUnhealthy) {
  auto s = created();
  v1::TenantEvent conv;
  auto* c = conv.mutable_stack_converged();
  c->set_observed_generation(1);
  c->mutable_database()->set_name("postgres");
  c->mutable_database()->set_host("db.example");
  c->mutable_database()->set_port(6543);
  c->mutable_database()->set_upstream("sp-x-pooler:6543");
  auto* h = c->add_services();
  h->set_name("db");
  h->set_status(v1::SERVICE_HEALTH_STATUS_ACTIVE_HEALTHY);
  s = fold(s, conv, {kRef, 8, 1});
  EXPECT_EQ(s.db_host(), "db.example");
  EXPECT_EQ(s.db_port(), 6543);
  EXPECT_EQ(s.db_upstream(), "sp-x-pooler:6543");
  ASSERT_EQ(s.services_size(), 1);
  EXPECT_STREQ(management_api_status(s), "ACTIVE_HEALTHY");

  v1::TenantEvent sick;
  sick.mutable_stack_health_changed()->set_observed_generation(1);
  auto* bad = sick.mutable_stack_health_changed()->add_services();
  bad->set_name("db");
  bad->set_status(v1::SERVICE_HEALTH_STATUS_UNHEALTHY);
  s = fold(s, sick, {kRef, 9, 2});
  EXPECT_EQ(s.phase(), v1::PHASE_ACTIVE);
  EXPECT_STREQ(management_api_status(s), "ACTIVE_UNHEALTHY");

  // A report about another generation says nothing about this stack.
  v1::TenantEvent late = sick;
  late.mutable_stack_health_changed()->set_observed_generation(0);
  late.mutable_stack_health_changed()->mutable_services(0)->set_status(
      v1::SERVICE_HEALTH_STATUS_ACTIVE_HEALTHY);
  s = fold(s, late, {kRef, 10, 3});
  EXPECT_STREQ(management_api_status(s), "ACTIVE_UNHEALTHY");

  // Paused: nothing runs, nothing is reported.
  v1::TenantEvent pause;
  pause.mutable_pause_requested()->set_generation(2);
  s = fold(s, pause, {kRef, 11, 4});
  v1::TenantEvent paused;
  paused.mutable_stack_paused()->set_observed_generation(2);
  s = fold(s, paused, {kRef, 12, 5});
  EXPECT_EQ(s.services_size(), 0);
  EXPECT_STREQ(service_health_name(v1::SERVICE_HEALTH_STATUS_UNHEALTHY), "UNHEALTHY");
  EXPECT_STREQ(service_health_name(v1::SERVICE_HEALTH_STATUS_COMING_UP), "COMING_UP");
}

TEST(TenantFold, EventTypeNames) {
  v1::TenantEvent e;
  e.mutable_pause_requested();
  EXPECT_EQ(event_type(e), "tenant.pause_requested");
  e.mutable_keys_rotation_requested();
  EXPECT_EQ(event_type(e), "tenant.keys_rotation_requested");
  EXPECT_EQ(event_type(v1::TenantEvent{}), "tenant.unknown");
}

}  // namespace
