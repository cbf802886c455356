#pragma once
#include <CLI/CLI.hpp>
#include <cstdio>
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

/// The tail of every service's main: start `app`, report a start failure
/// (exit 2), else run until SIGINT / SIGTERM, then stop it (exit 0).
template <typename App>
int serve_until_signal(const std::string& binary, App& app);

/// Blocks until SIGINT or SIGTERM (installs the handlers).
void wait_for_termination_signal();

/// Environment variable or a default.
std::string env_or(const char* name, const std::string& fallback);

/// The durable consumer name of one replica of a service that reads the whole
/// stream in every replica: `<durable>-<replica id>`, the replica id (the host
/// name when empty) with every character other than a letter, a digit, `-`
/// and `_` turned into `_` (what a consumer name may hold). `durable` alone
/// when no id can be found.
std::string replica_durable(const std::string& durable, const std::string& replica_id);

template <typename App>
int serve_until_signal(const std::string& binary, App& app) {
  if (auto st = app.start(); !st) {
    std::fprintf(stderr, "%s: cannot start: %s\n", binary.c_str(), st.error().message.c_str());
    return 2;
  }
  wait_for_termination_signal();
  app.stop();
  return 0;
}

}  // namespace supaplane::config
