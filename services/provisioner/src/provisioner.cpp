#include "provisioner.hpp"

#include <chrono>
#include <condition_variable>
#include <functional>
#include <set>
#include <thread>

#include "supaplane/core/ids.hpp"
#include "supaplane/domain/tenant.hpp"
#include "supaplane/event_store/consumer.hpp"
#include "supaplane/logging/logging.hpp"
#include "supaplane/projection/history.hpp"
#include "supaplane/projection/tenant_events.hpp"

namespace supaplane::provisioner {

namespace {
std::shared_ptr<spdlog::logger> log() {
  static auto l = logging::get("provisioner");
  return l;
}
constexpr std::string_view kPrefix = "platform.tenant.";
constexpr int kMaxRounds = 16;

v1::Actor system_actor() {
  v1::Actor a;
  a.set_kind(v1::ACTOR_KIND_SYSTEM);
  a.set_id("provisioner");
  return a;
}
}  // namespace

Provisioner::Provisioner(event_store::EventStore& store, driver::Driver& driver, KeyStore& keys,
                         const Clock& clock, ProvisionerOptions opts)
    : store_(store),
      driver_(driver),
      keys_(keys),
      clock_(clock),
      opts_(opts),
      pool_(static_cast<std::size_t>(std::max(1, opts.workers))) {}

std::mutex& Provisioner::lock_for(const std::string& ref) {
  return locks_[std::hash<std::string>{}(ref) % locks_.size()];
}

bool Provisioner::sleep_ms(std::int64_t ms) {
  for (std::int64_t w = 0; w < ms; w += 10) {
    if (stop_) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return !stop_;
}

Status Provisioner::act(domain::StackAction action, const driver::StackRequest& req) {
  const std::string& ref = req.ref;
  switch (action) {
    case domain::StackAction::provision:
      return driver_.provision(req);
    case domain::StackAction::pause:
      return driver_.pause(req);
    case domain::StackAction::resume:
      return driver_.resume(req);
    case domain::StackAction::remove:
      return driver_.remove(ref);
    case domain::StackAction::none:
      return Status::Ok();
  }
  return Status::Ok();
}

Status Provisioner::converge(const std::string& ref) {
  std::lock_guard lk(lock_for(ref));
  for (int round = 0; round < kMaxRounds && !stop_; ++round) {
    auto msgs = store_.read_subject(std::string(kPrefix) + ref);
    if (!msgs) return msgs.error();
    const v1::TenantState state = projection::fold_history(ref, *msgs);
    const auto action = domain::plan_convergence(state);
    if (action == domain::StackAction::none) return Status::Ok();
    const std::int64_t gen = state.generation();
    std::uint64_t version = state.version();  // the expected sequence of our next append
    if (domain::announce_start(state, action)) {
      v1::TenantEvent started;
      started.mutable_provisioning_started()->set_observed_generation(gen);
      auto out = projection::make_tenant_event(
          ref, started, system_actor(),
          "provisioner:" + ref + ":" + std::to_string(version) + ":started",
          event_store::Expected::at(version), ids::random_hex_id(), "", clock_.now_unix_ms());
      auto appended = store_.append(out);
      if (!appended) {
        if (appended.error().code == errc::conflict) {
          counters_.conflicts++;
          continue;  // a newer desire: decide again
        }
        return appended.error();
      }
      version = appended->sequence.value();
    }
    driver::StackRequest req{ref, "", opts_.connection_limit, domain::keys_rotation_pending(state)};
    domain::Applied applied;
    if (action != domain::StackAction::remove) {
      auto keys = keys_.ensure(ref, state.keys_generation());
      if (!keys) return keys.error();
      req.db_password = keys->keys.db_password;
      applied.keys_generation = keys->keys_generation;
      applied.gateway_url = driver_.gateway_url(ref);
      const auto db = driver_.connection_info(ref);
      applied.db_name = db.database;
      applied.db_user = db.user;
      applied.db_schema = db.schema;
    }
    Status done = make_error(errc::unavailable, "not attempted");
    int attempt = 0;
    while (attempt < opts_.max_attempts && !stop_) {
      ++attempt;
      done = act(action, req);
      if (done) break;
      counters_.retries++;
      log()->warn("{} ref={} gen={} attempt {} failed: {}", domain::to_string(action), ref, gen,
                  attempt, done.error().message);
      if (attempt < opts_.max_attempts &&
          !sleep_ms(event_store::ConsumerRunner::backoff_ms(
              static_cast<std::uint64_t>(attempt), opts_.backoff_base_ms, opts_.backoff_max_ms)))
        break;
    }
    if (stop_ && !done) return make_error(errc::unavailable, "stopping");
    if (!done && done.error().code == errc::unavailable) {
      // The cluster is away, not this tenant broken: no FAILED, the message
      // comes back with the consumer's backoff (and resync catches the rest).
      counters_.unavailable++;
      return done.error();
    }
    if (done && action == domain::StackAction::remove) {
      if (auto st = keys_.remove(ref); !st)
        log()->warn("remove ref={}: keys not deleted: {}", ref, st.error().message);
    }
    const v1::TenantEvent ev = done ? domain::outcome_event(action, gen, applied)
                                    : domain::failure_event(gen, done.error().message, attempt,
                                                            /*final=*/true);
    // One outcome per decision (the state version it was made on): a retry
    // after a crash between append and ack is answered by the dedupe window
    // and by OCC; a later decision on the same generation (after drift) is not.
    const std::string msg_id = "provisioner:" + ref + ":" + std::to_string(version) + ":" +
                               (done ? domain::to_string(action) : "failed");
    auto out = projection::make_tenant_event(ref, ev, system_actor(), msg_id,
                                             event_store::Expected::at(version),
                                             ids::random_hex_id(), "", clock_.now_unix_ms());
    auto appended = store_.append(out);
    if (!appended) {
      if (appended.error().code == errc::conflict) {
        counters_.conflicts++;  // a newer desire arrived: converge to it
        continue;
      }
      return appended.error();
    }
    if (done) {
      counters_.actions++;
      log()->info("{} ref={} gen={} seq={}", domain::to_string(action), ref, gen,
                  appended->sequence.value());
      // The outcome was appended on the version we decided on, so it settles
      // that state (plan_convergence is then none); a command that came
      // after it arrives as its own message.
      return Status::Ok();
    } else {
      counters_.failures++;
      log()->error("ref={} gen={} FAILED after {} attempts: {}", ref, gen, attempt,
                   done.error().message);
      return Status::Ok();  // recorded; a later command converges it again
    }
  }
  if (stop_) return make_error(errc::unavailable, "stopping");
  return make_error(errc::unavailable, "tenant " + ref + " keeps changing; will retry");
}

namespace {
/// Events this provisioner appends after acting: they settle a tenant and
/// never ask for work, so hearing them back needs no history read.
/// (drift_detected does ask for work, and is not in the list.)
bool own_outcome(const std::string& event_type) {
  return event_type == "tenant.provisioning_started" || event_type.rfind("tenant.stack_", 0) == 0 ||
         event_type == "tenant.converge_failed";
}
}  // namespace

void Provisioner::handle(std::vector<event_store::InboundMessage>& batch) {
  std::set<std::string> refs;
  for (const auto& in : batch) {
    const auto& subj = in.message.subject;
    if (subj.compare(0, kPrefix.size(), kPrefix) == 0 && !own_outcome(in.message.event_type)) {
      const std::string ref = subj.substr(kPrefix.size());
      if (TenantRef::valid(ref)) refs.insert(ref);
    }
  }
  std::mutex mu;
  std::condition_variable cv;
  std::size_t remaining = refs.size();
  std::set<std::string> failed;
  for (const auto& ref : refs) {
    pool_.post([&, ref] {
      auto st = converge(ref);
      std::lock_guard lk(mu);
      if (!st) {
        failed.insert(ref);
        log()->warn("converge ref={} not finished: {}", ref, st.error().message);
      }
      if (--remaining == 0) cv.notify_one();
    });
  }
  {
    std::unique_lock lk(mu);
    cv.wait(lk, [&] { return remaining == 0; });
  }
  for (auto& in : batch) {
    const auto& subj = in.message.subject;
    const bool mine = subj.size() > kPrefix.size() && failed.count(subj.substr(kPrefix.size()));
    in.disposition =
        mine ? (stop_ ? event_store::Disposition::release : event_store::Disposition::retry)
             : event_store::Disposition::ack;
  }
}

Result<int> Provisioner::resync() {
  auto subjects = store_.subjects(std::string(kPrefix) + ">");
  if (!subjects) return subjects.error();
  int drifted = 0;
  for (const auto& subj : *subjects) {
    if (stop_) break;
    const std::string ref = subj.substr(kPrefix.size());
    if (!TenantRef::valid(ref)) continue;
    std::unique_lock lk(lock_for(ref));
    auto msgs = store_.read_subject(subj);
    if (!msgs) return msgs.error();
    const v1::TenantState s = projection::fold_history(ref, *msgs);
    if (domain::plan_convergence(s) != domain::StackAction::none) {
      // Level-triggered catch-all: a tenant whose messages were given up on
      // (e.g. NATS down for long) still converges here.
      lk.unlock();
      if (auto st = converge(ref); !st)
        log()->warn("resync converge ref={}: {}", ref, st.error().message);
      continue;
    }
    const bool want_running = s.observed_state() == v1::OBSERVED_STATE_RUNNING;
    const bool want_paused = s.observed_state() == v1::OBSERVED_STATE_PAUSED;
    if (!want_running && !want_paused) continue;
    auto seen = driver_.observe(ref);
    if (!seen) return seen.error();
    std::string details;
    if (!seen->exists)
      details = "stack missing";
    else if (want_running && !seen->accepting_connections)
      details = "stack refuses connections while ACTIVE";
    else if (want_paused && seen->accepting_connections)
      details = "stack accepts connections while PAUSED";
    if (details.empty()) continue;
    v1::TenantEvent ev;
    ev.mutable_drift_detected()->set_observed_generation(s.observed_generation());
    ev.mutable_drift_detected()->set_details(details);
    auto out = projection::make_tenant_event(ref, ev, system_actor(), "",
                                             event_store::Expected::at(s.version()),
                                             ids::random_hex_id(), "", clock_.now_unix_ms());
    auto appended = store_.append(out);
    if (!appended) {
      if (appended.error().code == errc::conflict) continue;  // changed meanwhile
      return appended.error();
    }
    counters_.drift++;
    ++drifted;
    log()->warn("drift ref={}: {}", ref, details);
    lk.unlock();
    if (auto st = converge(ref); !st)
      log()->warn("repairing drift ref={}: {}", ref, st.error().message);
  }
  return drifted;
}

}  // namespace supaplane::provisioner
