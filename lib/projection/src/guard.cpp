#include "supaplane/projection/guard.hpp"

#include "supaplane/core/ids.hpp"
#include "supaplane/logging/logging.hpp"

namespace supaplane::projection {

namespace {
std::shared_ptr<spdlog::logger> log() {
  static auto l = logging::get("projection-guard");
  return l;
}

// KEYS[1] lock, ARGV[1] token: deletes the lock only if we still hold it.
constexpr const char* kUnlock = R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
)lua";
}  // namespace

const char* to_string(RebuildReason r) noexcept {
  switch (r) {
    case RebuildReason::pointer_missing:
      return "pointer_missing";
    case RebuildReason::checkpoint_missing:
      return "checkpoint_missing";
    case RebuildReason::checkpoint_behind:
      return "checkpoint_behind";
    case RebuildReason::stream_behind:
      return "stream_behind";
    case RebuildReason::undecodable:
      return "undecodable";
    case RebuildReason::operator_request:
      return "operator";
  }
  return "unknown";
}

ProjectionGuard::ProjectionGuard(TenantProjection& projection, RedisAddress redis,
                                 event_store::EventStore& store, SequenceWaiter& waiter,
                                 GuardOptions options)
    : projection_(projection),
      store_(store),
      waiter_(waiter),
      options_(std::move(options)),
      redis_(std::move(redis), projection.scripts().all()),
      token_(ids::random_hex_id()) {}

ProjectionGuard::~ProjectionGuard() { stop(); }

void ProjectionGuard::start() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] { run(); });
}

void ProjectionGuard::stop() {
  {
    std::lock_guard lk(stop_mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ProjectionGuard::run() {
  std::unique_lock lk(stop_mu_);
  while (!stop_) {
    lk.unlock();
    (void)check();  // problem() and the log say why when it fails
    lk.lock();
    stop_cv_.wait_for(lk, options_.interval, [&] { return stop_; });
  }
}

std::string ProjectionGuard::problem() const {
  std::lock_guard lk(problem_mu_);
  return problem_;
}

void ProjectionGuard::set_problem(std::string p) {
  std::lock_guard lk(problem_mu_);
  problem_ = std::move(p);
}

Result<std::optional<RebuildReason>> ProjectionGuard::inspect() {
  using Found = std::optional<RebuildReason>;
  if (auto st = redis_.ensure(); !st) return st.error();
  auto gen = projection_.active_generation(redis_);
  if (!gen && gen.error().code != errc::not_found) return gen.error();
  auto last = store_.last_sequence();
  if (!last) return last.error();
  if (!gen) {
    if (*last == 0) {  // nothing to rebuild from: start an empty projection
      auto init = projection_.init(redis_);
      if (!init) return init.error();
      return Found{};
    }
    return Found{RebuildReason::pointer_missing};
  }
  auto cp = projection_.stored_checkpoint(redis_, *gen);
  if (!cp) return cp.error();
  if (!cp->has_value())
    return waiter_.current() > 0 ? Found{RebuildReason::checkpoint_missing} : Found{};
  const std::uint64_t checkpoint = **cp;
  if (checkpoint > *last) return Found{RebuildReason::stream_behind};
  if (waiter_.current() > *last) {
    // This process applied events of a stream that no longer exists (another
    // process already rebuilt from the new one): forget them.
    log()->warn(
        "applied sequence {} is past the end of the stream ({}); following the "
        "projection's checkpoint {}",
        waiter_.current(), *last, checkpoint);
    waiter_.reset(checkpoint);
  }
  if (checkpoint < waiter_.current()) return Found{RebuildReason::checkpoint_behind};
  waiter_.advance(checkpoint);
  return Found{};
}

Status ProjectionGuard::check() {
  std::lock_guard lk(mu_);
  auto why = inspect();
  if (!why) {
    set_problem("projection check failed: " + why.error().message);
    return why.error();
  }
  if (!why->has_value()) {
    set_problem("");
    return Status::Ok();
  }
  auto r = rebuild_locked(**why);
  if (!r) return r.error();
  return Status::Ok();
}

Result<RebuildResult> ProjectionGuard::rebuild(RebuildReason why) {
  std::lock_guard lk(mu_);
  return rebuild_locked(why);
}

Result<RebuildResult> ProjectionGuard::rebuild_locked(RebuildReason why) {
  const std::string lock_key = projection_.base() + "rebuild-lock";
  set_problem(std::string("projection is being rebuilt (") + to_string(why) + ")");
  if (auto st = redis_.ensure(); !st) return st.error();
  auto got = redis_.command(
      {"SET", lock_key, token_, "NX", "PX", std::to_string(options_.lock_ttl.count())});
  if (!got) return got.error();
  if ((*got)->type == REDIS_REPLY_NIL) {
    // Another process is rebuilding the same projection; look again later.
    return make_error(errc::unavailable, "another process is rebuilding the projection; retry");
  }
  rebuilding_ = true;
  auto unlock = [&] {
    (void)redis_.command({"EVAL", kUnlock, "1", lock_key, token_});
    rebuilding_ = false;
  };
  if (why != RebuildReason::operator_request && why != RebuildReason::undecodable) {
    // Another process may have rebuilt it between our look and the lock.
    auto again = inspect();
    if (!again || !again->has_value()) {
      unlock();
      if (!again) return again.error();
      set_problem("");
      return RebuildResult{};
    }
    why = **again;
  }
  log()->warn("rebuilding the projection under {} from the event log: {}", projection_.base(),
              to_string(why));
  std::string old;
  if (why == RebuildReason::stream_behind) {
    // The new log ends below the live checkpoint, so the switch (which never
    // moves the checkpoint back) would refuse: take the live one down first.
    // Readers answer UNAVAILABLE until the rebuilt generation is live.
    if (auto g = projection_.active_generation(redis_)) old = *g;
    if (auto st = projection_.remove_pointer(redis_); !st) {
      unlock();
      return st.error();
    }
  }
  const std::string gen = new_generation_name();
  auto r = rebuild_tenants(store_, redis_, projection_, gen, /*switch_live=*/true,
                           /*catch_up_timeout_ms=*/30'000, options_.filter);
  unlock();
  if (!r) {
    log()->error("projection rebuild ({}) failed: {}", to_string(why), r.error().message);
    set_problem("projection rebuild failed: " + r.error().message);
    return r.error();
  }
  if (!old.empty() && old != gen) (void)projection_.drop_generation(redis_, old);
  if (why == RebuildReason::stream_behind)
    waiter_.reset(r->checkpoint);
  else
    waiter_.advance(r->checkpoint);
  rebuilds_[static_cast<std::size_t>(why)]++;
  log()->info("projection rebuilt into {} ({}): {} events up to {} in {:.3f}s", gen, to_string(why),
              r->events, r->checkpoint, r->seconds);
  set_problem("");
  if (on_rebuilt_) on_rebuilt_(why, *r);
  return r;
}

}  // namespace supaplane::projection
