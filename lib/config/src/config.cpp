#include "supaplane/config/config.hpp"

#include <unistd.h>

#include <cctype>
#include <csignal>
#include <cstdlib>

namespace supaplane::config {

CLI::Option* bind_option(CLI::App& app, const std::string& flag, const std::string& env,
                         std::string& target, const std::string& help) {
  return app.add_option("--" + flag, target, help)->envname(env)->capture_default_str();
}

CLI::Option* bind_option(CLI::App& app, const std::string& flag, const std::string& env,
                         int& target, const std::string& help) {
  return app.add_option("--" + flag, target, help)->envname(env)->capture_default_str();
}

Result<HostPort> parse_host_port(const std::string& addr) {
  auto colon = addr.rfind(':');
  if (colon == std::string::npos)
    return make_error(errc::invalid_argument, "address must be host:port: " + addr);
  HostPort hp;
  hp.host = addr.substr(0, colon);
  if (hp.host.size() >= 2 && hp.host.front() == '[' && hp.host.back() == ']')
    hp.host = hp.host.substr(1, hp.host.size() - 2);
  if (hp.host.empty()) hp.host = "0.0.0.0";
  const std::string port = addr.substr(colon + 1);
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos)
    return make_error(errc::invalid_argument, "bad port in address: " + addr);
  hp.port = std::stoi(port);
  if (hp.port > 65535) return make_error(errc::invalid_argument, "bad port in address: " + addr);
  return hp;
}

namespace {
volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }
}  // namespace

void wait_for_termination_signal() {
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  while (!g_stop) pause();
}

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

std::string replica_durable(const std::string& durable, const std::string& replica_id) {
  std::string id = replica_id;
  if (id.empty()) {
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) == 0) id = host;
  }
  for (char& c : id)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') c = '_';
  return id.empty() ? durable : durable + "-" + id;
}

}  // namespace supaplane::config
