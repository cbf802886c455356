// supaplanectl: flags / SUPAPLANE_* environment → GlobalOptions → one command.
#include <CLI/CLI.hpp>
#include <iostream>

#include "commands.hpp"
#include "exit_codes.hpp"
#include "options.hpp"
#include "supaplane/config/config.hpp"
#include "supaplane/event_store/event_store.hpp"
#include "supaplane/logging/logging.hpp"
#include "supaplane/tls/tls.hpp"
#include "token_file.hpp"

int main(int argc, char** argv) {
  const supaplane::event_store::LibraryScope nats_library;  // destroyed last
  using supaplane::config::bind_option;
  namespace cli = supaplane::cli;

  cli::GlobalOptions g;
  g.token_file = cli::default_token_path();
  cli::Action action;

  CLI::App app{"supaplanectl: manage supaplane tenants (gRPC API) and read the event log (NATS)"};
  app.footer(cli::kExitCodesHelp);
  app.require_subcommand(1);
  app.fallthrough();  // global options are accepted after the subcommand too
  bind_option(app, "api", "SUPAPLANE_API_ADDR", g.api_addr, "API address host:port");
  app.add_flag("--tls", g.tls, "speak TLS to the API and billing (trusting the system's roots)")
      ->envname("SUPAPLANE_TLS");
  bind_option(app, "ca-file", "SUPAPLANE_CA_FILE", g.ca_file,
              "PEM certificate(s) to trust for the API's and billing's TLS (implies --tls)");
  bind_option(app, "billing", "SUPAPLANE_BILLING_ADDR", g.billing_addr,
              "supaplane-billing's gRPC address host:port (billing commands)");
  bind_option(app, "nats-url", "SUPAPLANE_NATS_URL", g.nats_url,
              "NATS URL, or a comma-separated list of a cluster's (audit, events tail, admin "
              "init-stream)");
  bind_option(app, "nats-creds", "SUPAPLANE_NATS_CREDS", g.nats_creds,
              "NATS .creds file (user JWT and nkey seed)");
  bind_option(app, "token-file", "SUPAPLANE_TOKEN_FILE", g.token_file,
              "where login saves the session token (mode 0600)");
  // No default shown: the value is a secret.
  app.add_option("--token", g.token, "session token; overrides the token file")
      ->envname("SUPAPLANE_TOKEN");
  app.add_flag("--json", g.json, "machine-readable output");
  bind_option(app, "timeout", "SUPAPLANE_TIMEOUT", g.timeout_seconds, "seconds per RPC")
      ->check(CLI::PositiveNumber);

  cli::add_account_commands(app, g, action);
  cli::add_tenant_commands(app, g, action);
  cli::add_admin_commands(app, g, action);
  cli::add_audit_command(app, g, action);
  cli::add_events_commands(app, g, action);
  cli::add_billing_commands(app, g, action);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);  // prints help or the usage error
    return rc == 0 ? 0 : static_cast<int>(cli::ExitCode::usage);
  }

  // The event store logs reconnect warnings; the CLI reports errors itself.
  supaplane::logging::init("supaplanectl", "error");
  if (!action) return cli::fail_usage("no command given (see --help)");
  auto creds = supaplane::tls::channel_credentials({g.tls, g.ca_file});
  if (!creds) return cli::fail_usage(creds.error().message);
  g.credentials = std::move(*creds);
  return action();
}
