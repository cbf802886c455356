// events tail: follow the PLATFORM stream with an ordered (ephemeral) consumer.
#include <algorithm>
#include <chrono>
#include <iostream>
#include <memory>

#include "commands.hpp"
#include "event_log.hpp"
#include "exit_codes.hpp"
#include "interrupt.hpp"
#include "output.hpp"
#include "supaplane/core/time.hpp"
#include "supaplane/events/history.hpp"

namespace supaplane::cli {

namespace {

struct TailOptions {
  std::string subject{"platform.>"};
  std::uint64_t from_seq{0};
  std::uint64_t count{0};
  int idle_exit_ms{0};
};

/// The server removes the ephemeral consumer once nobody listens to it.
/// No Unsubscribe: it would send a consumer delete, which a service's NATS
/// user (the CLI may run as one) may not do, and wait for the refusal.
struct Subscription {
  natsSubscription* sub{nullptr};
  ~Subscription() {
    if (sub) natsSubscription_Destroy(sub);
  }
};

constexpr std::int64_t kPollMs = 200;  // how soon Ctrl-C is noticed

/// True when `subject` filters within `stream_subjects` ("platform.>").
bool within_stream(const std::string& subject, const std::string& stream_subjects) {
  if (stream_subjects.size() < 2 ||
      stream_subjects.compare(stream_subjects.size() - 2, 2, ".>") != 0)
    return subject == stream_subjects;
  const std::string prefix = stream_subjects.substr(0, stream_subjects.size() - 1);  // "platform."
  return subject.size() > prefix.size() && subject.compare(0, prefix.size(), prefix) == 0;
}

void print_message(const GlobalOptions& g, const event_store::StoredMessage& m) {
  const auto r = events::describe(m);
  const std::string time = format_rfc3339_ms(m.timestamp_ns / 1'000'000);
  const std::string type = m.event_type.empty() ? "-" : m.event_type;
  if (g.json) {
    Json j;
    j["sequence"] = m.sequence;
    j["time"] = time;
    j["subject"] = m.subject;
    j["event_type"] = m.event_type;
    j["actor"] = r.actor;
    j["type"] = r.type;
    j["details"] = details_json(r.details);
    j["correlation_id"] = r.correlation_id;
    j["event_id"] = r.event_id;
    std::cout << j.dump(-1, ' ', false, Json::error_handler_t::replace) << std::endl;
  } else {
    std::cout << m.sequence << "  " << time << "  " << m.subject << "  " << type << "  " << r.actor
              << std::endl;
  }
}

int tail(const GlobalOptions& g, const TailOptions& o) {
  install_interrupt_handler();
  auto store = open_event_log(g);
  if (!store) return fail(store.error(), nats_where(g));
  auto& es = **store;

  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = es.stream().name.c_str();
  so.Ordered = true;
  if (o.from_seq > 0) {
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = o.from_seq;
  } else {
    so.Config.DeliverPolicy = js_DeliverNew;
  }
  if (!within_stream(o.subject, es.stream().subjects))
    return fail_usage("--subject " + o.subject + " is outside stream " + es.stream().name + " (" +
                      es.stream().subjects + ")");
  Subscription sub;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_SubscribeSync(&sub.sub, es.jetstream(), o.subject.c_str(), nullptr, &so, &jerr);
  if (s == NATS_ERR && jerr != 0) {
    // The server refused the consumer: not an availability problem.
    const char* why = nats_GetLastError(nullptr);
    return fail(ExitCode::internal, "subscribe to " + o.subject + ": " + (why ? why : "refused") +
                                        " (jetstream error " +
                                        std::to_string(static_cast<int>(jerr)) + ")");
  }
  if (s != NATS_OK)
    return fail(event_store::nats_error(s, jerr, "subscribe to " + o.subject), nats_where(g));
  natsSubscription_SetPendingLimits(sub.sub, -1, -1);

  using Clock = std::chrono::steady_clock;
  auto last_activity = Clock::now();
  std::uint64_t seen = 0;
  while (!interrupted()) {
    std::int64_t wait_ms = kPollMs;
    if (o.idle_exit_ms > 0) {
      const auto idle =
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - last_activity)
              .count();
      if (idle >= o.idle_exit_ms) break;
      wait_ms = std::min<std::int64_t>(wait_ms, o.idle_exit_ms - idle);
    }
    natsMsg* msg = nullptr;
    s = natsSubscription_NextMsg(&msg, sub.sub, wait_ms);
    if (s == NATS_TIMEOUT) continue;
    if (s != NATS_OK)
      return fail(event_store::nats_error(s, static_cast<jsErrCode>(0), "tail " + o.subject),
                  nats_where(g));
    const auto stored = event_store::to_stored(msg);
    natsMsg_Destroy(msg);
    print_message(g, stored);
    last_activity = Clock::now();
    if (o.count > 0 && ++seen >= o.count) break;
  }
  return 0;
}

}  // namespace

void add_events_commands(CLI::App& app, const GlobalOptions& g, Action& action) {
  auto o = std::make_shared<TailOptions>();
  auto* events = add_command(app, "events", "the raw event stream (NATS, not the API)");
  events->require_subcommand(1);
  auto* tail_cmd =
      add_command(*events, "tail", "print stream messages as they arrive (Ctrl-C stops)");
  tail_cmd->add_option("--subject", o->subject, "subject filter")->capture_default_str();
  tail_cmd
      ->add_option("--from-seq", o->from_seq, "start at this stream sequence (default: new only)")
      ->check(CLI::PositiveNumber);
  tail_cmd->add_option("--count", o->count, "exit after this many messages");
  tail_cmd->add_option("--idle-exit-ms", o->idle_exit_ms, "exit after this long without a message")
      ->check(CLI::PositiveNumber);
  on_parsed(tail_cmd, action, [&g, o] { return tail(g, *o); });
}

}  // namespace supaplane::cli
