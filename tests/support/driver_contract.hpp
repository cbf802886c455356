#pragma once
// The contract every driver keeps, run against each (driver_itest: postgres,
// docker_itest: docker): every call twice = once, every phase reachable from
// every other, drift seen and repaired, rotation converged, remove complete.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <thread>

#include "supaplane/driver/driver.hpp"

namespace supaplane::testenv {

/// provision / resume until the driver reports done (bounded).
inline ::testing::AssertionResult converge_until_done(
    const std::function<Result<driver::Progress>()>& step) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  std::string last;
  while (std::chrono::steady_clock::now() < deadline) {
    auto p = step();
    if (!p) return ::testing::AssertionFailure() << p.error().message;
    if (p->done) return ::testing::AssertionSuccess();
    last = p->waiting_on;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return ::testing::AssertionFailure() << "never done; waiting on " << last;
}

/// `r` provisioned from nothing; `rotated` = r with new keys; `break_stack`
/// damages the running stack behind the driver's back (drift).
inline void driver_contract(driver::Driver& d, const driver::StackRequest& r,
                            const driver::StackRequest& rotated,
                            const std::function<void()>& break_stack) {
  const std::string ref = r.ref;
  // Nothing there yet.
  ASSERT_TRUE(d.remove(ref).ok());
  auto none = d.observe(ref, true);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->exists);
  EXPECT_FALSE(none->drift.empty()) << "a missing stack is drift while ACTIVE";
  // Provision, twice = once.
  ASSERT_TRUE(converge_until_done([&] { return d.provision(r); }));
  ASSERT_TRUE(converge_until_done([&] { return d.provision(r); }));
  const auto first = d.endpoints(ref);
  auto up = d.observe(ref, true);
  ASSERT_TRUE(up.ok());
  EXPECT_TRUE(up->exists);
  EXPECT_TRUE(up->accepting_connections);
  EXPECT_EQ(up->drift, "");
  EXPECT_FALSE(up->health.empty());
  for (const auto& h : up->health)
    EXPECT_EQ(h.status, v1::SERVICE_HEALTH_STATUS_ACTIVE_HEALTHY) << h.name;
  // Pause, twice = once; a paused stack is drift only if it should run.
  ASSERT_TRUE(d.pause(r).ok());
  ASSERT_TRUE(d.pause(r).ok());
  auto paused = d.observe(ref, false);
  ASSERT_TRUE(paused.ok());
  EXPECT_TRUE(paused->exists);
  EXPECT_FALSE(paused->accepting_connections);
  EXPECT_EQ(paused->drift, "");
  EXPECT_NE(d.observe(ref, true)->drift, "");
  // Resume, twice = once.
  ASSERT_TRUE(converge_until_done([&] { return d.resume(r); }));
  ASSERT_TRUE(converge_until_done([&] { return d.resume(r); }));
  EXPECT_EQ(d.observe(ref, true)->drift, "");
  EXPECT_NE(d.observe(ref, false)->drift, "") << "a running stack is drift while PAUSED";
  // Rotation converges.
  ASSERT_TRUE(converge_until_done([&] { return d.provision(rotated); }));
  EXPECT_EQ(d.observe(ref, true)->drift, "");
  // Drift is seen, and provision repairs it.
  break_stack();
  EXPECT_NE(d.observe(ref, true)->drift, "");
  ASSERT_TRUE(converge_until_done([&] { return d.provision(rotated); }));
  EXPECT_EQ(d.observe(ref, true)->drift, "");
  // Endpoints name the tenant and survive a rotation and a repair (the
  // outcome events of each converge carry the same ones).
  const auto last = d.endpoints(ref);
  EXPECT_NE(first.gateway_url.find(ref), std::string::npos) << first.gateway_url;
  EXPECT_EQ(last.gateway_url, first.gateway_url);
  EXPECT_EQ(last.db_host, first.db_host);
  EXPECT_EQ(last.db_port, first.db_port);
  EXPECT_EQ(last.db_name, first.db_name);
  EXPECT_EQ(last.db_user, first.db_user);
  EXPECT_EQ(last.db_upstream, first.db_upstream);
  // Remove, twice = once; from paused too.
  ASSERT_TRUE(d.pause(rotated).ok());
  ASSERT_TRUE(d.remove(ref).ok());
  ASSERT_TRUE(d.remove(ref).ok());
  EXPECT_FALSE(d.observe(ref, true)->exists);
  // ... and from running: a stack provisioned again is removed as it runs.
  ASSERT_TRUE(converge_until_done([&] { return d.provision(rotated); }));
  EXPECT_TRUE(d.observe(ref, true)->accepting_connections);
  ASSERT_TRUE(d.remove(ref).ok());
  ASSERT_TRUE(d.remove(ref).ok());
  EXPECT_FALSE(d.observe(ref, true)->exists);
}

}  // namespace supaplane::testenv
