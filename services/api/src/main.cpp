// supaplane-api: flags / SUPAPLANE_* environment → ApiOptions → ApiApp.

#include "app.hpp"
#include "supaplane/config/config.hpp"
#include "supaplane/event_store/event_store.hpp"
#include "supaplane/logging/logging.hpp"

int main(int argc, char** argv) {
  const supaplane::event_store::LibraryScope nats_library;  // destroyed last
  using supaplane::config::bind_option;
  supaplane::api::ApiOptions o;
  std::string log_level = "info";
  CLI::App app{"supaplane-api: the gRPC API of supaplane (supaplane.v1)"};
  bind_option(app, "nats-url", "SUPAPLANE_NATS_URL", o.nats_url, "NATS server URL");
  bind_option(app, "redis-url", "SUPAPLANE_REDIS_URL", o.redis_url,
              "Redis URL (redis://host:port[/db])");
  bind_option(app, "database-url", "SUPAPLANE_DATABASE_URL", o.database_url,
              "platform PostgreSQL connection string (accounts)");
  bind_option(app, "grpc-addr", "SUPAPLANE_GRPC_ADDR", o.grpc_addr,
              "gRPC listen address host:port");
  bind_option(app, "metrics-addr", "SUPAPLANE_METRICS_ADDR", o.metrics_addr,
              "/metrics, /healthz, /readyz listen address host:port");
  bind_option(app, "tls-cert", "SUPAPLANE_TLS_CERT", o.tls_cert,
              "PEM certificate chain: serve gRPC over TLS (with --tls-key)");
  bind_option(app, "tls-key", "SUPAPLANE_TLS_KEY", o.tls_key, "PEM private key of --tls-cert");
  bind_option(app, "jwt-secret", "SUPAPLANE_JWT_SECRET", o.jwt_secret,
              "HS256 secret for session tokens (>= 32 bytes)");
  bind_option(app, "base-domain", "SUPAPLANE_BASE_DOMAIN", o.base_domain,
              "tenants live at <ref>.<base-domain>");
  bind_option(app, "admin-email", "SUPAPLANE_ADMIN_EMAIL", o.admin_email,
              "admin account created at start");
  bind_option(app, "admin-password", "SUPAPLANE_ADMIN_PASSWORD", o.admin_password, "its password");
  bind_option(app, "projection-prefix", "SUPAPLANE_PROJECTION_PREFIX", o.projection_prefix,
              "Redis key prefix of the api projection");
  bind_option(app, "durable", "SUPAPLANE_API_DURABLE", o.durable,
              "durable consumer name of the projector (the replica id is appended)");
  bind_option(app, "replica-id", "SUPAPLANE_REPLICA_ID", o.replica_id,
              "this replica's name, unique among replicas sharing the Redis projection "
              "(default: the host name)");
  bind_option(app, "stream-replicas", "SUPAPLANE_STREAM_REPLICAS", o.stream_replicas,
              "replicas of the PLATFORM stream when it is created");
  bind_option(app, "read-wait-ms", "SUPAPLANE_READ_WAIT_MS", o.read_wait_ms,
              "longest wait for min_sequence reads");
  bind_option(app, "master-key", "SUPAPLANE_MASTER_KEY", o.master_key,
              "base64 of 32 bytes; opens sealed tenant keys for GetTenantCredentials");
  bind_option(app, "master-key-previous", "SUPAPLANE_MASTER_KEY_PREVIOUS", o.master_key_previous,
              "retired master keys, comma-separated base64, while rotating (still opened)");
  bind_option(app, "grpc-max-threads", "SUPAPLANE_API_GRPC_MAX_THREADS", o.grpc_max_threads,
              "threads gRPC may use (resource quota)");
  bind_option(app, "auth-concurrency", "SUPAPLANE_API_AUTH_CONCURRENCY", o.auth_concurrency,
              "password hashes (argon2id, 19 MiB each) at a time; 0 = one per core");
  bind_option(app, "auth-max-waiting", "SUPAPLANE_API_AUTH_MAX_WAITING", o.auth_max_waiting,
              "SignUp / Login calls that may wait for a hashing slot (beyond: RESOURCE_EXHAUSTED)");
  bind_option(app, "auth-wait-ms", "SUPAPLANE_API_AUTH_WAIT_MS", o.auth_wait_ms,
              "how long such a call waits for a slot");
  bind_option(app, "auth-rate-per-address", "SUPAPLANE_API_AUTH_RATE_PER_ADDRESS",
              o.auth_rate_per_address,
              "SignUp + Login calls per minute per caller address; 0 = off");
  bind_option(app, "auth-rate-per-email", "SUPAPLANE_API_AUTH_RATE_PER_EMAIL",
              o.auth_rate_per_email, "SignUp + Login calls per minute per e-mail; 0 = off");
  bind_option(app, "trusted-proxies", "SUPAPLANE_API_TRUSTED_PROXIES", o.trusted_proxies,
              "addresses (comma-separated) whose x-forwarded-for names the caller (the console)");
  bind_option(app, "quota-free-tenants", "SUPAPLANE_QUOTA_FREE_TENANTS", o.quota_free_tenants,
              "FREE tenants a customer account may have; 0 = no limit");
  bind_option(app, "quota-tenants", "SUPAPLANE_QUOTA_TENANTS", o.quota_tenants,
              "tenants (any plan) a customer account may have; 0 = no limit");
  bind_option(app, "watch-streams-per-account", "SUPAPLANE_API_WATCH_STREAMS_PER_ACCOUNT",
              o.watch_streams_per_account, "open WatchTenants streams per account");
  bind_option(app, "log-level", "SUPAPLANE_LOG_LEVEL", log_level, "trace|debug|info|warn|error");
  CLI11_PARSE(app, argc, argv);

  supaplane::logging::init("api", log_level);
  supaplane::api::ApiApp api(o);
  return supaplane::config::serve_until_signal("supaplane-api", api);
}
