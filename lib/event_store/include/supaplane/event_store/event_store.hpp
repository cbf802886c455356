#pragma once
#include <nats/nats.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "supaplane/core/result.hpp"
#include "supaplane/core/types.hpp"

namespace supaplane::event_store {

inline constexpr const char* kHeaderEventType = "Platform-Event-Type";
inline constexpr const char* kHeaderSchema = "Platform-Schema";
inline constexpr const char* kHeaderCorrelation = "Platform-Correlation-Id";

/// Declare first in main(): on scope exit it waits (bounded) for the NATS
/// library's own threads to finish, so none of their callbacks can run
/// while static objects (the log registry) are being destroyed.
class LibraryScope {
 public:
  LibraryScope() = default;
  ~LibraryScope();
  LibraryScope(const LibraryScope&) = delete;
  LibraryScope& operator=(const LibraryScope&) = delete;
};

struct ConnectOptions {
  /// One URL, or a comma-separated list of the nodes of a cluster. A URL may
  /// carry `user:password@` or `token@` (never logged: see `redact_url`).
  std::string url{"nats://127.0.0.1:4222"};
  std::string name{"supaplane"};
  int reconnect_wait_ms{250};
  int request_timeout_ms{5000};
  /// Fail at once (`unavailable`) when no server answers the first attempt,
  /// instead of retrying until one does (command-line tools).
  bool fail_fast{false};
  /// A `.creds` file (user JWT + nkey seed); empty = none.
  std::string creds_file{};
  /// Replies (requests, JetStream API answers, push and ordered consumers)
  /// arrive on `<prefix>.<random>`; empty = cnats's `_INBOX`. Each service
  /// user may subscribe only to its own prefix (see inbox_prefix_for).
  std::string inbox_prefix{};
};

/// The reply inbox prefix of a service (`supaplane-billing` → `_INBOX_billing`),
/// the one its NATS user may subscribe to (deploy/compose/nats/nats.conf).
std::string inbox_prefix_for(const std::string& service);

/// The reply inbox prefix of whoever connects with `url`: `_INBOX_<user>` for
/// the user of its first `user:password@` (a tool such as supaplanectl run
/// with a service's user must read replies where that user may); empty (the
/// default) without one (a token, a credentials file, no user).
std::string inbox_prefix_for_url(const std::string& url);

/// Settings of the PLATFORM stream (docs/events.md).
struct StreamSettings {
  std::string name{"PLATFORM"};
  std::string subjects{"platform.>"};
  int replicas{1};
  std::int64_t duplicate_window_ms{120'000};
};

/// The settings of an existing stream that would let events be lost or
/// rewritten, one line each naming the setting ("retention is workqueue, must
/// be limits"); empty when the stream protects the log.
std::vector<std::string> stream_problems(const jsStreamConfig& config, const StreamSettings& want);

/// `url` (one URL or a comma-separated list) with every password or token
/// replaced by `***`: the only form of a NATS URL that may be logged.
std::string redact_url(std::string_view url);

/// `text` with every password or token of `urls` replaced by `***` (for
/// messages that might quote a URL, e.g. the client library's error text).
std::string scrub_secrets(const char* text, std::string_view urls);

/// The URLs of a comma-separated list, trimmed, empty entries dropped.
std::vector<std::string> split_urls(std::string_view urls);

/// The expected last sequence of the subject an append goes to.
struct Expected {
  enum class Kind { any, no_message, sequence } kind{Kind::any};
  std::uint64_t sequence{0};
  static Expected any() { return {}; }
  static Expected no_message() { return {Kind::no_message, 0}; }
  /// `seq` == 0 means "no message yet".
  static Expected at(std::uint64_t seq) {
    return seq == 0 ? no_message() : Expected{Kind::sequence, seq};
  }
};

struct OutgoingEvent {
  std::string subject;
  std::string msg_id;  ///< Nats-Msg-Id; empty = none
  Expected expected;
  std::string event_type;  ///< Platform-Event-Type
  std::string schema;      ///< Platform-Schema
  std::string correlation_id;
  std::string body;
};

struct AppendResult {
  StreamSequence sequence;
  bool duplicate{false};  ///< the msg id was seen before: `sequence` is the original's
};

struct StoredMessage {
  std::string subject;
  std::uint64_t sequence{0};
  std::int64_t timestamp_ns{0};
  std::string event_type;
  std::string correlation_id;
  std::string data;
  std::uint64_t delivered{1};  ///< delivery count (consumers only)
  std::uint64_t pending{0};    ///< messages left after this one (consumers only)
};

/// Completion of an asynchronous append; runs on the client's ack thread:
/// keep it short and never block in it.
using AppendCallback = std::function<void(Result<AppendResult>)>;

/// Returns false to stop a replay early.
using ReplayHandler = std::function<bool(const StoredMessage&)>;

/// How a replay reads: an ordered push consumer (a message at a time with
/// flow control; needs only `$JS.API.CONSUMER.CREATE.<stream>` and an inbox),
/// or an ephemeral pull consumer without acks read in NoWait Fetch batches
/// of 1,024 (the raw read is about twice as fast, but each batch is handled
/// while no fetch is in flight, so with real work per message it is not
/// faster yet: docs/benchmarks.md; the NATS user needs MSG.NEXT for any name,
/// `$JS.API.CONSUMER.MSG.NEXT.<stream>.*`, which no service user has).
enum class ReplayRead { ordered_push, pull_batches };

/// A JetStream client bound to one stream. Thread-safe: one NATS connection
/// shared by all callers (cnats multiplexes requests).
class EventStore {
 public:
  ~EventStore();
  EventStore(const EventStore&) = delete;
  EventStore& operator=(const EventStore&) = delete;

