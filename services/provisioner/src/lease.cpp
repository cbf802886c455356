#include "lease.hpp"

#include <algorithm>
#include <chrono>

#include "supaplane/logging/logging.hpp"

namespace supaplane::provisioner {

namespace {
std::shared_ptr<spdlog::logger> log() {
  static auto l = logging::get("lease");
  return l;
}
}  // namespace

std::int64_t SteadyMonotonicClock::now_ms() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

const SteadyMonotonicClock& SteadyMonotonicClock::instance() {
  static const SteadyMonotonicClock c;
  return c;
}

Result<LeaseRecord> KvLeaseStore::read() {
  auto e = bucket_.get(key_);
  if (!e) return e.error();
  LeaseRecord r;
  r.revision = e->revision;
  if (!e->deleted) r.holder = e->value;
  return r;
}

Result<std::uint64_t> KvLeaseStore::write(const std::string& holder,
                                          std::uint64_t expected_revision) {
  return bucket_.put_if(key_, holder, expected_revision, timeout_ms_);
}

Lease::Lease(LeaseStore& store, const MonotonicClock& clock, LeaseOptions opts,
             LeaseCounters* counters)
    : store_(store),
      clock_(clock),
      opts_(std::move(opts)),
      counters_(counters ? *counters : own_counters_) {}

bool Lease::leading() const {
  const std::int64_t until = valid_until_ms_.load();
  return until != 0 && clock_.now_ms() < until;
}

std::string Lease::seen_holder() const {
  std::lock_guard lk(mu_);
  return seen_holder_;
}

std::string Lease::last_error() const {
  std::lock_guard lk(mu_);
  return last_error_;
}

void Lease::step_down(const char* why) {
  holding_ = false;
  valid_until_ms_ = 0;
  counters_.lost++;
  log()->warn("replica {} is no longer the leader: {}", opts_.holder, why);
}

void Lease::tick() {
  const std::int64_t ttl = opts_.ttl_ms;
  std::int64_t now = clock_.now_ms();
  if (holding_ && now >= valid_until_ms_.load())
    step_down("the lease was not renewed in time (NATS unreachable or slow)");
  if (now < next_due_ms_) return;
  if (holding_) {
    // Counted from before the request: the server stamps the write later.
    const std::int64_t t0 = now;
    auto w = store_.write(opts_.holder, revision_);
    now = clock_.now_ms();
    if (w) {
      revision_ = *w;
      valid_until_ms_ = t0 + ttl / 2;
      next_due_ms_ = t0 + ttl / 3;
      std::lock_guard lk(mu_);
      last_error_.clear();
      return;
    }
    counters_.renew_failures++;
    {
      std::lock_guard lk(mu_);
      last_error_ = w.error().message;
    }
    if (w.error().code == errc::conflict) {
      step_down("another replica wrote the lease key");
      next_due_ms_ = now;
      return;
    }
    log()->warn("replica {}: lease renewal failed: {}", opts_.holder, w.error().message);
    next_due_ms_ = now + std::max<std::int64_t>(10, ttl / 10);
    if (now >= valid_until_ms_.load())
      step_down("the lease was not renewed in time (NATS unreachable or slow)");
    return;
  }
  next_due_ms_ = now + std::max<std::int64_t>(10, ttl / 5);
  const std::int64_t t0 = now;
  auto r = store_.read();
  if (!r) {
    std::lock_guard lk(mu_);
    last_error_ = r.error().message;
    return;
  }
  {
    std::lock_guard lk(mu_);
    seen_holder_ = r->holder;
    last_error_.clear();
  }
  // Free, or still ours at the revision we last wrote (a renewal that came
  // too late: nobody else wrote in between, so taking it back is safe).
  const bool ours = revision_ != 0 && r->holder == opts_.holder && r->revision == revision_;
  if (!r->holder.empty() && !ours) {
    known_ = true;
    return;
  }
  auto w = store_.write(opts_.holder, r->revision);
  known_ = true;  // set once the outcome of this look is settled
  if (!w) {
    if (w.error().code != errc::conflict) {  // a conflict: another replica was quicker
      std::lock_guard lk(mu_);
      last_error_ = w.error().message;
    }
    return;
  }
  holding_ = true;
  revision_ = *w;
  valid_until_ms_ = t0 + ttl / 2;
  next_due_ms_ = t0 + ttl / 3;
  counters_.acquired++;
  {
    std::lock_guard lk(mu_);
    seen_holder_ = opts_.holder;
  }
  log()->info("replica {} is the leader (lease revision {})", opts_.holder, revision_);
}

void Lease::release() {
  if (!holding_) return;
  holding_ = false;
  valid_until_ms_ = 0;
  auto w = store_.write("", revision_);
  if (!w)
    log()->warn("replica {}: lease not released ({}); it expires by itself", opts_.holder,
                w.error().message);
  else
    log()->info("replica {} released the lease", opts_.holder);
  revision_ = 0;
}

}  // namespace supaplane::provisioner
