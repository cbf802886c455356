#pragma once
#include <cstdint>
#include <string>

#include "supaplane/event_store/event_store.hpp"
#include "supaplane/v1/events.pb.h"

namespace supaplane::events {

namespace v1 = ::supaplane::v1;

/// Encodes one tenant event for the stream: the envelope (fresh event id,
/// time, actor, correlation and causation ids) and the message with its
/// subject, headers, msg id and expected sequence. The inverse of `decode`.
event_store::OutgoingEvent make_tenant_event(const std::string& ref, const v1::TenantEvent& ev,
                                             const v1::Actor& actor, const std::string& msg_id,
                                             event_store::Expected expected,
                                             const std::string& correlation_id,
                                             const std::string& causation_id,
                                             std::int64_t now_unix_ms,
                                             v1::EventEnvelope* envelope_out = nullptr);

}  // namespace supaplane::events
