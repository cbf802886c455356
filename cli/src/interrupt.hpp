#pragma once

namespace supaplane::cli {

/// Catches SIGINT / SIGTERM from now on; long-running commands poll
/// `interrupted()` to stop cleanly.
void install_interrupt_handler();
bool interrupted() noexcept;

}  // namespace supaplane::cli
