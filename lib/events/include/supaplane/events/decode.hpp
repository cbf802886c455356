#pragma once
#include <cstdint>
#include <string>

#include "supaplane/event_store/event_store.hpp"
#include "supaplane/v1/events.pb.h"

namespace supaplane::events {

namespace v1 = ::supaplane::v1;

/// One decoded message of the stream, as projectors and folds see it.
struct DecodedEvent {
  enum class Kind { tenant, other, unknown, malformed } kind{Kind::other};
  std::uint64_t sequence{0};
  std::string ref;  ///< tenant events: from the subject
  v1::EventEnvelope envelope{};
};
/// Decodes a stored message. Never throws. `ref` is set for any message on a
/// well-formed tenant subject, even when its body cannot be decoded.
DecodedEvent decode(const event_store::StoredMessage& m);

}  // namespace supaplane::events
