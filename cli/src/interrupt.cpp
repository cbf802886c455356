#include "interrupt.hpp"

#include <csignal>

namespace supaplane::cli {

namespace {
volatile std::sig_atomic_t g_interrupted = 0;
void on_signal(int) { g_interrupted = 1; }
}  // namespace

void install_interrupt_handler() {
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
}

bool interrupted() noexcept { return g_interrupted != 0; }

}  // namespace supaplane::cli
