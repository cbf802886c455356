#include "event_log.hpp"

#include <utility>

namespace supaplane::cli {

Result<std::unique_ptr<event_store::EventStore>> open_event_log(
    const GlobalOptions& g, event_store::StreamSettings stream) {
  event_store::ConnectOptions co;
  co.url = g.nats_url;
  co.creds_file = g.nats_creds;
  co.name = "supaplanectl";
  // Run with a service's user (the users of deploy/compose/nats/nats.conf),
  // replies must come where that user may subscribe.
  co.inbox_prefix = event_store::inbox_prefix_for_url(g.nats_url);
  co.request_timeout_ms = g.timeout_seconds * 1000;
  co.fail_fast = true;
  return event_store::EventStore::connect(co, std::move(stream));
}

std::string nats_where(const GlobalOptions& g) {
  return "NATS at " + event_store::redact_url(g.nats_url);
}

}  // namespace supaplane::cli
