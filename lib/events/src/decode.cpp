#include "supaplane/events/decode.hpp"

#include <string_view>

#include "supaplane/core/ids.hpp"

namespace supaplane::events {

DecodedEvent decode(const event_store::StoredMessage& m) {
  DecodedEvent d;
  d.sequence = m.sequence;
  constexpr std::string_view prefix = "platform.tenant.";
  const bool tenant_subject = m.subject.compare(0, prefix.size(), prefix) == 0;
  if (tenant_subject) {
    const std::string ref = m.subject.substr(prefix.size());
    if (TenantRef::valid(ref)) d.ref = ref;
  }
  if (!d.envelope.ParseFromString(m.data)) {
    d.kind = DecodedEvent::Kind::malformed;
    return d;
  }
  const auto payload = d.envelope.payload_case();
  if (tenant_subject) {
    if (d.ref.empty() ||
        (payload != v1::EventEnvelope::kTenant && payload != v1::EventEnvelope::PAYLOAD_NOT_SET)) {
      d.kind = DecodedEvent::Kind::malformed;  // wrong subject or wrong payload for it
    } else if (payload == v1::EventEnvelope::PAYLOAD_NOT_SET ||
               d.envelope.tenant().kind_case() == v1::TenantEvent::KIND_NOT_SET) {
      d.kind = DecodedEvent::Kind::unknown;
    } else {
      d.kind = DecodedEvent::Kind::tenant;
    }
    return d;
  }
  d.kind = payload == v1::EventEnvelope::PAYLOAD_NOT_SET ? DecodedEvent::Kind::unknown
                                                         : DecodedEvent::Kind::other;
  return d;
}

}  // namespace supaplane::events
