#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "supaplane/core/result.hpp"
#include "supaplane/event_store/event_store.hpp"

namespace supaplane::event_store {

/// What the services' write paths need of the log: appends with the
/// expected subject sequence, reads of one subject, replays. `JetStreamLog`
/// puts the JetStream client behind it; unit tests use an in-memory fake
/// (tests/support/fakes.hpp). Implementations are thread-safe.
class EventLog {
 public:
  virtual ~EventLog() = default;
  /// `conflict` when the subject's last sequence is not `ev.expected`; a
  /// repeated msg id answers the original sequence with `duplicate` set.
  virtual Result<AppendResult> append(const OutgoingEvent& ev) = 0;
  /// The same append without blocking the caller; `done` is called exactly
  /// once (on the client's ack thread, or inline).
  virtual void append_async(const OutgoingEvent& ev, AppendCallback done) = 0;
  /// Every message on `subject`, in order.
  virtual Result<std::vector<StoredMessage>> read_subject(const std::string& subject) = 0;
  /// Messages matching `filter` from `from_sequence` (1 = the beginning) up
  /// to the end of the stream as it was when the replay started.
  virtual Status replay(const std::string& filter, std::uint64_t from_sequence,
                        const ReplayHandler& handler) = 0;
  /// Sequence of the last message in the stream (0 when empty).
  virtual Result<std::uint64_t> last_sequence() = 0;
};

/// The JetStream client (`EventStore`) as an `EventLog`: every call forwards.
class JetStreamLog final : public EventLog {
 public:
  explicit JetStreamLog(EventStore& store) : store_(store) {}
  Result<AppendResult> append(const OutgoingEvent& ev) override { return store_.append(ev); }
  void append_async(const OutgoingEvent& ev, AppendCallback done) override {
    store_.append_async(ev, std::move(done));
  }
  Result<std::vector<StoredMessage>> read_subject(const std::string& subject) override {
    return store_.read_subject(subject);
  }
  Status replay(const std::string& filter, std::uint64_t from_sequence,
                const ReplayHandler& handler) override {
    return store_.replay(filter, from_sequence, handler);
  }
  Result<std::uint64_t> last_sequence() override { return store_.last_sequence(); }
  EventStore& store() { return store_; }

 private:
  EventStore& store_;
};

}  // namespace supaplane::event_store
