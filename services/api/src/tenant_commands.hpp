#pragma once
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

#include "supaplane/auth/token.hpp"
#include "supaplane/core/result.hpp"
#include "supaplane/core/time.hpp"
#include "supaplane/core/work_queue.hpp"
#include "supaplane/domain/tenant.hpp"
#include "supaplane/event_store/command.hpp"
#include "supaplane/event_store/event_store.hpp"
#include "supaplane/projection/tenant_projection.hpp"

namespace supaplane::api {

namespace v1 = ::supaplane::v1;

struct CommandContext {
  auth::Principal principal;
  std::string request_id;  ///< client idempotency key ("" = none)
  std::string correlation_id;
};

struct Mutation {
  v1::TenantState state;
  std::uint64_t sequence{0};  ///< the appended event (or the one that already holds)
};

/// Latest known state per tenant, fed by our own appends and by the
/// projector. Only a hint: every append is checked by OCC. Thread-safe.
class StateCache {
 public:
  explicit StateCache(std::size_t max_entries = 200'000) : max_(max_entries) {}
  bool get(const std::string& ref, v1::TenantState* out);
  void put_if_newer(const v1::TenantState& s);

 private:
  std::size_t max_;
  std::mutex mu_;
  std::unordered_map<std::string, v1::TenantState> map_;
};

using MutationCallback = std::function<void(Result<Mutation>)>;

/// The write side of tenants: decide against the latest state and append
/// with the expected subject sequence; on conflict re-read from the stream
/// and decide again. The *_async forms never block on the append (it is
/// pipelined on the NATS connection); `done` runs on the ack thread or on
/// the internal work queue. Thread-safe.
class TenantCommands {
 public:
  TenantCommands(event_store::EventLog& store, projection::TenantProjection& projection,
                 projection::RedisPool& redis, StateCache& cache, const Clock& clock);

  void create_async(const std::string& name, v1::Plan plan, const CommandContext& ctx,
                    MutationCallback done);
  /// Any command but create on `ref`. Customers only reach their own tenants
  /// (another's answers not_found).
  void execute_async(const std::string& ref, const domain::TenantCommand& cmd,
                     const CommandContext& ctx, MutationCallback done);
  Result<Mutation> create(const std::string& name, v1::Plan plan, const CommandContext& ctx);
  Result<Mutation> execute(const std::string& ref, const domain::TenantCommand& cmd,
                           const CommandContext& ctx);
  /// The authoritative state, folded from the tenant's subject.
  Result<v1::TenantState> load_from_stream(const std::string& ref);

  static constexpr int kMaxAttempts = 16;

 private:
  static event_store::RetryPolicy policy();
  event_store::Executor slow_path();
  /// The state hint when the cache has none: the Redis projection, else the stream.
  Result<v1::TenantState> load_uncached(const std::string& ref);
  v1::Actor actor(const CommandContext& ctx) const;

  event_store::EventLog& store_;
  projection::TenantProjection& projection_;
  projection::RedisPool& redis_;
  StateCache& cache_;
  const Clock& clock_;
  WorkQueue slow_path_{4};  // stream re-reads after conflicts / duplicates
};

/// Nats-Msg-Id of a command: scoped by account, tenant and command, so one
/// request id reused for another tenant or command is not taken for a retry.
std::string command_msg_id(const CommandContext& ctx, const std::string& ref,
                           domain::CommandKind kind);

}  // namespace supaplane::api
