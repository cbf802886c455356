#pragma once
// In-memory fakes of our own interfaces (never of NATS, Redis or PostgreSQL):
// the log (`event_store::EventLog`), tenant secrets (`keystore::SecretStore`)
// and a sleeper that only records, for unit tests of the code on top of them.

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "supaplane/event_store/command.hpp"
#include "supaplane/event_store/event_log.hpp"
#include "supaplane/keystore/secret_store.hpp"

namespace supaplane::testing {

/// One stream in memory with JetStream's rules for what we use: a global
/// sequence, the expected last subject sequence (a mismatch is `conflict`),
/// message-id dedupe (a repeat answers the original sequence, `duplicate`).
/// `before_append` runs before each append is checked (outside the lock):
/// a test appends a racing writer's event there. Thread-safe.
class FakeEventLog final : public event_store::EventLog {
 public:
  std::function<void(const event_store::OutgoingEvent&)> before_append;

  Result<event_store::AppendResult> append(const event_store::OutgoingEvent& ev) override {
    if (before_append) before_append(ev);
    std::lock_guard lk(mu_);
    appends_tried_++;
    if (!ev.msg_id.empty()) {
      auto it = msg_ids_.find(ev.msg_id);
      if (it != msg_ids_.end()) return event_store::AppendResult{StreamSequence(it->second), true};
    }
    const std::uint64_t last = last_on(ev.subject);
    using K = event_store::Expected::Kind;
    const bool ok = ev.expected.kind == K::any ||
                    (ev.expected.kind == K::no_message && last == 0) ||
                    (ev.expected.kind == K::sequence && last == ev.expected.sequence);
    if (!ok) {
      conflicts_++;
      return make_error(errc::conflict, "wrong last sequence on " + ev.subject);
    }
    event_store::StoredMessage m;
    m.subject = ev.subject;
    m.sequence = ++seq_;
    m.timestamp_ns = static_cast<std::int64_t>(m.sequence) * 1'000'000;
    m.event_type = ev.event_type;
    m.correlation_id = ev.correlation_id;
    m.data = ev.body;
    messages_.push_back(m);
    if (!ev.msg_id.empty()) msg_ids_[ev.msg_id] = m.sequence;
    return event_store::AppendResult{StreamSequence(m.sequence), false};
  }

  /// Completes inline, as the real client does when it cannot queue.
  void append_async(const event_store::OutgoingEvent& ev,
                    event_store::AppendCallback done) override {
    done(append(ev));
  }

  Result<std::vector<event_store::StoredMessage>> read_subject(
      const std::string& subject) override {
    std::lock_guard lk(mu_);
    reads_++;
    std::vector<event_store::StoredMessage> out;
    for (const auto& m : messages_)
      if (m.subject == subject) out.push_back(m);
    return out;
  }

  Status replay(const std::string& filter, std::uint64_t from_sequence,
                const event_store::ReplayHandler& handler) override {
    std::vector<event_store::StoredMessage> copy;
    {
      std::lock_guard lk(mu_);
      copy = messages_;
    }
    // Only the forms the services use: an exact subject or "prefix.>".
    const bool wildcard = filter.size() >= 1 && filter.back() == '>';
    const std::string prefix = wildcard ? filter.substr(0, filter.size() - 1) : filter;
    for (const auto& m : copy) {
      if (m.sequence < from_sequence) continue;
      if (wildcard ? m.subject.rfind(prefix, 0) != 0 : m.subject != filter) continue;
      if (!handler(m)) break;
    }
    return Status::Ok();
  }

  Result<std::uint64_t> last_sequence() override {
    std::lock_guard lk(mu_);
    return seq_;
  }

  std::vector<event_store::StoredMessage> messages() {
    std::lock_guard lk(mu_);
    return messages_;
  }
  int conflicts() {
    std::lock_guard lk(mu_);
    return conflicts_;
  }
  int reads() {
    std::lock_guard lk(mu_);
    return reads_;
  }

 private:
  std::uint64_t last_on(const std::string& subject) const {
    for (auto it = messages_.rbegin(); it != messages_.rend(); ++it)
      if (it->subject == subject) return it->sequence;
    return 0;
  }
  std::mutex mu_;
  std::vector<event_store::StoredMessage> messages_;
  std::map<std::string, std::uint64_t> msg_ids_;
  std::uint64_t seq_{0};
  int conflicts_{0};
  int reads_{0};
  int appends_tried_{0};
};

/// Records every wait instead of waiting; `stop_after` waits answer false.
class RecordingSleeper final : public event_store::Sleeper {
 public:
  bool sleep_ms(std::int64_t ms) override {
    std::lock_guard lk(mu_);
    waits.push_back(ms);
    return !stop_after || static_cast<int>(waits.size()) < *stop_after;
  }
  std::optional<int> stop_after;
  std::vector<std::int64_t> waits;

 private:
  std::mutex mu_;
};

/// Tenant secrets in memory: `ensure` makes deterministic keys per generation.
class FakeSecretStore final : public keystore::SecretStore {
 public:
  Result<keystore::StoredKeys> ensure(const std::string& ref,
                                      std::int64_t keys_generation) override {
    std::lock_guard lk(mu_);
    auto& k = keys_[ref];
    if (k.keys_generation < keys_generation || k.keys.db_password.empty()) {
      k.keys_generation = keys_generation;
      k.keys.db_password = "pw-" + ref + "-" + std::to_string(keys_generation);
    }
    return k;
  }
  Result<std::optional<keystore::StoredKeys>> load(const std::string& ref) override {
    std::lock_guard lk(mu_);
    auto it = keys_.find(ref);
    if (it == keys_.end()) return std::optional<keystore::StoredKeys>{};
    return std::optional<keystore::StoredKeys>(it->second);
  }
  Status remove(const std::string& ref) override {
    std::lock_guard lk(mu_);
    keys_.erase(ref);
    return Status::Ok();
  }
  bool has(const std::string& ref) {
    std::lock_guard lk(mu_);
    return keys_.count(ref) > 0;
  }

 private:
  std::mutex mu_;
  std::map<std::string, keystore::StoredKeys> keys_;
};

}  // namespace supaplane::testing
