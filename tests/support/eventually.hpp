#pragma once
// Waiting for a condition in integration tests: poll `pred` until it holds or
// `timeout` passes (then one last look). A bound, never a sleep that proves
// nothing happened.
#include <chrono>
#include <thread>

namespace supaplane::testenv {

template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(30),
                std::chrono::milliseconds every = std::chrono::milliseconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(every);
  }
  return pred();
}

}  // namespace supaplane::testenv
