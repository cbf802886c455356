// supaplane-router-sync: flags / SUPAPLANE_* environment → AppOptions → App.

#include "router_app.hpp"
#include "supaplane/config/config.hpp"
#include "supaplane/event_store/event_store.hpp"
#include "supaplane/logging/logging.hpp"

int main(int argc, char** argv) {
  const supaplane::event_store::LibraryScope nats_library;  // destroyed last
  using supaplane::config::bind_option;
  supaplane::router::AppOptions o;
  std::string log_level = "info";
  CLI::App app{"supaplane-router-sync: Traefik dynamic configuration and the edge key check"};
  bind_option(app, "nats-url", "SUPAPLANE_NATS_URL", o.nats_url, "NATS server URL");
  bind_option(app, "redis-url", "SUPAPLANE_REDIS_URL", o.redis_url, "Redis (routes projection)");
  bind_option(app, "database-url", "SUPAPLANE_DATABASE_URL", o.database_url,
              "platform PostgreSQL (sealed tenant keys)");
  bind_option(app, "master-key", "SUPAPLANE_MASTER_KEY", o.master_key,
              "base64 of 32 bytes; opens tenant secrets");
  bind_option(app, "master-key-previous", "SUPAPLANE_MASTER_KEY_PREVIOUS", o.master_key_previous,
              "retired master keys, comma-separated base64, while rotating (still opened)");
  bind_option(app, "http-addr", "SUPAPLANE_HTTP_ADDR", o.http_addr,
              "ForwardAuth, HTTP provider and maintenance answers host:port");
  bind_option(app, "metrics-addr", "SUPAPLANE_METRICS_ADDR", o.metrics_addr,
              "/metrics, /healthz, /readyz listen address host:port");
  bind_option(app, "public-url", "SUPAPLANE_ROUTER_PUBLIC_URL", o.public_url,
              "how Traefik reaches this service (default http://<http-addr>)");
  bind_option(app, "traefik-dir", "SUPAPLANE_TRAEFIK_DIR", o.traefik_dir,
              "directory watched by Traefik's file provider");
  bind_option(app, "base-domain", "SUPAPLANE_BASE_DOMAIN", o.render.base_domain,
              "tenants are served at <ref>.<base-domain>");
  bind_option(app, "console-url", "SUPAPLANE_CONSOLE_URL", o.render.console_url,
              "the shared console every non-API path goes to");
  bind_option(app, "entry-points", "SUPAPLANE_TRAEFIK_ENTRY_POINTS", o.entry_points,
              "comma-separated Traefik entry points of the routers (empty = all)");
  bind_option(app, "gateway-url-pattern", "SUPAPLANE_GATEWAY_URL_PATTERN", o.gateway_url_pattern,
              "regex a tenant's gateway URL must match to be routed ({ref} = the tenant's ref)");
  bind_option(app, "db-upstream-pattern", "SUPAPLANE_DB_UPSTREAM_PATTERN", o.db_upstream_pattern,
              "regex a tenant's database upstream (host:port) must match to be routed");
  bind_option(app, "db-entry-point", "SUPAPLANE_TRAEFIK_DB_ENTRY_POINT", o.render.db_entry_point,
              "Traefik TCP entry point of tenants' database routes (HostSNI)");
  bind_option(app, "ratelimit-free", "SUPAPLANE_RATELIMIT_FREE", o.ratelimit_free,
              "free plan average:burst requests per second");
  bind_option(app, "ratelimit-starter", "SUPAPLANE_RATELIMIT_STARTER", o.ratelimit_starter,
              "starter plan average:burst requests per second");
  bind_option(app, "ratelimit-pro", "SUPAPLANE_RATELIMIT_PRO", o.ratelimit_pro,
              "pro plan average:burst requests per second");
  bind_option(app, "flush-interval-ms", "SUPAPLANE_TRAEFIK_FLUSH_INTERVAL_MS", o.flush_interval_ms,
              "at most one directory write pass per interval (bursts)");
  bind_option(app, "http-threads", "SUPAPLANE_HTTP_THREADS", o.http_threads,
              "HTTP event loops (epoll; 0 = one per core)");
  bind_option(app, "http-max-output-kib", "SUPAPLANE_HTTP_MAX_OUTPUT_KIB", o.http_max_output_kib,
              "per connection: unsent answers beyond this pause reading it (pipelining clients "
              "that do not read)");
  bind_option(app, "http-max-connections", "SUPAPLANE_HTTP_MAX_CONNECTIONS", o.http_max_connections,
              "open HTTP connections; beyond it new ones are closed");
  bind_option(app, "http-header-timeout-ms", "SUPAPLANE_HTTP_HEADER_TIMEOUT_MS",
              o.http_header_timeout_ms, "a request must arrive whole within this (slow clients)");
  bind_option(app, "http-idle-timeout-ms", "SUPAPLANE_HTTP_IDLE_TIMEOUT_MS", o.http_idle_timeout_ms,
              "idle keep-alive connections are closed after this");
  bind_option(app, "durable", "SUPAPLANE_ROUTER_DURABLE", o.durable,
              "base name of the durable consumer (each replica reads the whole stream with "
              "<durable>-<replica id>)");
  bind_option(app, "replica-id", "SUPAPLANE_REPLICA_ID", o.replica_id,
              "this replica's name, unique among the replicas sharing one projection "
              "(default: the host name)");
  bind_option(app, "redis-prefix", "SUPAPLANE_ROUTER_REDIS_PREFIX", o.redis_prefix,
              "key prefix of this service's projection");
  bind_option(app, "stream-replicas", "SUPAPLANE_STREAM_REPLICAS", o.stream_replicas,
              "replicas of the PLATFORM stream when it is created");
  bind_option(app, "open-secrets-max", "SUPAPLANE_ROUTER_OPEN_SECRETS_MAX", o.open_secrets_max,
              "tenants' JWT secrets kept opened in memory (least recently used dropped)");
  bind_option(app, "log-level", "SUPAPLANE_LOG_LEVEL", log_level, "trace|debug|info|warn|error");
  CLI11_PARSE(app, argc, argv);

  supaplane::logging::init("router-sync", log_level);
  supaplane::router::App router(o);
  return supaplane::config::serve_until_signal("supaplane-router-sync", router);
}
