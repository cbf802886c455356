#pragma once
// Tenant states in every phase, built through decide + fold, for unit tests.
#include <gtest/gtest.h>

#include "supaplane/domain/tenant.hpp"

namespace supaplane::testfix {

namespace v1 = supaplane::v1;
using namespace supaplane::domain;

inline constexpr const char* kOwner = "acct_aaaaaaaaaaaaaaaaaaaa";
inline constexpr const char* kRef = "abcdefghijklmnopqrst";

struct Builder {
  v1::TenantState s;
  std::uint64_t seq = 0;
  Builder& apply(const v1::TenantEvent& e) {
    s = fold(s, e, {kRef, ++seq, 1000 + static_cast<std::int64_t>(seq)});
    return *this;
  }
  Builder& cmd(CommandKind k) {
    TenantCommand c;
    c.kind = k;
    c.reason = "unpaid";
    c.plan = v1::PLAN_PRO;
    auto r = decide(s, c);
    EXPECT_TRUE(r.ok()) << to_string(k);
    if (r.ok())
      for (const auto& e : *r) apply(e);
    return *this;
  }
  Builder& created() {
    TenantCommand c;
    c.kind = CommandKind::create;
    c.name = "shop";
    c.plan = v1::PLAN_FREE;
    c.owner_account_id = kOwner;
    apply(decide(s, c).value().front());
    return *this;
  }
  Builder& outcome(void (*set)(v1::TenantEvent&, std::int64_t)) {
    v1::TenantEvent e;
    set(e, s.generation());
    return apply(e);
  }
};

inline void converged(v1::TenantEvent& e, std::int64_t g) {
  e.mutable_stack_converged()->set_observed_generation(g);
}
inline void paused(v1::TenantEvent& e, std::int64_t g) {
  e.mutable_stack_paused()->set_observed_generation(g);
}
inline void deleted(v1::TenantEvent& e, std::int64_t g) {
  e.mutable_stack_deleted()->set_observed_generation(g);
}
inline void drift(v1::TenantEvent& e, std::int64_t g) {
  e.mutable_drift_detected()->set_observed_generation(g);
}
inline void failed(v1::TenantEvent& e, std::int64_t g) {
  auto* f = e.mutable_converge_failed();
  f->set_observed_generation(g);
  f->set_reason("driver error");
  f->set_final(true);
}

inline v1::TenantState in_phase(v1::Phase p) {
  Builder b;
  switch (p) {
    case v1::PHASE_PROVISIONING:
      b.created();
      break;
    case v1::PHASE_ACTIVE:
      b.created().outcome(converged);
      break;
    case v1::PHASE_PAUSING:
      b.created().outcome(converged).cmd(CommandKind::pause);
      break;
    case v1::PHASE_PAUSED:
      b.created().outcome(converged).cmd(CommandKind::pause).outcome(paused);
      break;
    case v1::PHASE_RESUMING:
      b.created()
          .outcome(converged)
          .cmd(CommandKind::pause)
          .outcome(paused)
          .cmd(CommandKind::resume);
      break;
    case v1::PHASE_SUSPENDED:
      b.created().outcome(converged).cmd(CommandKind::suspend);
      break;
    case v1::PHASE_RECONCILING:
      b.created().outcome(converged).outcome(drift);
      break;
    case v1::PHASE_DELETING:
      b.created().outcome(converged).cmd(CommandKind::remove);
      break;
    case v1::PHASE_DELETED:
      b.created().outcome(converged).cmd(CommandKind::remove).outcome(deleted);
      break;
    case v1::PHASE_FAILED:
      b.created().outcome(failed);
      break;
    default:
      break;
  }
  EXPECT_EQ(b.s.phase(), p) << phase_name(p);
  return b.s;
}

}  // namespace supaplane::testfix
