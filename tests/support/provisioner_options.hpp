#pragma once
// AppOptions for an in-process provisioner with the postgres driver against
// the harness's servers.
#include <string>

#include "provisioner_app.hpp"
#include "servers.hpp"

namespace supaplane::testenv {

/// The master key (32 bytes, base64) the suites seal tenant secrets with.
inline constexpr const char* kTestMasterKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// The platform database `db` and the tenants' databases on `pg`, the test's
/// `nats`; metrics on any free port; no periodic resync (tests call resync()
/// themselves); a short backoff.
inline provisioner::AppOptions provisioner_options(const NatsServer& nats, const PostgresServer& pg,
                                                   const std::string& db) {
  provisioner::AppOptions o;
  o.nats_url = nats.url();
  o.database_url = pg.admin_dsn(db);
  o.tenant_db_url = pg.admin_dsn("postgres");
  o.master_key = kTestMasterKey;
  o.metrics_addr = "127.0.0.1:0";
  o.resync_interval_ms = 0;
  o.provisioner.backoff_base_ms = 20;
  return o;
}

}  // namespace supaplane::testenv
