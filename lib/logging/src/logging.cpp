#include "supaplane/logging/logging.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <mutex>

namespace supaplane::logging {

namespace {
std::mutex g_mu;
std::string g_service = "supaplane";
}  // namespace

void init(const std::string& service, const std::string& level) {
  std::lock_guard lk(g_mu);
  g_service = service;
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l [%n] %v", spdlog::pattern_time_type::utc);
  spdlog::set_level(spdlog::level::from_str(level));
}

std::shared_ptr<spdlog::logger> get(const std::string& component) {
  std::lock_guard lk(g_mu);
  const std::string name = g_service + "." + component;
  if (auto l = spdlog::get(name)) return l;
  auto l = spdlog::stderr_color_mt(name);
  l->set_level(spdlog::get_level());
  return l;
}

}  // namespace supaplane::logging
