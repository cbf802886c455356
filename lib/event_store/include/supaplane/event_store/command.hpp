#pragma once
// One helper for every write on the log: load → fold → decide → append with
// the expected subject sequence (OCC) → on a lost race, load again and decide
// again, a bounded number of times with a backoff.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "supaplane/core/result.hpp"
#include "supaplane/event_store/event_log.hpp"
#include "supaplane/event_store/event_store.hpp"

namespace supaplane::event_store {

/// Waits between attempts; injected so that tests never sleep.
class Sleeper {
 public:
  virtual ~Sleeper() = default;
  /// Waits `ms`; false when the caller should give up instead (stopping).
  virtual bool sleep_ms(std::int64_t ms) = 0;
};

/// Sleeps on the calling thread; with `stop`, wakes early (false) once it is set.
class ThreadSleeper final : public Sleeper {
 public:
  explicit ThreadSleeper(const std::atomic<bool>* stop = nullptr) : stop_(stop) {}
  bool sleep_ms(std::int64_t ms) override;
  static ThreadSleeper& instance();

 private:
  const std::atomic<bool>* stop_;
};

/// How hard a command tries.
struct RetryPolicy {
  /// Attempts in all (the first one included); at least 1.
  int max_attempts{16};
  /// Backoff after the n-th lost race: min(base · 2^(n-1), max), none when 0.
  int backoff_base_ms{0};
  int backoff_max_ms{0};
  /// The `unavailable` message once the attempts are used up by lost races;
  /// empty: the last `conflict` error itself is returned.
  std::string exhausted{"the aggregate keeps changing; retry"};
};

/// The backoff before attempt `attempt + 1` after a lost race (`attempt` ≥ 1).
std::int64_t command_backoff_ms(const RetryPolicy& p, int attempt);

/// What one attempt decided.
template <typename T>
struct Decision {
  enum class Kind { done, append, reload } kind{Kind::done};
  T value{};            ///< done: the answer
  OutgoingEvent out{};  ///< append: the event, with the expected sequence decided on

