#include "commands.hpp"

#include "exit_codes.hpp"

namespace supaplane::cli {

CLI::App* add_command(CLI::App& parent, const std::string& name, const std::string& description) {
  auto* cmd = parent.add_subcommand(name, description);
  cmd->footer(kExitCodesHelp);
  return cmd;
}

void on_parsed(CLI::App* cmd, Action& action, Action body) {
  cmd->callback([&action, body = std::move(body)] { action = body; });
}

}  // namespace supaplane::cli
