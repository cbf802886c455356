#pragma once
// The fixture of the suites that converge tenants with the provisioner: a real
// nats-server and redis-server per test, a fresh platform database on the
// PostgreSQL the suite chooses, the api in process with an owner signed up,
// the provisioner's options for the postgres driver, and the tenant commands
// and waits those suites share. How the provisioner runs (in process, as its
// real binary, several replicas) stays with each suite.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "api_options.hpp"
#include "app.hpp"
#include "eventually.hpp"
#include "provisioner_app.hpp"
#include "provisioner_options.hpp"
#include "servers.hpp"
#include "supaplane/event_store/event_store.hpp"
#include "supaplane/v1/api.grpc.pb.h"

namespace supaplane::testenv {

/// Servers, the platform database and the api of one test; the owner's
/// client. One test thread uses it (the gRPC stubs are thread-safe).
class ProvisionerFixture : public ::testing::Test {
 protected:
  /// `pg` holds the platform database of each test, named
  /// `<db_prefix>_<pid>_<n>`, and the tenants' databases.
  ProvisionerFixture(PostgresServer& pg, std::string db_prefix, NatsServerOptions nats = {})
      : pg_(pg), db_prefix_(std::move(db_prefix)), nats_(nats) {}

  void TearDown() override { api_.reset(); }

  /// Starts NATS and Redis, creates this test's platform database and starts
  /// the api in process (`api_options`, then `tweak`). Does not wait for it
  /// to be ready.
  void start_api(const std::function<void(api::ApiOptions&)>& tweak = {}) {
    nats_.start();
    redis_.start();
    static int n = 0;
    db_ = db_prefix_ + "_" + std::to_string(::getpid()) + "_" + std::to_string(++n);
    pg_.create_database(db_);
    auto ao = api_options(nats_, redis_, pg_.admin_dsn(db_), std::string(40, 's'));
    if (tweak) tweak(ao);
    api_ = std::make_unique<api::ApiApp>(ao);
    ASSERT_TRUE(api_->start().ok());
  }

  /// Connects to the api's gRPC port and signs up owner@example.com, whose
  /// token `ctx()` sends.
  void sign_up_owner() {
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(api_->grpc_port()),
                                   grpc::InsecureChannelCredentials());
    accounts_ = v1::AccountService::NewStub(channel_);
    tenants_ = v1::TenantService::NewStub(channel_);
    v1::SignUpRequest req;
    req.set_email("owner@example.com");
    req.set_password("owner-password");
    v1::SessionResponse resp;
    grpc::ClientContext c;
    ASSERT_TRUE(accounts_->SignUp(&c, req, &resp).ok());
    token_ = resp.token();
  }

  /// An in-process provisioner with the postgres driver on this test's
  /// servers (`testenv::provisioner_options`).
  provisioner::AppOptions provisioner_options() const {
    return testenv::provisioner_options(nats_, pg_, db_);
  }

  /// A call context carrying the owner's token.
  std::unique_ptr<grpc::ClientContext> ctx() const {
    auto c = std::make_unique<grpc::ClientContext>();
    c->AddMetadata("authorization", "Bearer " + token_);
    return c;
  }

  /// "pause", "resume", "delete" or "rotate" (keys) on `ref`, as the owner.
  grpc::Status command(const std::string& what, const std::string& ref, v1::TenantMutation* m) {
    v1::TenantRequest req;
    req.set_ref(ref);
    auto c = ctx();
    if (what == "pause") return tenants_->PauseTenant(c.get(), req, m);
    if (what == "resume") return tenants_->ResumeTenant(c.get(), req, m);
    if (what == "delete") return tenants_->DeleteTenant(c.get(), req, m);
    if (what == "rotate") return tenants_->RotateTenantKeys(c.get(), req, m);
    return {grpc::StatusCode::INVALID_ARGUMENT, "no such command in the fixture: " + what};
  }

  /// "create" (a tenant named `name`) or one of `command`'s, expected to be
  /// accepted.
  v1::TenantMutation call(const std::string& what, const std::string& ref,
                          const std::string& name = "") {
    v1::TenantMutation m;
    grpc::Status s;
    if (what == "create") {
      v1::CreateTenantRequest req;
      req.set_name(name);
      s = tenants_->CreateTenant(ctx().get(), req, &m);
    } else {
      s = command(what, ref, &m);
    }
    EXPECT_TRUE(s.ok()) << what << " " << ref << ": " << s.error_message();
    return m;
  }

  /// Waits (bounded) until the tenant reports `phase` in the api's projection.
  v1::Tenant wait_phase(const std::string& ref, v1::Phase phase) {
    v1::Tenant t;
    const bool reached = eventually(
        [&] {
          v1::GetTenantRequest req;
          req.set_ref(ref);
          return tenants_->GetTenant(ctx().get(), req, &t).ok() && t.phase() == phase;
        },
        std::chrono::seconds(30), std::chrono::milliseconds(20));
    if (!reached)
      ADD_FAILURE() << ref << " never reached phase " << v1::Phase_Name(phase) << " (is "
                    << v1::Phase_Name(t.phase()) << ")";
    return t;
  }

  /// Waits until the tenant, seen at least at `min_sequence`, has converged
  /// its latest generation into `phase`.
  v1::Tenant wait_settled(const std::string& ref, std::uint64_t min_sequence, v1::Phase phase) {
    v1::Tenant t;
    const bool settled = eventually(
        [&] {
          v1::GetTenantRequest req;
          req.set_ref(ref);
          req.set_min_sequence(min_sequence);
          return tenants_->GetTenant(ctx().get(), req, &t).ok() && t.phase() == phase &&
                 t.observed_generation() == t.generation();
        },
        std::chrono::seconds(30), std::chrono::milliseconds(20));
    if (!settled) ADD_FAILURE() << ref << " never settled in " << v1::Phase_Name(phase);
    return t;
  }

  /// The tenant's whole history on the log.
  std::vector<event_store::StoredMessage> history(const std::string& ref) const {
    event_store::ConnectOptions o;
    o.url = nats_.url();
    auto es = event_store::EventStore::connect(o).value();
    return es->read_subject("platform.tenant." + ref).value();
  }

  /// The event types of the tenant's history, in order.
  std::vector<std::string> history_types(const std::string& ref) const {
    std::vector<std::string> out;
    for (const auto& m : history(ref)) out.push_back(m.event_type);
    return out;
  }

  PostgresServer& pg_;
  std::string db_prefix_;
  NatsServer nats_;
  RedisServer redis_;
  std::string db_;
  std::unique_ptr<api::ApiApp> api_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::AccountService::Stub> accounts_;
  std::unique_ptr<v1::TenantService::Stub> tenants_;
  std::string token_;
};

}  // namespace supaplane::testenv
