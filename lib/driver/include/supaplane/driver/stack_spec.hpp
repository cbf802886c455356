#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "supaplane/core/result.hpp"
#include "supaplane/v1/types.pb.h"

namespace supaplane::driver {

/// CPU / memory / process limits of one container.
struct Resources {
  double cpus{0};             ///< 0 = unlimited
  std::int64_t memory_mb{0};  ///< 0 = unlimited
  std::int64_t pids{0};       ///< 0 = unlimited
};

/// A container health check (Docker's HEALTHCHECK, in milliseconds).
struct HealthCheck {
  std::vector<std::string> test;  ///< e.g. ["CMD", "pg_isready"]; empty = none
  std::int64_t interval_ms{5'000};
  std::int64_t timeout_ms{5'000};
  std::int64_t start_period_ms{0};
  int retries{3};
};

/// A command run in a service's container each time the driver has started
/// it and it is healthy (Engine API exec), before any dependent that waits
/// for it to be `healthy` starts. It runs with the container's user and
/// environment, so it reads secrets from there: its own arguments are never
/// templates (an exec's command line is shown to every client of the
/// daemon). Exit code 0 = success.
struct OnHealthy {
  std::vector<std::string> exec;  ///< empty = no command
};

/// One service of the stack. Strings marked "template" may use `{{name}}`
/// placeholders (see `StackSpec::template_names`).
struct ServiceSpec {
  std::string name;  ///< container `sp-<ref>-<name>`, DNS alias `<name>` on the tenant network
  std::string image;
  std::string health_name;           ///< Management API name (auth, db, ...); empty = not reported
  std::vector<std::string> command;  ///< template
  std::vector<std::string> entrypoint;             ///< template
  std::map<std::string, std::string> environment;  ///< values are templates
  HealthCheck healthcheck;
  /// service → "healthy" | "started": what must hold before this one starts.
  std::map<std::string, std::string> depends_on;
  std::map<std::string, std::string> volumes;  ///< volume name → mount path
  std::vector<std::string> tmpfs;              ///< scratch mounts when read_only
  bool read_only{false};
  std::vector<std::string> capabilities;  ///< granted after dropping all
  std::string user;
  /// plan → limits (free, starter, pro); falls back to the spec's defaults.
  std::map<std::string, Resources> resources;
  /// Brings state the container keeps (a volume) in line with its
  /// configuration, e.g. the database roles' passwords after a rotation.
  OnHealthy on_healthy;
};

/// The stack every tenant gets (SUPAPLANE_STACK_SPEC): its services in
/// dependency order, which one is the API gateway, and which one the
/// owner's database connections reach through the edge.
struct StackSpec {
  std::string file;                   ///< where it was read from (for messages)
  std::vector<ServiceSpec> services;  ///< topologically ordered (dependencies first)
  std::string gateway_service;
  int gateway_port{8000};
  std::string database_service;  ///< db or pooler: attached to the edge for the TCP route
  int database_port{5432};
  std::string database_user{"postgres"};  ///< template (e.g. "postgres.{{ref}}" for a pooler)
  std::string database_name{"postgres"};
  std::map<std::string, Resources> default_resources;  ///< plan → limits

  const ServiceSpec* find(const std::string& name) const;
  /// The limits of `svc` under `plan`.
  Resources resources_for(const ServiceSpec& svc, v1::Plan plan) const;
  /// Placeholders a template may use; `secret.<name>` is also accepted.
  static const std::vector<std::string>& template_names();
};

/// Parses and validates a spec. Any error names the file, the service and
/// the field (`invalid_argument`, field = "<service>.<field>").
Result<StackSpec> parse_stack_spec(const std::string& yaml_text, const std::string& file);
Result<StackSpec> load_stack_spec(const std::string& file);

/// Replaces `{{name}}` placeholders from `values`; `secret.<x>` through
/// `secret` (a per-tenant derived secret). Unknown names are an error
/// (validation rejects them first, so this only guards).
Result<std::string> render_template(const std::string& tmpl,
                                    const std::map<std::string, std::string>& values,
                                    const std::string& stack_seed);

/// "free" | "starter" | "pro" for a plan.
const char* plan_key(v1::Plan plan);

}  // namespace supaplane::driver
