#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "supaplane/event_store/event_store.hpp"

namespace supaplane::event_store {

struct ConsumerOptions {
  std::string durable;  ///< durable consumer name
  std::string filter{"platform.>"};
  int batch{256};
  int fetch_timeout_ms{250};
  std::int64_t ack_wait_ms{30'000};
  int max_ack_pending{20'000};
  std::uint64_t max_deliveries{8};  ///< a message failing this often is terminated
  int backoff_base_ms{100};
  int backoff_max_ms{30'000};
};

enum class Disposition {
  ack,      ///< handled
  retry,    ///< transient failure: nak with backoff, redelivered later
  poison,   ///< can never be handled: terminate (counted), never redelivered
  release,  ///< not handled (shutting down): nak now so it comes back first
};

struct InboundMessage {
  StoredMessage message;
  Disposition disposition{Disposition::ack};
};

/// Receives batches in stream order on the runner's thread.
class BatchHandler {
 public:
  virtual ~BatchHandler() = default;
  /// Sets `disposition` of every message.
  virtual void handle(std::vector<InboundMessage>& batch) = 0;
};

/// Counters a runner keeps (read from any thread).
struct ConsumerStats {
  std::atomic<std::uint64_t> acked{0};
  std::atomic<std::uint64_t> retried{0};
  std::atomic<std::uint64_t> terminated{0};
  std::atomic<std::uint64_t> fetch_errors{0};
  std::atomic<std::uint64_t> pending{0};  ///< consumer lag seen on the last message
};

/// Drives one durable pull consumer on its own thread. start/stop from one thread.
class ConsumerRunner {
 public:
  ConsumerRunner(EventStore& store, ConsumerOptions opts, BatchHandler& handler);
  ~ConsumerRunner();
  ConsumerRunner(const ConsumerRunner&) = delete;
  ConsumerRunner& operator=(const ConsumerRunner&) = delete;

  /// Starts the thread; the subscription is (re)created there, so this
  /// succeeds while NATS is down and the runner catches up once it is back.
  void start();
  void stop();
  bool subscribed() const { return subscribed_.load(); }
  const ConsumerStats& stats() const { return stats_; }

  /// Delay before redelivery after `delivered` failed attempts.
  static std::int64_t backoff_ms(std::uint64_t delivered, int base_ms, int max_ms);

 private:
  void run();
  EventStore& store_;
  ConsumerOptions opts_;
  BatchHandler& handler_;
  ConsumerStats stats_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> subscribed_{false};
  std::thread thread_;
};

}  // namespace supaplane::event_store
