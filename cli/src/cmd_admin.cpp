// admin list | suspend | unsuspend (admin role required); admin init-stream
// (NATS admin user); projections rebuild (admin role required).
#include <iomanip>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "api_client.hpp"
#include "commands.hpp"
#include "event_log.hpp"
#include "exit_codes.hpp"
#include "output.hpp"
#include "supaplane/config/config.hpp"
#include "supaplane/event_store/kv.hpp"
#include "tenant_output.hpp"

namespace supaplane::cli {

namespace {

struct AdminOptions {
  std::string ref;
  std::string reason;
  std::string request_id;
  std::string phase;
  int page_size{0};
  std::string page_token;
  std::string projection;
  int replicas{1};
  int duplicate_window_ms{120'000};
  std::string lease_bucket{"supaplane-leases"};
  int lease_ttl_ms{15'000};
};

int list_all(const GlobalOptions& g, const AdminOptions& o) {
  auto req = list_request(o.phase, o.page_size, o.page_token);
  if (!req) return fail(req.error());
  return unary_call<v1::ListTenantsResponse>(
      g,
      [&](ApiClient& c, auto* ctx, auto* resp) {
        return c.admin().ListAllTenants(ctx, *req, resp);
      },
      [&](const auto& resp) { print_tenant_list(g, resp, /*with_owner=*/true); });
}

int suspend(const GlobalOptions& g, const AdminOptions& o) {
  v1::SuspendTenantRequest req;
  req.set_ref(o.ref);
  req.set_reason(o.reason);
  req.set_request_id(o.request_id);
  return unary_call<v1::TenantMutation>(
      g,
      [&](ApiClient& c, auto* ctx, auto* resp) { return c.admin().SuspendTenant(ctx, req, resp); },
      [&](const auto& resp) { print_mutation(g, resp, o.request_id); });
}

int unsuspend(const GlobalOptions& g, const AdminOptions& o) {
  v1::TenantRequest req;
  req.set_ref(o.ref);
  req.set_request_id(o.request_id);
  return unary_call<v1::TenantMutation>(
      g,
      [&](ApiClient& c, auto* ctx, auto* resp) {
        return c.admin().UnsuspendTenant(ctx, req, resp);
      },
      [&](const auto& resp) { print_mutation(g, resp, o.request_id); });
}

int rebuild(const GlobalOptions& g, const AdminOptions& o) {
  v1::RebuildProjectionRequest req;
  req.set_name(o.projection);
  return with_session(g, [&](ApiClient& client) {
    v1::RebuildProjectionResponse resp;
    auto ctx = client.context();
    const grpc::Status s = client.admin().RebuildProjection(ctx.get(), req, &resp);
    if (!s.ok()) return client.fail(s);
    if (g.json) {
      Json j;
      j["name"] = o.projection;
      j["events"] = resp.events();
      j["seconds"] = resp.seconds();
      j["checkpoint"] = resp.checkpoint();
      j["generation"] = resp.generation();
      print_json(std::cout, j);
    } else {
      std::cout << "rebuilt " << o.projection << ": " << resp.events() << " events in "
                << std::fixed << std::setprecision(3) << resp.seconds() << " s, checkpoint "
                << resp.checkpoint() << ", generation " << resp.generation() << "\n";
    }
    return 0;
  });
}

// Connects as a NATS user allowed to create streams (admin): the services'
// users cannot, and never create it themselves.
int init_stream(const GlobalOptions& g, const AdminOptions& o) {
  event_store::StreamSettings ss;
  ss.replicas = o.replicas;
  ss.duplicate_window_ms = o.duplicate_window_ms;
  auto store = open_event_log(g, ss);
  if (!store) return fail(store.error(), nats_where(g));
  bool created = false;
  std::vector<std::string> changed;
  auto st = (*store)->create_or_verify_stream(&created, &changed);
  if (!st) return fail(st.error(), nats_where(g));
  // The provisioner replicas' leader lease: the bucket's MaxAge is the lease TTL.
  event_store::KvBucketSettings kv;
  kv.name = o.lease_bucket;
  kv.ttl_ms = o.lease_ttl_ms;
  kv.replicas = o.replicas;
  bool kv_created = false;
  std::vector<std::string> kv_changed;
  st = event_store::create_or_verify_kv_bucket(**store, kv, &kv_created, &kv_changed);
  if (!st) return fail(st.error(), nats_where(g));
  if (g.json) {
    Json j;
    j["stream"] = ss.name;
    j["created"] = created;
    j["replicas"] = ss.replicas;
    j["changed"] = changed;
    j["lease_bucket"] = {
        {"name", kv.name}, {"created", kv_created}, {"ttl_ms", kv.ttl_ms}, {"changed", kv_changed}};
    print_json(std::cout, j);
    return 0;
  }
  if (created) {
    std::cout << "created stream " << ss.name << " (subjects " << ss.subjects << ", " << ss.replicas
              << " replicas)\n";
  } else {
    for (const auto& c : changed) std::cout << "updated stream " << ss.name << ": " << c << "\n";
    std::cout << "stream " << ss.name << " exists and protects the log\n";
  }
  if (kv_created) {
    std::cout << "created key-value bucket " << kv.name << " (lease ttl " << kv.ttl_ms << " ms)\n";
  } else {
    for (const auto& c : kv_changed)
      std::cout << "updated key-value bucket " << kv.name << ": " << c << "\n";
    std::cout << "key-value bucket " << kv.name << " exists (lease ttl " << kv.ttl_ms << " ms)\n";
  }
  return 0;
}

}  // namespace

void add_admin_commands(CLI::App& app, const GlobalOptions& g, Action& action) {
  auto o = std::make_shared<AdminOptions>();

  auto* admin = add_command(app, "admin", "operator commands (admin role)");
  admin->require_subcommand(1);

  auto* list_cmd = add_command(*admin, "list", "list every account's tenants");
  add_list_options(list_cmd, o->phase, o->page_size, o->page_token);
  on_parsed(list_cmd, action, [&g, o] { return list_all(g, *o); });

  auto* suspend_cmd = add_command(*admin, "suspend", "suspend a tenant");
  suspend_cmd->add_option("ref", o->ref, "tenant ref")->required();
  suspend_cmd->add_option("--reason", o->reason, "why (recorded in the event log)")->required();
  suspend_cmd->add_option("--request-id", o->request_id, "idempotency key");
  on_parsed(suspend_cmd, action, [&g, o] { return suspend(g, *o); });

  auto* unsuspend_cmd = add_command(*admin, "unsuspend", "lift a suspension");
  unsuspend_cmd->add_option("ref", o->ref, "tenant ref")->required();
  unsuspend_cmd->add_option("--request-id", o->request_id, "idempotency key");
  on_parsed(unsuspend_cmd, action, [&g, o] { return unsuspend(g, *o); });

  auto* init_cmd = add_command(*admin, "init-stream",
                               "create the PLATFORM stream and the provisioner's lease bucket on "
                               "NATS (as the NATS admin user), or check the existing ones");
  config::bind_option(*init_cmd, "replicas", "SUPAPLANE_STREAM_REPLICAS", o->replicas,
                      "replicas when creating it (3 on a JetStream cluster)")
      ->check(CLI::Range(1, 5));
  config::bind_option(*init_cmd, "duplicate-window-ms", "SUPAPLANE_DUPLICATE_WINDOW_MS",
                      o->duplicate_window_ms, "Nats-Msg-Id duplicate window (minimum)")
      ->check(CLI::PositiveNumber);
  config::bind_option(*init_cmd, "lease-bucket", "SUPAPLANE_PROVISIONER_LEASE_BUCKET",
                      o->lease_bucket, "key-value bucket of the provisioner replicas' lease");
  config::bind_option(*init_cmd, "lease-ttl-ms", "SUPAPLANE_PROVISIONER_LEASE_TTL_MS",
                      o->lease_ttl_ms,
                      "the lease TTL (the bucket's max age): a dead leader is replaced after "
                      "it; set again on an existing bucket")
      ->check(CLI::Range(1000, 3'600'000));
  on_parsed(init_cmd, action, [&g, o] { return init_stream(g, *o); });

  auto* projections = add_command(app, "projections", "read models (admin role)");
  projections->require_subcommand(1);
  auto* rebuild_cmd = add_command(*projections, "rebuild",
                                  "rebuild a projection from the event log (raise --timeout "
                                  "for long streams)");
  rebuild_cmd->add_option("name", o->projection, "projection name (api)")->required();
  on_parsed(rebuild_cmd, action, [&g, o] { return rebuild(g, *o); });
}

}  // namespace supaplane::cli
