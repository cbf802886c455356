#include "supaplane/event_store/consumer.hpp"

#include <algorithm>
#include <chrono>

#include "supaplane/logging/logging.hpp"

namespace supaplane::event_store {

namespace {
std::shared_ptr<spdlog::logger> log() {
  static auto l = logging::get("consumer");
  return l;
}
}  // namespace

ConsumerRunner::ConsumerRunner(EventStore& store, ConsumerOptions opts, BatchHandler& handler)
    : store_(store), opts_(std::move(opts)), handler_(handler) {}

ConsumerRunner::~ConsumerRunner() { stop(); }

std::int64_t ConsumerRunner::backoff_ms(std::uint64_t delivered, int base_ms, int max_ms) {
  std::int64_t d = base_ms;
  for (std::uint64_t i = 1; i < delivered && d < max_ms; ++i) d *= 2;
  return std::min<std::int64_t>(d, max_ms);
}

void ConsumerRunner::start() {
  stop_ = false;
  thread_ = std::thread([this] { run(); });
}

void ConsumerRunner::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void ConsumerRunner::run() {
  natsSubscription* sub = nullptr;
  int failures = 0;
  auto pause = [&] {
    // Bounded exponential pause between failed attempts; wakes early on stop.
    const auto ms = backoff_ms(static_cast<std::uint64_t>(++failures), 50, 2000);
    for (std::int64_t waited = 0; waited < ms && !stop_; waited += 10)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  };
  while (!stop_) {
    if (!sub) {
      jsSubOptions so;
      jsSubOptions_Init(&so);
      so.Stream = store_.stream().name.c_str();
      so.Config.Durable = opts_.durable.c_str();
      so.Config.AckPolicy = js_AckExplicit;
      so.Config.DeliverPolicy = js_DeliverAll;
      so.Config.AckWait = opts_.ack_wait_ms * 1'000'000;
      so.Config.MaxAckPending = opts_.max_ack_pending;
      so.Config.FilterSubject = opts_.filter.c_str();
      jsErrCode jerr = static_cast<jsErrCode>(0);
      natsStatus s = js_PullSubscribe(&sub, store_.jetstream(), opts_.filter.c_str(),
                                      opts_.durable.c_str(), nullptr, &so, &jerr);
      if (s != NATS_OK) {
        sub = nullptr;
        stats_.fetch_errors++;
        if (failures == 0)
          log()->warn("consumer {}: cannot subscribe: {} (jerr {}); retrying", opts_.durable,
                      natsStatus_GetText(s), static_cast<int>(jerr));
        pause();
        continue;
      }
      subscribed_ = true;
      failures = 0;
    }
    natsMsgList list{};
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = natsSubscription_Fetch(&list, sub, opts_.batch, opts_.fetch_timeout_ms, &jerr);
    if (s == NATS_TIMEOUT && list.Count == 0) {
      natsMsgList_Destroy(&list);
      continue;
    }
    if (s != NATS_OK && list.Count == 0) {
      natsMsgList_Destroy(&list);
      stats_.fetch_errors++;
      if (failures == 0)
        log()->warn("consumer {}: fetch failed: {}; retrying", opts_.durable,
                    natsStatus_GetText(s));
      // A subscription that keeps failing (durable deleted or recreated on
      // the server, ...) is dropped and made again.
      if (s == NATS_INVALID_SUBSCRIPTION || s == NATS_CONNECTION_CLOSED || failures >= 10) {
        natsSubscription_Destroy(sub);  // never Unsubscribe: that deletes the durable
        sub = nullptr;
        subscribed_ = false;
      }
      pause();
      continue;
    }
    failures = 0;
    std::vector<InboundMessage> batch;
    batch.reserve(static_cast<std::size_t>(list.Count));
    for (int i = 0; i < list.Count; ++i)
      batch.push_back({to_stored(list.Msgs[i]), Disposition::ack});
    handler_.handle(batch);
    for (int i = 0; i < list.Count; ++i) {
      natsMsg* m = list.Msgs[i];
      const auto& in = batch[static_cast<std::size_t>(i)];
      switch (in.disposition) {
        case Disposition::ack:
          natsMsg_Ack(m, nullptr);
          stats_.acked++;
          break;
        case Disposition::retry:
          if (in.message.delivered >= opts_.max_deliveries) {
            log()->error("consumer {}: seq {} failed {} times; terminating it", opts_.durable,
                         in.message.sequence, in.message.delivered);
            natsMsg_Term(m, nullptr);
            stats_.terminated++;
          } else {
            natsMsg_NakWithDelay(
                m, backoff_ms(in.message.delivered, opts_.backoff_base_ms, opts_.backoff_max_ms),
                nullptr);
            stats_.retried++;
          }
          break;
        case Disposition::release:
          natsMsg_Nak(m, nullptr);
          break;
        case Disposition::poison:
          natsMsg_Term(m, nullptr);
          stats_.terminated++;
          break;
      }
    }
    if (!batch.empty()) stats_.pending = batch.back().message.pending;
    natsMsgList_Destroy(&list);
  }
  if (sub) natsSubscription_Destroy(sub);  // keep the durable on the server
  subscribed_ = false;
}

}  // namespace supaplane::event_store