  /// Nothing (more) to write: answer `v`.
  static Decision finish(T v) { return Decision{Kind::done, std::move(v), {}}; }
  /// Append `e`; its `expected` must be the sequence the decision was made on.
  static Decision write(OutgoingEvent e) { return Decision{Kind::append, T{}, std::move(e)}; }
  /// The state may be stale (a hint): load it from the log and decide again.
  static Decision reload() { return Decision{Kind::reload, T{}, {}}; }
};

/// The steps of one command on one aggregate. `attempt` counts from 0.
template <typename State, typename T>
struct Command {
  /// The aggregate's state; attempt 0 may answer from a hint (a cache),
  /// later attempts must read the log.
  std::function<Result<State>(int attempt)> load;
  /// Decides on `state`. A `conflict` error (an append made inside the
  /// decision lost its race) counts as a lost race: load and decide again.
  std::function<Result<Decision<T>>(State& state, int attempt)> decide;
  /// The answer once the decision's event is on the log. For a duplicate
  /// (`appended.duplicate`: the same message id was appended before, the
  /// state is stale) it may read the log.
  std::function<Result<T>(State& state, const AppendResult& appended)> appended;
  /// Called once per lost race (metrics); may be empty.
  std::function<void()> on_conflict;
};

/// Runs `cmd` on the calling thread: appends with `store.append`, sleeps
/// through `sleeper` between lost races. Thread-safe as the callbacks are.
template <typename State, typename T>
Result<T> run_command(EventLog& store, Sleeper& sleeper, const RetryPolicy& policy,
                      const Command<State, T>& cmd) {
  const int attempts = std::max(1, policy.max_attempts);
  Error last = make_error(errc::conflict, "not attempted");
  for (int attempt = 0; attempt < attempts; ++attempt) {
    auto state = cmd.load(attempt);
    if (!state) return state.error();
    auto decision = cmd.decide(*state, attempt);
    Result<AppendResult> appended = make_error(errc::conflict, "not appended");
    if (decision) {
      switch (decision->kind) {
        case Decision<T>::Kind::done:
          return std::move(decision->value);
        case Decision<T>::Kind::reload:
          continue;
        case Decision<T>::Kind::append:
          appended = store.append(decision->out);
          if (appended) return cmd.appended(*state, *appended);
          break;
      }
    }
    const Error& e = decision ? appended.error() : decision.error();
    if (e.code != errc::conflict) return e;
    last = e;
    if (cmd.on_conflict) cmd.on_conflict();
    if (attempt + 1 < attempts && !sleeper.sleep_ms(command_backoff_ms(policy, attempt + 1)))
      return make_error(errc::unavailable, "stopping");
  }
  if (policy.exhausted.empty()) return last;
  return make_error(errc::unavailable, policy.exhausted);
}

/// Runs work off the caller's thread (the api's slow path: stream reads).
using Executor = std::function<void(std::function<void()>)>;

/// The same loop without blocking on the append (`store.append_async`): the
/// first attempt decides on `first` (a hint) when given, inline on the
/// caller's thread, else loads on `executor`; every later load runs on
/// `executor` (never on the ack thread); `appended` of a fresh append runs on
/// the ack thread (keep it short), of a duplicate on `executor`. No backoff
/// between attempts (nothing may sleep there). `done` is called exactly once.
template <typename State, typename T>
void run_command_async(EventLog& store, Executor executor, const RetryPolicy& policy,
                       Command<State, T> cmd, std::function<void(Result<T>)> done,
                       std::optional<State> first = std::nullopt) {
  struct Run : std::enable_shared_from_this<Run> {
    EventLog& store;
    Executor executor;
    RetryPolicy policy;
    Command<State, T> cmd;
    std::function<void(Result<T>)> done;

    Run(EventLog& s, Executor ex, RetryPolicy p, Command<State, T> c,
        std::function<void(Result<T>)> d)
        : store(s),
          executor(std::move(ex)),
          policy(std::move(p)),
          cmd(std::move(c)),
          done(std::move(d)) {}

    void load_then_decide(int attempt) {
      auto self = this->shared_from_this();
      executor([self, attempt] {
        auto state = self->cmd.load(attempt);
        if (!state) return self->done(state.error());
        self->decide(std::move(*state), attempt);
      });
    }

    void lost_race(const Error& e, int attempt) {
      if (e.code != errc::conflict) return done(e);
      if (cmd.on_conflict) cmd.on_conflict();
      next(attempt, e);
    }

    void next(int attempt, const Error& last) {
      if (attempt + 1 >= std::max(1, policy.max_attempts)) {
        if (policy.exhausted.empty()) return done(last);
        return done(make_error(errc::unavailable, policy.exhausted));
      }
      load_then_decide(attempt + 1);
    }

    void decide(State state, int attempt) {
      auto decision = cmd.decide(state, attempt);
      if (!decision) return lost_race(decision.error(), attempt);
      switch (decision->kind) {
        case Decision<T>::Kind::done:
          return done(std::move(decision->value));
        case Decision<T>::Kind::reload:
          return next(attempt, make_error(errc::conflict, "state kept changing"));
        case Decision<T>::Kind::append:
          break;
      }
      auto self = this->shared_from_this();
      store.append_async(decision->out, [self, attempt, state = std::move(state)](
                                            Result<AppendResult> appended) mutable {
        if (!appended) return self->lost_race(appended.error(), attempt);
        if (!appended->duplicate) return self->done(self->cmd.appended(state, *appended));
        self->executor([self, state = std::move(state), a = *appended]() mutable {
          self->done(self->cmd.appended(state, a));
        });
      });
    }
  };
  auto run =
      std::make_shared<Run>(store, std::move(executor), policy, std::move(cmd), std::move(done));
  if (first) return run->decide(std::move(*first), 0);
  run->load_then_decide(0);
}

}  // namespace supaplane::event_store
