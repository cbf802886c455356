// supaplane-provisioner: flags / SUPAPLANE_* environment → AppOptions → App.

#include "provisioner_app.hpp"
#include "supaplane/config/config.hpp"
#include "supaplane/event_store/event_store.hpp"
#include "supaplane/logging/logging.hpp"

int main(int argc, char** argv) {
  const supaplane::event_store::LibraryScope nats_library;  // destroyed last
  using supaplane::config::bind_option;
  supaplane::provisioner::AppOptions o;
  std::string log_level = "info";
  CLI::App app{"supaplane-provisioner: converges every tenant's stack to its desired state"};
  bind_option(app, "nats-url", "SUPAPLANE_NATS_URL", o.nats_url, "NATS server URL");
  bind_option(app, "database-url", "SUPAPLANE_DATABASE_URL", o.database_url,
              "platform PostgreSQL (sealed tenant keys)");
  bind_option(app, "tenant-db-url", "SUPAPLANE_TENANT_DB_URL", o.tenant_db_url,
              "admin connection to the tenants' PostgreSQL cluster");
  bind_option(app, "master-key", "SUPAPLANE_MASTER_KEY", o.master_key,
              "base64 of 32 bytes; seals tenant secrets at rest");
  bind_option(app, "master-key-previous", "SUPAPLANE_MASTER_KEY_PREVIOUS", o.master_key_previous,
              "retired master keys, comma-separated base64, while rotating (still opened)");
  bind_option(app, "driver", "SUPAPLANE_DRIVER", o.driver,
              "postgres (a database per tenant) | docker (a Supabase stack of containers)");
  bind_option(app, "tenant-db-public-host", "SUPAPLANE_TENANT_DB_PUBLIC_HOST",
              o.tenant_db_public_host,
              "postgres driver: host in tenants' connection strings (default: the host of "
              "--tenant-db-url; 127.0.0.1 for a unix socket)");
  bind_option(app, "tenant-db-public-port", "SUPAPLANE_TENANT_DB_PUBLIC_PORT",
              o.tenant_db_public_port,
              "postgres driver: port in tenants' connection strings (default: that of "
              "--tenant-db-url)");
  bind_option(app, "docker-host", "SUPAPLANE_DOCKER_HOST", o.docker_host,
              "docker driver: the Docker Engine API socket (unix:///path)");
  bind_option(app, "stack-spec", "SUPAPLANE_STACK_SPEC", o.stack_spec,
              "docker driver: the stack spec file (e.g. deploy/stacks/supabase.yaml)");
  bind_option(app, "registry-auth-file", "SUPAPLANE_REGISTRY_AUTH_FILE", o.registry_auth_file,
              "docker driver: a Docker config.json whose auths are used to pull images");
  bind_option(app, "edge-network", "SUPAPLANE_EDGE_NETWORK", o.edge_network,
              "docker driver: the network shared with Traefik (gateways and database routes)");
  bind_option(app, "db-edge-port", "SUPAPLANE_DB_EDGE_PORT", o.db_edge_port,
              "docker driver: the edge's PostgreSQL port (db.<ref>.<base-domain>:PORT)");
  bind_option(app, "base-domain", "SUPAPLANE_BASE_DOMAIN", o.base_domain,
              "tenants answer at <ref>.<base-domain>");
  bind_option(app, "stack-start-timeout-ms", "SUPAPLANE_STACK_START_TIMEOUT_MS",
              o.provisioner.start_timeout_ms,
              "a stack not serving this long after its converge began goes FAILED");
  bind_option(
      app, "gateway-url-template", "SUPAPLANE_GATEWAY_URL_TEMPLATE", o.gateway_url_template,
      "postgres driver: each tenant's API gateway, {ref} expanded (router-sync routes there)");
  bind_option(app, "tenant-db-mode", "SUPAPLANE_TENANT_DB_MODE", o.tenant_db_mode,
              "postgres driver: database (a database per tenant) | schema (proj_<ref> schemas in "
              "one central database)");
  bind_option(app, "tenant-schema-db", "SUPAPLANE_TENANT_SCHEMA_DB", o.tenant_schema_db,
              "schema mode: the central database");
  bind_option(app, "authenticator-role", "SUPAPLANE_TENANT_AUTHENTICATOR", o.authenticator,
              "schema mode: PostgREST's login role (gets pgrst.db_schemas)");
  bind_option(app, "tenant-db-connect-timeout-s", "SUPAPLANE_TENANT_DB_CONNECT_TIMEOUT_S",
              o.tenant_db_connect_timeout_s,
              "postgres driver: connect_timeout added to --tenant-db-url when it has none");
  bind_option(app, "tenant-db-statement-timeout-ms", "SUPAPLANE_TENANT_DB_STATEMENT_TIMEOUT_MS",
              o.tenant_db_statement_timeout_ms,
              "postgres driver: statement_timeout of the admin sessions (0 = none)");
  bind_option(app, "tenant-db-lock-timeout-ms", "SUPAPLANE_TENANT_DB_LOCK_TIMEOUT_MS",
              o.tenant_db_lock_timeout_ms,
              "postgres driver: lock_timeout of the admin sessions (0 = none)");
  bind_option(app, "tenant-db-connection-reserve", "SUPAPLANE_TENANT_DB_CONNECTION_RESERVE",
              o.tenant_db_connection_reserve,
              "postgres driver: connections of max_connections never promised to tenants");
  bind_option(app, "metrics-addr", "SUPAPLANE_METRICS_ADDR", o.metrics_addr,
              "/metrics, /healthz, /readyz listen address host:port");
  bind_option(app, "durable", "SUPAPLANE_PROVISIONER_DURABLE", o.durable, "durable consumer name");
  bind_option(app, "replica-id", "SUPAPLANE_REPLICA_ID", o.replica_id,
              "this replica's name in the leader lease (default: the host name)");
  bind_option(app, "lease-bucket", "SUPAPLANE_PROVISIONER_LEASE_BUCKET", o.lease_bucket,
              "key-value bucket of the leader lease (made by `supaplanectl admin init-stream`; "
              "its TTL is the lease's)");
  bind_option(app, "workers", "SUPAPLANE_PROVISIONER_WORKERS", o.provisioner.workers,
              "tenants converged in parallel");
  bind_option(app, "max-attempts", "SUPAPLANE_PROVISIONER_MAX_ATTEMPTS", o.provisioner.max_attempts,
              "driver attempts before a tenant goes FAILED");
  bind_option(app, "resync-interval-ms", "SUPAPLANE_RESYNC_INTERVAL_MS", o.resync_interval_ms,
              "drift check period (0 = off)");
  bind_option(app, "connection-limit", "SUPAPLANE_TENANT_CONNECTION_LIMIT",
              o.provisioner.connection_limit, "connections per tenant database");
  bind_option(app, "stream-replicas", "SUPAPLANE_STREAM_REPLICAS", o.stream_replicas,
              "replicas of the PLATFORM stream when it is created");
  bind_option(app, "log-level", "SUPAPLANE_LOG_LEVEL", log_level, "trace|debug|info|warn|error");
  CLI11_PARSE(app, argc, argv);

  supaplane::logging::init("provisioner", log_level);
  supaplane::provisioner::App prov(o);
  return supaplane::config::serve_until_signal("supaplane-provisioner", prov);
}
