#pragma once
#include <CLI/CLI.hpp>
#include <string>

#include "options.hpp"

namespace supaplane::cli {

/// Adds a subcommand with the exit-code footer.
CLI::App* add_command(CLI::App& parent, const std::string& name, const std::string& description);

/// When `cmd` is parsed, `action` becomes `body` (run after parsing completes,
/// when every global option has its value).
void on_parsed(CLI::App* cmd, Action& action, Action body);

// Each adds its subcommands to `app`; the actions read `g` when they run.
void add_account_commands(CLI::App& app, const GlobalOptions& g, Action& action);
void add_tenant_commands(CLI::App& app, const GlobalOptions& g, Action& action);
void add_admin_commands(CLI::App& app, const GlobalOptions& g, Action& action);
void add_audit_command(CLI::App& app, const GlobalOptions& g, Action& action);
void add_events_commands(CLI::App& app, const GlobalOptions& g, Action& action);
void add_billing_commands(CLI::App& app, const GlobalOptions& g, Action& action);

}  // namespace supaplane::cli
