#include "supaplane/events/tenant_events.hpp"

#include "supaplane/core/ids.hpp"
#include "supaplane/domain/tenant.hpp"

namespace supaplane::events {

event_store::OutgoingEvent make_tenant_event(
    const std::string& ref, const v1::TenantEvent& ev, const v1::Actor& actor,
    const std::string& msg_id, event_store::Expected expected, const std::string& correlation_id,
    const std::string& causation_id, std::int64_t now_unix_ms, v1::EventEnvelope* envelope_out) {
  v1::EventEnvelope env;
  env.set_event_id(ids::random_hex_id());
  env.set_aggregate_id(ref);
  env.set_occurred_at_unix_ms(now_unix_ms);
  *env.mutable_actor() = actor;
  env.set_correlation_id(correlation_id);
  env.set_causation_id(causation_id);
  *env.mutable_tenant() = ev;
  event_store::OutgoingEvent out;
  out.subject = "platform.tenant." + ref;
  out.msg_id = msg_id;
  out.expected = expected;
  out.event_type = domain::event_type(ev);
  out.schema = "supaplane.v1.TenantEvent";
  out.correlation_id = correlation_id;
  out.body = env.SerializeAsString();
  if (envelope_out) *envelope_out = std::move(env);
  return out;
}

}  // namespace supaplane::events
