// tenant create | get | list | pause | resume | delete | events | watch.
#include <atomic>
#include <chrono>
#include <iostream>
#include <memory>
#include <thread>

#include "api_client.hpp"
#include "commands.hpp"
#include "exit_codes.hpp"
#include "interrupt.hpp"
#include "output.hpp"
#include "supaplane/core/ids.hpp"
#include "tenant_output.hpp"

namespace supaplane::cli {

namespace {

struct TenantOptions {
  std::string name;
  std::string plan;
  std::string ref;
  std::string request_id;
  std::uint64_t min_sequence{0};
  std::string phase;
  int page_size{0};
  std::string page_token;
  std::uint64_t count{0};
};

enum class Mutation { pause, resume, remove, rotate_keys };

int create(const GlobalOptions& g, const TenantOptions& o) {
  v1::CreateTenantRequest req;
  req.set_name(o.name);
  if (!o.plan.empty()) {
    auto plan = parse_plan(o.plan);
    if (!plan) return fail_usage("--plan must be free, starter or pro, not '" + o.plan + "'");
    req.set_plan(*plan);
  }
  std::string request_id = o.request_id;
  if (request_id.empty()) {
    request_id = ids::random_hex_id();
    // Before the call, so a failed or timed-out create can be retried safely.
    std::cerr << "request id " << request_id << " (retry with --request-id " << request_id << ")\n";
  }
  req.set_request_id(request_id);
  return with_session(g, [&](ApiClient& client) {
    v1::TenantMutation resp;
    auto ctx = client.context();
    const grpc::Status s = client.tenants().CreateTenant(ctx.get(), req, &resp);
    if (!s.ok()) return client.fail(s);
    print_mutation(g, resp, request_id);
    return 0;
  });
}

int get(const GlobalOptions& g, const TenantOptions& o) {
  v1::GetTenantRequest req;
  req.set_ref(o.ref);
  req.set_min_sequence(o.min_sequence);
  return with_session(g, [&](ApiClient& client) {
    v1::Tenant t;
    auto ctx = client.context();
    const grpc::Status s = client.tenants().GetTenant(ctx.get(), req, &t);
    if (!s.ok()) return client.fail(s);
    if (g.json) {
      print_json(std::cout, tenant_json(t));
    } else {
      print_tenant(std::cout, t);
    }
    return 0;
  });
}

int list(const GlobalOptions& g, const TenantOptions& o) {
  auto req = list_request(o.phase, o.page_size, o.page_token);
  if (!req) return fail(req.error());
  return with_session(g, [&](ApiClient& client) {
    v1::ListTenantsResponse resp;
    auto ctx = client.context();
    const grpc::Status s = client.tenants().ListTenants(ctx.get(), *req, &resp);
    if (!s.ok()) return client.fail(s);
    print_tenant_list(g, resp, /*with_owner=*/false);
    return 0;
  });
}

int mutate(const GlobalOptions& g, const TenantOptions& o, Mutation m) {
  v1::TenantRequest req;
  req.set_ref(o.ref);
  req.set_request_id(o.request_id);
  return unary_call<v1::TenantMutation>(
      g,
      [&](ApiClient& c, grpc::ClientContext* ctx, v1::TenantMutation* resp) {
        auto& stub = c.tenants();
        switch (m) {
          case Mutation::pause:
            return stub.PauseTenant(ctx, req, resp);
          case Mutation::resume:
            return stub.ResumeTenant(ctx, req, resp);
          case Mutation::remove:
            return stub.DeleteTenant(ctx, req, resp);
          case Mutation::rotate_keys:
            return stub.RotateTenantKeys(ctx, req, resp);
        }
        return grpc::Status(grpc::StatusCode::INTERNAL, "unknown command");
      },
      [&](const auto& resp) { print_mutation(g, resp, o.request_id); });
}

int credentials(const GlobalOptions& g, const TenantOptions& o) {
  v1::GetTenantRequest req;
  req.set_ref(o.ref);
  return unary_call<v1::TenantCredentials>(
      g,
      [&](ApiClient& c, grpc::ClientContext* ctx, v1::TenantCredentials* resp) {
        return c.tenants().GetTenantCredentials(ctx, req, resp);
      },
      [&](const v1::TenantCredentials& c) {
        if (g.json) {
          Json j;
          j["ref"] = c.ref();
          j["api_url"] = c.api_url();
          j["anon_key"] = c.anon_key();
          j["service_role_key"] = c.service_role_key();
          j["publishable_key"] = c.publishable_key();
          j["secret_key"] = c.secret_key();
          j["db_host"] = c.db_host();
          j["db_port"] = c.db_port();
          j["db_name"] = c.db_name();
          j["db_user"] = c.db_user();
          j["db_password"] = c.db_password();
          j["connection_string"] = c.connection_string();
          j["keys_generation"] = c.keys_generation();
          print_json(std::cout, j);
          return;
        }
        Table t({"KEY", "VALUE"});
        t.add({"api url", c.api_url()});
        t.add({"anon key", c.anon_key()});
        t.add({"service_role key", c.service_role_key()});
        t.add({"publishable key", c.publishable_key()});
        t.add({"secret key", c.secret_key()});
        t.add({"database", c.connection_string()});
        t.print(std::cout);
      });
}

/// GET /v1/projects/{ref}/health of Supabase's Management API, as a table or JSON array.
int health(const GlobalOptions& g, const TenantOptions& o) {
  v1::GetTenantRequest req;
  req.set_ref(o.ref);
  return unary_call<v1::TenantHealth>(
      g,
      [&](ApiClient& c, grpc::ClientContext* ctx, v1::TenantHealth* resp) {
        return c.tenants().GetTenantHealth(ctx, req, resp);
      },
      [&](const v1::TenantHealth& h) {
        if (g.json) {
          Json arr = Json::array();
          for (const auto& s : h.services()) {
            Json j{{"name", s.name()}, {"healthy", s.healthy()}, {"status", s.status()}};
            if (!s.error().empty()) j["error"] = s.error();
            arr.push_back(j);
          }
          print_json(std::cout, arr);
          return;
        }
        Table t({"SERVICE", "STATUS", "ERROR"});
        for (const auto& s : h.services()) t.add({s.name(), s.status(), s.error()});
        t.print(std::cout);
      });
}

int events(const GlobalOptions& g, const TenantOptions& o) {
  v1::ListTenantEventsRequest req;
  req.set_ref(o.ref);
  req.set_page_size(1000);
  return with_session(g, [&](ApiClient& client) {
    std::vector<events::HistoryRecord> records;
    do {  // every page
      v1::ListTenantEventsResponse resp;
      auto ctx = client.context();
      const grpc::Status s = client.tenants().ListTenantEvents(ctx.get(), req, &resp);
      if (!s.ok()) return client.fail(s);
      for (const auto& e : resp.events()) records.push_back(to_history(e));
      req.set_page_token(resp.next_page_token());
    } while (!req.page_token().empty());
    if (g.json) {
      Json arr = Json::array();
      for (const auto& r : records) arr.push_back(event_json(r));
      print_json(std::cout, arr);
    } else {
      print_event_table(std::cout, records);
    }
    return 0;
  });
}

/// One line (or one JSON object) per change until Ctrl-C or `o.count` changes.
int watch(const GlobalOptions& g, const TenantOptions& o) {
  install_interrupt_handler();
  return with_session(g, [&](ApiClient& client) {
    auto ctx = client.context(/*streaming=*/true);
    auto reader = client.tenants().WatchTenants(ctx.get(), v1::WatchTenantsRequest{});
    // Read() blocks; a signal handler may not touch the context, so a helper
    // thread turns Ctrl-C into a cancel.
    std::atomic<bool> done{false};
    std::atomic<bool> cancelled{false};
    std::thread canceller([&] {
      while (!done.load()) {
        if (interrupted()) {
          cancelled = true;
          ctx->TryCancel();
          return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
    std::uint64_t seen = 0;
    v1::TenantChange c;
    while (reader->Read(&c)) {
      const auto& t = c.tenant();
      if (g.json) {
        Json j;
        j["time"] = format_time(t.updated_at());
        j["sequence"] = c.sequence();
        j["event_type"] = c.event_type();
        j["tenant"] = tenant_json(t);
        std::cout << j.dump(-1, ' ', false, Json::error_handler_t::replace) << std::endl;
      } else {
        std::cout << format_time(t.updated_at()) << " " << c.sequence() << " " << t.ref() << " "
                  << phase_label(t.phase()) << " " << t.status() << " " << c.event_type()
                  << std::endl;
      }
      if (o.count > 0 && ++seen >= o.count) {
        cancelled = true;
        ctx->TryCancel();
        break;
      }
    }
    done = true;
    canceller.join();
    const grpc::Status s = reader->Finish();
    if (cancelled.load() || s.ok()) return 0;
    return client.fail(s);
  });
}

void add_ref(CLI::App* cmd, TenantOptions& o) {
  cmd->add_option("ref", o.ref, "tenant ref (20 lowercase letters)")->required();
}

void add_request_id(CLI::App* cmd, TenantOptions& o) {
  cmd->add_option("--request-id", o.request_id,
                  "idempotency key: a retry with the same id does not act twice");
}

}  // namespace

void add_tenant_commands(CLI::App& app, const GlobalOptions& g, Action& action) {
  auto* tenant = add_command(app, "tenant", "manage your tenants");
  tenant->require_subcommand(1);
  auto o = std::make_shared<TenantOptions>();

  auto* create_cmd = add_command(*tenant, "create", "create a tenant");
  create_cmd->add_option("--name", o->name, "tenant name")->required();
  create_cmd->add_option("--plan", o->plan, "free | starter | pro (default free)");
  create_cmd->add_option("--request-id", o->request_id,
                         "idempotency key (generated and printed when absent)");
  on_parsed(create_cmd, action, [&g, o] { return create(g, *o); });

  auto* get_cmd = add_command(*tenant, "get", "show one tenant");
  add_ref(get_cmd, *o);
  get_cmd->add_option("--min-sequence", o->min_sequence,
                      "wait until the read model has applied this stream sequence");
  on_parsed(get_cmd, action, [&g, o] { return get(g, *o); });

  auto* list_cmd = add_command(*tenant, "list", "list your tenants");
  add_list_options(list_cmd, o->phase, o->page_size, o->page_token);
  on_parsed(list_cmd, action, [&g, o] { return list(g, *o); });

  auto* pause_cmd = add_command(*tenant, "pause", "pause a tenant");
  add_ref(pause_cmd, *o);
  add_request_id(pause_cmd, *o);
  on_parsed(pause_cmd, action, [&g, o] { return mutate(g, *o, Mutation::pause); });

  auto* resume_cmd = add_command(*tenant, "resume", "resume a paused tenant");
  add_ref(resume_cmd, *o);
  add_request_id(resume_cmd, *o);
  on_parsed(resume_cmd, action, [&g, o] { return mutate(g, *o, Mutation::resume); });

  auto* delete_cmd = add_command(*tenant, "delete", "delete a tenant");
  add_ref(delete_cmd, *o);
  add_request_id(delete_cmd, *o);
  on_parsed(delete_cmd, action, [&g, o] { return mutate(g, *o, Mutation::remove); });

  auto* rotate_cmd = add_command(*tenant, "rotate-keys",
                                 "new JWT secret, API keys and database password (old ones stop "
                                 "working once the provisioner converges)");
  add_ref(rotate_cmd, *o);
  add_request_id(rotate_cmd, *o);
  on_parsed(rotate_cmd, action, [&g, o] { return mutate(g, *o, Mutation::rotate_keys); });

  auto* creds_cmd =
      add_command(*tenant, "credentials", "API URL, keys and database connection string");
  add_ref(creds_cmd, *o);
  on_parsed(creds_cmd, action, [&g, o] { return credentials(g, *o); });

  auto* health_cmd =
      add_command(*tenant, "health",
                  "each service of the tenant's stack: COMING_UP, ACTIVE_HEALTHY, UNHEALTHY");
  add_ref(health_cmd, *o);
  on_parsed(health_cmd, action, [&g, o] { return health(g, *o); });

  auto* events_cmd = add_command(*tenant, "events", "a tenant's event history (via the API)");
  add_ref(events_cmd, *o);
  on_parsed(events_cmd, action, [&g, o] { return events(g, *o); });

  auto* watch_cmd =
      add_command(*tenant, "watch", "print tenant changes as they happen (Ctrl-C stops)");
  watch_cmd->add_option("--count", o->count, "exit after this many changes");
  on_parsed(watch_cmd, action, [&g, o] { return watch(g, *o); });
}

}  // namespace supaplane::cli
