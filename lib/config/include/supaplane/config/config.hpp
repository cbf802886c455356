#pragma once
#include <CLI/CLI.hpp>
#include <string>

#include "supaplane/core/result.hpp"

namespace supaplane::config {

/// Adds `--<flag>` bound to `target`, also read from environment `env`
/// (the flag wins). The default stays in `target`.
CLI::Option* bind_option(CLI::App& app, const std::string& flag, const std::string& env,
                         std::string& target, const std::string& help);
CLI::Option* bind_option(CLI::App& app, const std::string& flag, const std::string& env,
                         int& target, const std::string& help);

struct HostPort {
  std::string host;
  int port{0};
};

/// "127.0.0.1:9101", ":9101" (all interfaces → 0.0.0.0), "[::1]:50051".
Result<HostPort> parse_host_port(const std::string& addr);

/// Environment variable or a default.
std::string env_or(const char* name, const std::string& fallback);

}  // namespace supaplane::config
