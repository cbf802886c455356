// The provisioner's decide / append on an in-memory log, a fake driver and
// in-memory secrets: what it appends, and a race lost to a newer command.
#include <gtest/gtest.h>

#include <mutex>

#include "fakes.hpp"
#include "provisioner.hpp"
#include "supaplane/domain/tenant.hpp"
#include "supaplane/events/history.hpp"
#include "supaplane/events/tenant_events.hpp"

namespace {

using namespace supaplane;
using supaplane::testing::FakeEventLog;
using supaplane::testing::FakeSecretStore;
using supaplane::testing::RecordingSleeper;

const std::string kRef = "abcdefghijklmnopqrst";
const std::string kSubject = "platform.tenant." + kRef;

/// Records its calls; every action succeeds and the stack serves at once.
class FakeDriver final : public driver::Driver {
 public:
  const char* name() const override { return "fake"; }
  Result<driver::Progress> provision(const driver::StackRequest& r) override {
    record("provision " + r.ref);
    return done();
  }
  Status pause(const driver::StackRequest& r) override {
    record("pause " + r.ref);
    return Status::Ok();
  }
  Result<driver::Progress> resume(const driver::StackRequest& r) override {
    record("resume " + r.ref);
    return done();
  }
  Status remove(const std::string& ref) override {
    record("remove " + ref);
    return Status::Ok();
  }
  Result<driver::StackStatus> observe(const std::string&, bool) override {
    return driver::StackStatus{};
  }
  driver::Endpoints endpoints(const std::string& ref) const override {
    driver::Endpoints e;
    e.gateway_url = "http://" + ref + ":8000";
    e.db_host = "db";
    return e;
  }
  std::vector<std::string> calls() {
    std::lock_guard lk(mu_);
    return calls_;
  }

 private:
  static driver::Progress done() {
    driver::Progress p;
    p.done = true;
    return p;
  }
  void record(std::string c) {
    std::lock_guard lk(mu_);
    calls_.push_back(std::move(c));
  }
  std::mutex mu_;
  std::vector<std::string> calls_;
};

class FixedClock final : public Clock {
 public:
  std::int64_t now_unix_ms() const override { return 1'800'000'000'000; }
};

v1::Actor account() {
  v1::Actor a;
  a.set_kind(v1::ACTOR_KIND_ACCOUNT);
  a.set_id("acct_aaaaaaaaaaaaaaaaaaaa");
  return a;
}

/// Appends what a customer's command decides on the tenant's current state.
void command(FakeEventLog& log, domain::CommandKind kind) {
  auto msgs = log.read_subject(kSubject);
  ASSERT_TRUE(msgs.ok());
  const auto state = events::fold_history(kRef, *msgs);
  domain::TenantCommand c;
  c.kind = kind;
  c.name = "shop";
  c.plan = v1::PLAN_FREE;
  c.owner_account_id = "acct_aaaaaaaaaaaaaaaaaaaa";
  auto evs = domain::decide(state, c);
  ASSERT_TRUE(evs.ok()) << evs.error().message;
  ASSERT_EQ(evs->size(), 1u);
  auto out = events::make_tenant_event(kRef, evs->front(), account(), "",
                                       event_store::Expected::at(state.version()), "c", "", 1);
  ASSERT_TRUE(log.append(out).ok());
}

std::vector<std::string> types(FakeEventLog& log) {
  std::vector<std::string> out;
  for (const auto& m : log.messages()) out.push_back(m.event_type);
  return out;
}

v1::TenantState state(FakeEventLog& log) {
  return events::fold_history(kRef, log.read_subject(kSubject).value());
}

struct Rig {
  FakeEventLog log;
  FakeDriver driver;
  FakeSecretStore keys;
  FixedClock clock;
  RecordingSleeper sleeper;
  provisioner::ProvisionerOptions opts() {
    provisioner::ProvisionerOptions o;
    o.workers = 1;
    return o;
  }
  provisioner::Provisioner p{log, driver, keys, clock, opts(), nullptr, &sleeper};
};

TEST(ProvisionerUnit, CreatedTenantIsProvisionedAndRecorded) {
  Rig r;
  command(r.log, domain::CommandKind::create);
  ASSERT_TRUE(r.p.converge(kRef).ok());
  EXPECT_EQ(r.driver.calls(), (std::vector<std::string>{"provision " + kRef}));
  EXPECT_EQ(types(r.log), (std::vector<std::string>{"tenant.created", "tenant.provisioning_started",
                                                    "tenant.stack_converged"}));
  EXPECT_TRUE(r.keys.has(kRef));
  const auto s = state(r.log);
  EXPECT_EQ(s.observed_state(), v1::OBSERVED_STATE_RUNNING);
  EXPECT_EQ(domain::plan_convergence(s), domain::StackAction::none);
  EXPECT_EQ(r.p.counters().actions.load(), 1u);
  EXPECT_EQ(r.p.counters().conflicts.load(), 0u);
  // Settled: converging again does nothing.
  ASSERT_TRUE(r.p.converge(kRef).ok());
  EXPECT_EQ(r.driver.calls().size(), 1u);
  EXPECT_EQ(r.log.messages().size(), 3u);
}

TEST(ProvisionerUnit, OutcomeThatLostItsRaceConvergesToTheNewerCommand) {
  Rig r;
  command(r.log, domain::CommandKind::create);
  // The customer pauses while the stack is being provisioned: the outcome
  // append (decided on the older version) loses to it.
  bool paused = false;
  r.log.before_append = [&](const event_store::OutgoingEvent& ev) {
    if (paused || ev.event_type != "tenant.stack_converged") return;
    paused = true;
    command(r.log, domain::CommandKind::pause);
  };
  ASSERT_TRUE(r.p.converge(kRef).ok());
  EXPECT_EQ(r.p.counters().conflicts.load(), 1u);
  EXPECT_EQ(r.sleeper.waits.size(), 1u);  // one backoff, through the injected sleeper
  EXPECT_EQ(r.driver.calls(), (std::vector<std::string>{"provision " + kRef, "pause " + kRef}));
  const auto s = state(r.log);
  EXPECT_EQ(s.observed_state(), v1::OBSERVED_STATE_PAUSED);
  EXPECT_EQ(domain::plan_convergence(s), domain::StackAction::none);
  EXPECT_EQ(r.p.counters().failures.load(), 0u);
}

TEST(ProvisionerUnit, TenantThatKeepsChangingIsDeferredAfterTheBound) {
  Rig r;
  command(r.log, domain::CommandKind::create);
  provisioner::ProvisionerOptions o = r.opts();
  o.max_converge_rounds = 3;
  provisioner::Provisioner p{r.log, r.driver, r.keys, r.clock, o, nullptr, &r.sleeper};
  // Every append of the provisioner loses to a racing writer.
  bool inside = false;
  r.log.before_append = [&](const event_store::OutgoingEvent& ev) {
    if (inside || ev.event_type != "tenant.provisioning_started") return;
    inside = true;
    event_store::OutgoingEvent racer = ev;
    racer.msg_id.clear();
    racer.event_type = "tenant.unknown";
    racer.expected = event_store::Expected::any();
    racer.body = "not an envelope";  // undecodable: only moves the version
    ASSERT_TRUE(r.log.append(racer).ok());
    inside = false;
  };
  auto st = p.converge(kRef);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, errc::unavailable);
  EXPECT_EQ(p.counters().conflicts.load(), 3u);
  EXPECT_EQ(r.sleeper.waits.size(), 2u);
  EXPECT_TRUE(r.driver.calls().empty());  // never acted on a decision it could not record
}

}  // namespace
