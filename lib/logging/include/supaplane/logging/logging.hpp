#pragma once
#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace supaplane::logging {

/// Sets the process-wide level ("trace".."off") and format. Call once from main.
void init(const std::string& service, const std::string& level);
/// The logger of one component (created on first use; thread-safe).
std::shared_ptr<spdlog::logger> get(const std::string& component);

}  // namespace supaplane::logging
