#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "supaplane/event_store/event_store.hpp"
#include "supaplane/v1/types.pb.h"

namespace supaplane::events {

/// One line of a tenant's audit trail.
struct HistoryRecord {
  std::uint64_t sequence{0};
  std::int64_t time_unix_ms{0};  ///< occurred_at of the envelope (stream time if undecodable)
  std::string actor;             ///< "account:<id>", "admin:<id>", "system:<name>", "stripe:<id>"
  std::string type;              ///< "tenant.pause_requested"; "undecodable" / "tenant.unknown"
  std::string details;           ///< the payload as JSON
  std::string correlation_id;
  std::string event_id;
};

HistoryRecord describe(const event_store::StoredMessage& m);

/// Folds a tenant's messages in order; with `as_of_unix_ms`, only events that
/// occurred at or before it. `version` ends at the last message's sequence.
v1::TenantState fold_history(const std::string& ref,
                             const std::vector<event_store::StoredMessage>& messages,
                             std::optional<std::int64_t> as_of_unix_ms = std::nullopt);

/// Folds every tenant from one replay of `platform.tenant.>` (messages of all
/// tenants interleaved, in stream order): each message goes to the state of
/// the tenant its subject names, by the same step as `fold_history`, so a
/// tenant's state here equals `fold_history` of its subject read alone.
/// Not thread-safe.
class TenantFolder {
 public:
  /// Folds `m` into its tenant's state; false (and nothing changes) when the
  /// subject names no valid tenant ref.
  bool add(const event_store::StoredMessage& m);
  const std::unordered_map<std::string, v1::TenantState>& states() const { return states_; }
  std::unordered_map<std::string, v1::TenantState> take() { return std::move(states_); }
  std::uint64_t folded() const { return folded_; }  ///< messages folded so far

 private:
  std::unordered_map<std::string, v1::TenantState> states_;
  std::uint64_t folded_{0};
};

}  // namespace supaplane::events
