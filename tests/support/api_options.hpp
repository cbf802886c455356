#pragma once
// ApiOptions for an in-process api against the harness's servers.
#include <string>

#include "app.hpp"
#include "servers.hpp"

namespace supaplane::testenv {

inline api::ApiOptions api_options(const NatsServer& nats, const RedisServer& redis,
                                   const std::string& database_url, const std::string& jwt_secret) {
  api::ApiOptions o;
  o.nats_url = nats.url();
  o.redis_url = redis.url();
  o.database_url = database_url;
  o.grpc_addr = "127.0.0.1:0";  // any free port; read back with grpc_port()
  o.metrics_addr = "127.0.0.1:0";
  o.jwt_secret = jwt_secret;
  // Suites make many accounts and tenants from one address in seconds; the
  // limits and quotas have their own tests (api_itest "Limits"), which set them.
  o.auth_rate_per_address = 0;
  o.auth_rate_per_email = 0;
  o.quota_free_tenants = 0;
  o.quota_tenants = 0;
  return o;
}

}  // namespace supaplane::testenv