  /// Connects; when the server is not up yet it keeps trying in the background
  /// and reconnects forever after drops. While the connection is not up,
  /// appends and reads answer `unavailable` at once instead of waiting out
  /// the request timeout (nothing is buffered for later: the caller is told).
  static Result<std::unique_ptr<EventStore>> connect(const ConnectOptions& opts,
                                                     StreamSettings stream = {});

  /// Checks that the stream exists and protects the log (`stream_problems`).
  /// `not_found` when it does not exist (services never create it: an admin
  /// step does, see `create_or_verify_stream`); `incompatible` naming each
  /// bad setting; `unavailable` when NATS does not answer.
  Status verify_stream();
  /// The admin step: creates the stream with the protective settings, or
  /// verifies an existing one as `verify_stream` does, first tightening in
  /// place what an update can change without touching a message (discard
  /// policy, a too short duplicate window; listed in `*changed`). Needs a
  /// user allowed to create streams. Sets `*created` when it created it.
  Status create_or_verify_stream(bool* created = nullptr,
                                 std::vector<std::string>* changed = nullptr);

  Result<AppendResult> append(const OutgoingEvent& ev);
  /// The same append without blocking the caller: many appends in flight
  /// share the connection's writes. `done` is called exactly once (inline
  /// when the message cannot even be queued).
  void append_async(const OutgoingEvent& ev, AppendCallback done);
  /// Every message on `subject`, in order.
  Result<std::vector<StoredMessage>> read_subject(const std::string& subject);
  /// Messages matching `filter` from `from_sequence` (1 = the beginning) up to
  /// the end of the stream as it was when the replay started. A replay of the
  /// whole stream (`filter` == the stream's subjects) that sees a sequence
  /// gap or stalls before the stream's last sequence fails `unavailable`
  /// (a consumer placed on a replica still catching up), whichever `read`.
  Status replay(const std::string& filter, std::uint64_t from_sequence,
                const ReplayHandler& handler, ReplayRead read = ReplayRead::ordered_push);
  Result<StoredMessage> get(std::uint64_t sequence);
  /// Sequence of the last message in the stream (0 when empty).
  Result<std::uint64_t> last_sequence();
  /// Every subject matching `filter` that holds at least one message.
  Result<std::vector<std::string>> subjects(const std::string& filter);

  bool connected() const;
  const StreamSettings& stream() const { return stream_; }
  jsCtx* jetstream() { return js_; }
  natsConnection* connection() { return conn_; }

 private:
  EventStore() = default;
  Status tighten_stream(std::vector<std::string>* changes);
  static void on_async_ack(jsCtx* js, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure);
  natsMsg* build_message(const OutgoingEvent& ev, jsPubOptions* po, natsStatus* status);
  /// The `unavailable` answer while the connection is down (built only then:
  /// appends check `connected()` first and pay nothing when it is up).
  static Error not_connected(std::string_view what, std::string_view subject = {});
  std::mutex pending_mu_;
  std::unordered_map<natsMsg*, AppendCallback> pending_;  ///< async appends awaiting their ack
  natsConnection* conn_{nullptr};
  jsCtx* js_{nullptr};
  StreamSettings stream_;
  int request_timeout_ms_{5000};
};

/// How a service starts on the log: connect (never blocking on an absent
/// server; credentials from the URL, or a `.creds` file named by
/// SUPAPLANE_NATS_CREDS) and make one check of the stream, so that an
/// incompatible stream stops the start with a clear message naming the
/// setting. `stream_ready` says whether that check passed; if not (NATS not
/// there yet, or the stream not created yet) the caller retries
/// `verify_stream` in the background and stays not ready. Services never
/// create the stream. `replicas` is only compared (a warning).
Result<std::unique_ptr<EventStore>> open_for_service(const std::string& url,
                                                     const std::string& service, int replicas,
                                                     bool* stream_ready);

/// Maps a cnats status (+ JetStream error code) to our errc.
Error nats_error(natsStatus s, jsErrCode jerr, const std::string& what);
/// Reads the stored fields of a message (headers, JetStream metadata).
StoredMessage to_stored(natsMsg* msg);

}  // namespace supaplane::event_store
