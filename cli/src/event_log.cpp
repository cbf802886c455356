#include "event_log.hpp"

#include <utility>

namespace supaplane::cli {

Result<std::unique_ptr<event_store::EventStore>> open_event_log(
    const GlobalOptions& g, event_store::StreamSettings stream) {
  event_store::ConnectOptions co;
  co.url = g.nats_url;
  co.creds_file = g.nats_creds;
  co.name = "supaplanectl";
  co.request_timeout_ms = g.timeout_seconds * 1000;
  co.fail_fast = true;
  return event_store::EventStore::connect(co, std::move(stream));
}

std::string nats_where(const GlobalOptions& g) {
  return "NATS at " + event_store::redact_url(g.nats_url);
}

}  // namespace supaplane::cli
