#include "event_log.hpp"

namespace supaplane::cli {

Result<std::unique_ptr<event_store::EventStore>> open_event_log(const GlobalOptions& g) {
  event_store::ConnectOptions co;
  co.url = g.nats_url;
  co.name = "supaplanectl";
  co.request_timeout_ms = g.timeout_seconds * 1000;
  co.fail_fast = true;
  return event_store::EventStore::connect(co);
}

std::string nats_where(const GlobalOptions& g) { return "NATS at " + g.nats_url; }

}  // namespace supaplane::cli
