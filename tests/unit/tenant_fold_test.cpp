// fold(): phases, generations, the single-deployment invariant, statuses.
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>

#include "supaplane/domain/tenant.hpp"
#include "supaplane/events/history.hpp"
#include "supaplane/events/tenant_events.hpp"

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

  // Resuming (generation 3): the progress of the stack being brought up is
  // shown; a report about the paused generation or an older one is not.
  v1::TenantEvent resume;
  resume.mutable_resume_requested()->set_generation(3);
  s = fold(s, resume, {kRef, 13, 6});
  v1::TenantEvent progress;
  progress.mutable_stack_health_changed()->set_observed_generation(3);
  auto* up = progress.mutable_stack_health_changed()->add_services();
  up->set_name("db");
  up->set_status(v1::SERVICE_HEALTH_STATUS_COMING_UP);
  v1::TenantEvent stale = progress;
  stale.mutable_stack_health_changed()->set_observed_generation(1);
  s = fold(s, stale, {kRef, 14, 7});
  EXPECT_EQ(s.services_size(), 0);
  s = fold(s, progress, {kRef, 15, 8});
  EXPECT_EQ(s.phase(), v1::PHASE_RESUMING);
  ASSERT_EQ(s.services_size(), 1);
  EXPECT_EQ(s.services(0).status(), v1::SERVICE_HEALTH_STATUS_COMING_UP);
}

TEST(TenantFold, EventTypeNames) {
  v1::TenantEvent e;
  e.mutable_pause_requested();
  EXPECT_EQ(event_type(e), "tenant.pause_requested");
  e.mutable_keys_rotation_requested();
  EXPECT_EQ(event_type(e), "tenant.keys_rotation_requested");
  EXPECT_EQ(event_type(v1::TenantEvent{}), "tenant.unknown");
}

// A random but valid history of one tenant: decisions through decide(),
// outcomes (with endpoints and health now and then) at the current generation.
std::vector<v1::TenantEvent> random_history(std::mt19937& rng, int steps) {
  std::vector<v1::TenantEvent> out;
  v1::TenantEvent c;
  c.mutable_created()->set_name("shop");
  c.mutable_created()->set_plan(v1::PLAN_FREE);
  c.mutable_created()->set_owner_account_id("acct_aaaaaaaaaaaaaaaaaaaa");
  c.mutable_created()->set_generation(1);
  out.push_back(c);
  auto s = fold({}, c, {kRef, 1, 0});
  for (int step = 0; step < steps; ++step) {
    const int pick = static_cast<int>(rng() % 13);
    v1::TenantEvent e;
    if (pick < 7) {
      TenantCommand cmd;
      cmd.kind = static_cast<CommandKind>(1 + pick);
      cmd.reason = "r";
      cmd.plan = rng() % 2 ? v1::PLAN_PRO : v1::PLAN_FREE;
      auto r = decide(s, cmd);
      if (!r.ok() || r->empty()) continue;
      e = r->front();
    } else {
      const auto g = s.generation();
      switch (pick) {
        case 7:
          e.mutable_provisioning_started()->set_observed_generation(g);
          break;
        case 8: {
          auto* cv = e.mutable_stack_converged();
          cv->set_observed_generation(g);
          cv->set_keys_generation(s.keys_generation());
          cv->set_gateway_url("http://x.gateway.internal:8000");
          auto* h = cv->add_services();
          h->set_name("db");
          h->set_status(rng() % 2 ? v1::SERVICE_HEALTH_STATUS_ACTIVE_HEALTHY
                                  : v1::SERVICE_HEALTH_STATUS_UNHEALTHY);
          break;
        }
        case 9:
          e.mutable_stack_paused()->set_observed_generation(g);
          break;
        case 10:
          e.mutable_converge_failed()->set_observed_generation(g);
          e.mutable_converge_failed()->set_final(rng() % 2 == 0);
          e.mutable_converge_failed()->set_reason("boom");
          break;
        case 11:
          e.mutable_stack_deleted()->set_observed_generation(g);
          break;
        default:
          e.mutable_drift_detected()->set_observed_generation(g);
          break;
      }
    }
    out.push_back(e);
    s = fold(s, e, {kRef, static_cast<std::uint64_t>(out.size()), step});
  }
  return out;
}

