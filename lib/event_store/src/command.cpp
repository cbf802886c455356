#include "supaplane/event_store/command.hpp"

#include <chrono>
#include <thread>

namespace supaplane::event_store {

bool ThreadSleeper::sleep_ms(std::int64_t ms) {
  // In short steps, so that a stop is noticed within 10 ms.
  for (std::int64_t waited = 0; waited < ms; waited += 10) {
    if (stop_ && stop_->load()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min<std::int64_t>(10, ms - waited)));
  }
  return !(stop_ && stop_->load());
}

ThreadSleeper& ThreadSleeper::instance() {
  static ThreadSleeper s;
  return s;
}

std::int64_t command_backoff_ms(const RetryPolicy& p, int attempt) {
  if (p.backoff_base_ms <= 0 || attempt < 1) return 0;
  std::int64_t ms = p.backoff_base_ms;
  for (int i = 1; i < attempt && ms < p.backoff_max_ms; ++i) ms *= 2;
  return std::min<std::int64_t>(ms, std::max(p.backoff_base_ms, p.backoff_max_ms));
}

}  // namespace supaplane::event_store
