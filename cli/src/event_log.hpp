#pragma once
#include <memory>
#include <string>

#include "options.hpp"
#include "supaplane/core/result.hpp"
#include "supaplane/event_store/event_store.hpp"

namespace supaplane::cli {

/// Connects to the PLATFORM stream at --nats-url; `unavailable` at once when
/// the server cannot be reached (a CLI should not wait for it to come up).
Result<std::unique_ptr<event_store::EventStore>> open_event_log(
    const GlobalOptions& g, event_store::StreamSettings stream = {});

/// "NATS at <url>" (password / token redacted), for error messages.
std::string nats_where(const GlobalOptions& g);

}  // namespace supaplane::cli