std::string random_ref(std::mt19937& rng) {
  std::string ref;
  for (int i = 0; i < 20; ++i) ref += static_cast<char>('a' + rng() % 26);
  return ref;
}

// The provisioner's resync folds every tenant from one replay of the stream
// (tenants interleaved) instead of reading each history: each tenant must
// come out exactly as the per-tenant fold of its own messages, including
// undecodable messages (they move the version) and subjects that name no
// tenant (ignored).
TEST(TenantFolder, OneReplayEqualsPerTenantFoldOnRandomHistories) {
  std::mt19937 rng(7);
  for (int run = 0; run < 20; ++run) {
    // Encoded histories, one queue per tenant, with the real envelope.
    std::map<std::string, std::vector<supaplane::event_store::StoredMessage>> queues;
    const int tenants = 1 + static_cast<int>(rng() % 40);
    for (int t = 0; t < tenants; ++t) {
      const auto ref = random_ref(rng);
      v1::Actor actor;
      actor.set_kind(v1::ACTOR_KIND_SYSTEM);
      actor.set_id("test");
      for (const auto& ev : random_history(rng, static_cast<int>(rng() % 50))) {
        auto out = supaplane::events::make_tenant_event(
            ref, ev, actor, "", supaplane::event_store::Expected::any(), "corr", "", 1000);
        supaplane::event_store::StoredMessage m;
        m.subject = out.subject;
        m.event_type = out.event_type;
        m.data = out.body;
        if (rng() % 25 == 0) m.data = "\xff\xfenot a protobuf";  // undecodable
        queues[ref].push_back(m);
      }
    }
    // Interleave them as the stream would (each tenant's order kept), with
    // messages of other aggregates and a bad ref in between.
    std::vector<supaplane::event_store::StoredMessage> stream;
    std::map<std::string, std::size_t> next;
    std::vector<std::string> refs;
    for (const auto& [ref, _] : queues) refs.push_back(ref);
    while (!refs.empty()) {
      const auto i = rng() % refs.size();
      auto& q = queues[refs[i]];
      stream.push_back(q[next[refs[i]]++]);
      if (next[refs[i]] == q.size()) refs.erase(refs.begin() + static_cast<long>(i));
      if (rng() % 10 == 0) {
        supaplane::event_store::StoredMessage other = stream.back();
        other.subject =
            rng() % 2 ? "platform.account.acct_aaaaaaaaaaaaaaaaaaaa" : "platform.tenant.NOT-A-REF";
        stream.push_back(other);
      }
    }
    std::uint64_t seq = 0;
    for (auto& m : stream) {
      m.sequence = ++seq;
      m.timestamp_ns = static_cast<std::int64_t>(seq) * 1'000'000;
    }
    // Expected: each tenant's messages read alone and folded.
    std::map<std::string, std::vector<supaplane::event_store::StoredMessage>> by_subject;
    for (const auto& m : stream) by_subject[m.subject].push_back(m);

    supaplane::events::TenantFolder folder;
    std::uint64_t ignored = 0;
    for (const auto& m : stream)
      if (!folder.add(m)) ++ignored;
    EXPECT_EQ(folder.folded() + ignored, stream.size());
    ASSERT_EQ(folder.states().size(), queues.size());
    for (const auto& [ref, _] : queues) {
      const auto want = supaplane::events::fold_history(ref, by_subject["platform.tenant." + ref]);
      auto it = folder.states().find(ref);
      ASSERT_NE(it, folder.states().end()) << ref;
      EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(want, it->second))
          << "run " << run << " ref " << ref << "\nwant " << want.ShortDebugString() << "\ngot  "
          << it->second.ShortDebugString();
    }
  }
}

}  // namespace
