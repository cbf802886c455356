#include "supaplane/events/history.hpp"

#include <google/protobuf/util/json_util.h>

#include "supaplane/domain/tenant.hpp"
#include "supaplane/events/decode.hpp"

namespace supaplane::events {

namespace {
std::string actor_string(const v1::Actor& a) {
  std::string kind;
  switch (a.kind()) {
    case v1::ACTOR_KIND_ACCOUNT:
      kind = "account";
      break;
    case v1::ACTOR_KIND_ADMIN:
      kind = "admin";
      break;
    case v1::ACTOR_KIND_SYSTEM:
      kind = "system";
      break;
    case v1::ACTOR_KIND_STRIPE:
      kind = "stripe";
      break;
    default:
      kind = "unknown";
  }
  return kind + ":" + a.id();
}

std::string payload_json(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(m, &out, o).ok()) return "{}";
  return out;
}
}  // namespace

HistoryRecord describe(const event_store::StoredMessage& m) {
  HistoryRecord r;
  r.sequence = m.sequence;
  r.time_unix_ms = m.timestamp_ns / 1'000'000;
  r.correlation_id = m.correlation_id;
  const DecodedEvent d = decode(m);
  if (d.kind == DecodedEvent::Kind::malformed) {
    r.type = "undecodable";
    r.actor = "unknown:";
    r.details = "{}";
    return r;
  }
  const auto& env = d.envelope;
  r.time_unix_ms = env.occurred_at_unix_ms();
  r.actor = actor_string(env.actor());
  r.event_id = env.event_id();
  if (r.correlation_id.empty()) r.correlation_id = env.correlation_id();
  if (env.payload_case() == v1::EventEnvelope::kTenant) {
    r.type = domain::event_type(env.tenant());
    const auto& t = env.tenant();
    if (t.kind_case() != v1::TenantEvent::KIND_NOT_SET) {
      const auto* f = t.GetDescriptor()->FindFieldByNumber(static_cast<int>(t.kind_case()));
      r.details = payload_json(t.GetReflection()->GetMessage(t, f));
    } else {
      r.details = "{}";
    }
  } else if (env.payload_case() == v1::EventEnvelope::kAccount) {
    r.type = "account.created";
    r.details = payload_json(env.account());
  } else {
    r.type = m.event_type.empty() ? "unknown" : m.event_type;
    r.details = "{}";
  }
  return r;
}

namespace {
/// One message of a tenant's history folded into its state: the step shared
/// by the per-tenant read and the bulk replay.
void fold_one(v1::TenantState& s, const std::string& ref, const event_store::StoredMessage& m,
              const DecodedEvent& d, std::int64_t t) {
  if (d.kind == DecodedEvent::Kind::tenant) {
    s = domain::fold(std::move(s), d.envelope.tenant(), {ref, m.sequence, t});
  } else if (m.sequence > s.version()) {
    s.set_version(m.sequence);  // undecodable / unknown still count for OCC
  }
}

std::int64_t event_time(const event_store::StoredMessage& m, const DecodedEvent& d) {
  return d.kind == DecodedEvent::Kind::malformed ? m.timestamp_ns / 1'000'000
                                                 : d.envelope.occurred_at_unix_ms();
}
}  // namespace

v1::TenantState fold_history(const std::string& ref,
                             const std::vector<event_store::StoredMessage>& messages,
                             std::optional<std::int64_t> as_of_unix_ms) {
  v1::TenantState s;
  for (const auto& m : messages) {
    const DecodedEvent d = decode(m);
    const std::int64_t t = event_time(m, d);
    if (as_of_unix_ms && t > *as_of_unix_ms) break;
    fold_one(s, ref, m, d, t);
  }
  return s;
}

bool TenantFolder::add(const event_store::StoredMessage& m) {
  constexpr std::string_view prefix = "platform.tenant.";
  if (m.subject.size() <= prefix.size() || m.subject.compare(0, prefix.size(), prefix) != 0)
    return false;
  const DecodedEvent d = decode(m);  // names the tenant only when its ref is valid
  if (d.ref.empty()) return false;
  fold_one(states_[d.ref], d.ref, m, d, event_time(m, d));
  ++folded_;
  return true;
}

}  // namespace supaplane::events
