#include "provisioner.hpp"

#include <chrono>
#include <condition_variable>
#include <functional>
#include <set>
#include <thread>

#include "supaplane/core/ids.hpp"
#include "supaplane/domain/tenant.hpp"
#include "supaplane/event_store/command.hpp"
#include "supaplane/event_store/consumer.hpp"
#include "supaplane/events/history.hpp"
#include "supaplane/events/tenant_events.hpp"
#include "supaplane/logging/logging.hpp"

namespace supaplane::provisioner {

namespace {
std::shared_ptr<spdlog::logger> log() {
  static auto l = logging::get("provisioner");
  return l;
}
constexpr std::string_view kPrefix = "platform.tenant.";

/// Whether a driver's per-service report says what the state already holds.
bool same_health(const std::vector<driver::ServiceHealth>& seen,
                 const google::protobuf::RepeatedPtrField<v1::ServiceHealth>& held) {
  if (static_cast<int>(seen.size()) != held.size()) return false;
  for (std::size_t i = 0; i < seen.size(); ++i) {
    const auto& b = held.Get(static_cast<int>(i));
    if (seen[i].name != b.name() || seen[i].status != b.status() || seen[i].error != b.error())
      return false;
  }
  return true;
}

Error not_leader() {
  return make_error(errc::unavailable, "this replica does not hold the provisioner lease");
}

v1::Actor system_actor() {
  v1::Actor a;
  a.set_kind(v1::ACTOR_KIND_SYSTEM);
  a.set_id("provisioner");
  return a;
}
}  // namespace

Provisioner::Provisioner(event_store::EventLog& store, driver::Driver& driver, SecretStore& keys,
                         const Clock& clock, ProvisionerOptions opts, const Leadership* leadership,
                         event_store::Sleeper* sleeper)
    : store_(store),
      driver_(driver),
      keys_(keys),
      clock_(clock),
      opts_(opts),
      leadership_(leadership),
      own_sleeper_(&stop_),
      sleeper_(sleeper ? sleeper : &own_sleeper_),
      pool_(static_cast<std::size_t>(std::max(1, opts.workers))) {
  converge_policy_.max_attempts = opts_.max_converge_rounds;
  converge_policy_.backoff_base_ms = opts_.conflict_backoff_base_ms;
  converge_policy_.backoff_max_ms = opts_.conflict_backoff_max_ms;
}

std::mutex& Provisioner::lock_for(const std::string& ref) {
  return locks_[std::hash<std::string>{}(ref) % locks_.size()];
}

bool Provisioner::may_act() {
  if (!leadership_ || leadership_->leading()) return true;
  counters_.not_leading++;
  return false;
}

bool Provisioner::sleep_ms(std::int64_t ms) { return !stop_ && sleeper_->sleep_ms(ms) && !stop_; }

Result<driver::Progress> Provisioner::act(domain::StackAction action,
                                          const driver::StackRequest& req) {
  const auto finished = [](Status st) -> Result<driver::Progress> {
    if (!st) return st.error();
    driver::Progress p;
    p.done = true;
    return p;
  };
  switch (action) {
    case domain::StackAction::provision:
      return driver_.provision(req);
    case domain::StackAction::pause:
      return finished(driver_.pause(req));
    case domain::StackAction::resume:
      return driver_.resume(req);
    case domain::StackAction::remove:
      return finished(driver_.remove(req.ref));
    case domain::StackAction::none:
      break;
  }
  return finished(Status::Ok());
}

void Provisioner::set_starting(const std::string& ref, bool starting) {
  std::lock_guard lk(starting_mu_);
  if (starting)
    starting_.try_emplace(ref, std::chrono::steady_clock::now());
  else
    starting_.erase(ref);
  counters_.starting = static_cast<std::int64_t>(starting_.size());
}

void Provisioner::forget_starting() {
  std::lock_guard lk(starting_mu_);
  starting_.clear();
  counters_.starting = 0;
}

std::vector<std::string> Provisioner::starting() const {
  std::lock_guard lk(starting_mu_);
  std::vector<std::string> out;
  for (const auto& [ref, _] : starting_) out.push_back(ref);
  return out;
}

void Provisioner::kick(const std::string& ref) {
  {
    std::lock_guard lk(kicked_mu_);
    if (!kicked_.insert(ref).second) return;  // one queued kick is enough
  }
  pool_.post([this, ref] {
    {
      std::lock_guard lk(kicked_mu_);
      kicked_.erase(ref);
    }
    if (stop_ || !may_act()) return;
    bool is_starting = false;
    {
      std::lock_guard lk(starting_mu_);
      is_starting = starting_.count(ref) > 0;
    }
    if (is_starting) {
      if (auto st = converge(ref); !st)
        log()->warn("converge ref={} not finished: {}", ref, st.error().message);
    } else if (auto r = check(ref); !r) {
      log()->warn("check ref={}: {}", ref, r.error().message);
    }
  });
}

void Provisioner::poll_starting() {
  for (const auto& ref : starting()) kick(ref);
}

Status Provisioner::converge(const std::string& ref) {
  std::lock_guard lk(lock_for(ref));
  // What the outcome being appended says (for its log line).
  struct Outcome {
    domain::StackAction action{domain::StackAction::none};
    std::int64_t gen{0};
    int attempts{0};
    Status done{Status::Ok()};
    bool progress{false};  ///< a start's per-service health, not an outcome
  } outcome;
  event_store::Command<v1::TenantState, bool> cmd;
  cmd.load = [&](int) -> Result<v1::TenantState> {
    if (stop_) return make_error(errc::unavailable, "stopping");
    if (!may_act()) return not_leader();
    auto msgs = store_.read_subject(std::string(kPrefix) + ref);
    if (!msgs) return msgs.error();
    counters_.history_reads++;
    return events::fold_history(ref, *msgs);
  };
  cmd.decide = [&](v1::TenantState& state, int) -> Result<event_store::Decision<bool>> {
    using D = event_store::Decision<bool>;
    const auto action = domain::plan_convergence(state);
    if (action == domain::StackAction::none) {
      set_starting(ref, false);
      return D::finish(true);
    }
    const std::int64_t gen = state.generation();
    std::uint64_t version = state.version();  // the expected sequence of our next append
    if (domain::announce_start(state, action)) {
      v1::TenantEvent started;
      started.mutable_provisioning_started()->set_observed_generation(gen);
      auto out = events::make_tenant_event(
          ref, started, system_actor(),
          "provisioner:" + ref + ":" + std::to_string(version) + ":started",
          event_store::Expected::at(version), ids::random_hex_id(), "", clock_.now_unix_ms());
      if (!may_act()) return not_leader();
      auto appended = store_.append(out);
      if (!appended) return appended.error();  // a conflict: a newer desire, decide again
      version = appended->sequence.value();
    }
    driver::StackRequest req;
    req.ref = ref;
    req.connection_limit = opts_.connection_limit;
    req.end_sessions = domain::keys_rotation_pending(state);
    req.plan = state.plan();
    domain::Applied applied;
    if (action != domain::StackAction::remove) {
      auto keys = keys_.ensure(ref, state.keys_generation());
      if (!keys) return keys.error();
      req.keys = keys->keys;
      req.db_password = keys->keys.db_password;
      applied.keys_generation = keys->keys_generation;
      const auto where = driver_.endpoints(ref);
      applied.gateway_url = where.gateway_url;
      applied.db_name = where.db_name;
      applied.db_user = where.db_user;
      applied.db_schema = where.db_schema;
      applied.db_host = where.db_host;
      applied.db_port = where.db_port;
      applied.db_upstream = where.db_upstream;
    }
    Result<driver::Progress> progress = make_error(errc::unavailable, "not attempted");
    int attempt = 0;
    while (attempt < opts_.max_attempts && !stop_) {
      if (!may_act()) return not_leader();
      ++attempt;
      progress = act(action, req);
      if (progress) break;
      counters_.retries++;
      log()->warn("{} ref={} gen={} attempt {} failed: {}", domain::to_string(action), ref, gen,
                  attempt, progress.error().message);
      if (attempt < opts_.max_attempts &&
          !sleep_ms(event_store::ConsumerRunner::backoff_ms(
              static_cast<std::uint64_t>(attempt), opts_.backoff_base_ms, opts_.backoff_max_ms)))
        break;
    }
    Status done = progress ? Status::Ok() : Status(progress.error());
    if (progress && !progress->done) {
      // Started, not serving yet: finished later, when the driver reports
      // a change or the poll comes by; no worker waits for it.
      std::chrono::steady_clock::time_point since;
      {
        std::lock_guard lk(starting_mu_);
        auto [it, fresh] = starting_.try_emplace(ref, std::chrono::steady_clock::now());
        since = it->second;
        counters_.starting = static_cast<std::int64_t>(starting_.size());
        if (fresh)
          log()->info("{} ref={} gen={} started; waiting on {}", domain::to_string(action), ref,
                      gen, progress->waiting_on);
      }
      const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - since)
                              .count();
      if (waited < opts_.start_timeout_ms) {
        log()->debug("{} ref={} gen={} in progress: {}", domain::to_string(action), ref, gen,
                     progress->waiting_on);
        // Per-service progress (COMING_UP, then ACTIVE_HEALTHY one by one)
        // is recorded when it changes, so GetTenantHealth shows a start
        // as it goes: at most a few events per start, none per poll.
        if (progress->health.empty() || same_health(progress->health, state.services()))
          return D::finish(true);
        v1::TenantEvent ev;
        auto* hc = ev.mutable_stack_health_changed();
        hc->set_observed_generation(gen);
        for (const auto& h : progress->health) {
          auto* out = hc->add_services();
          out->set_name(h.name);
          out->set_status(h.status);
          out->set_error(h.error);
        }
        outcome = Outcome{action, gen, attempt, Status::Ok(), true};
        if (!may_act()) return not_leader();
        return D::write(events::make_tenant_event(ref, ev, system_actor(), "",
                                                  event_store::Expected::at(version),
                                                  ids::random_hex_id(), "", clock_.now_unix_ms()));
      }
      done = make_error(errc::internal, "stack not serving after " + std::to_string(waited / 1000) +
                                            " s: " + progress->waiting_on);
      attempt = opts_.max_attempts;
    }
    set_starting(ref, false);
    if (progress && progress->done)
      for (const auto& h : progress->health) {
        v1::ServiceHealth out;
        out.set_name(h.name);
        out.set_status(h.status);
        out.set_error(h.error);
        applied.health.push_back(out);
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
    outcome = Outcome{action, gen, attempt, done};
    // The next leader redoes the step (driver calls are idempotent) and
    // records it.
    if (!may_act()) return not_leader();
    return D::write(events::make_tenant_event(ref, ev, system_actor(), msg_id,
                                              event_store::Expected::at(version),
                                              ids::random_hex_id(), "", clock_.now_unix_ms()));
  };
  cmd.appended = [&](v1::TenantState&, const event_store::AppendResult& a) -> Result<bool> {
    if (outcome.progress) {
      log()->debug("{} ref={} gen={} progress recorded seq={}", domain::to_string(outcome.action),
                   ref, outcome.gen, a.sequence.value());
      return true;
    }
    // The outcome was appended on the version we decided on, so it settles
    // that state (plan_convergence is then none); a command that came after
    // it arrives as its own message.
    if (outcome.done) {
      counters_.actions++;
      log()->info("{} ref={} gen={} seq={}", domain::to_string(outcome.action), ref, outcome.gen,
                  a.sequence.value());
    } else {
      counters_.failures++;  // recorded; a later command converges it again
      log()->error("ref={} gen={} FAILED after {} attempts: {}", ref, outcome.gen, outcome.attempts,
                   outcome.done.error().message);
    }
    return true;
  };
  cmd.on_conflict = [this] { counters_.conflicts++; };  // a newer desire: converge to it
  event_store::RetryPolicy policy = converge_policy_;
  policy.exhausted = "tenant " + ref + " keeps changing; will retry";
  auto settled = event_store::run_command(store_, *sleeper_, policy, cmd);
  if (!settled) return settled.error();
  return Status::Ok();
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
    // A replica that stopped leading hands its messages back at once.
    const bool handing_over = stop_ || (leadership_ && !leadership_->leading());
    in.disposition =
        mine ? (handing_over ? event_store::Disposition::release : event_store::Disposition::retry)
             : event_store::Disposition::ack;
  }
}

Result<bool> Provisioner::check(const std::string& ref, const v1::TenantState* folded) {
  if (!may_act()) return not_leader();
  std::unique_lock lk(lock_for(ref));
  enum class Seen { settled, health_recorded, drifted, needs_converge };
  std::string drift;
  std::size_t services = 0;
  event_store::Command<v1::TenantState, Seen> cmd;
  cmd.load = [&](int) -> Result<v1::TenantState> {
    if (folded) return *folded;
    auto msgs = store_.read_subject(std::string(kPrefix) + ref);
    if (!msgs) return msgs.error();
    counters_.history_reads++;
    return events::fold_history(ref, *msgs);
  };
  cmd.decide = [&](v1::TenantState& s, int) -> Result<event_store::Decision<Seen>> {
    using D = event_store::Decision<Seen>;
    // Level-triggered catch-all: a tenant whose messages were given up on
    // (e.g. NATS down for long) still converges here.
    if (domain::plan_convergence(s) != domain::StackAction::none)
      return D::finish(Seen::needs_converge);
    const bool want_running = s.observed_state() == v1::OBSERVED_STATE_RUNNING;
    const bool want_paused = s.observed_state() == v1::OBSERVED_STATE_PAUSED;
    if (!want_running && !want_paused) return D::finish(Seen::settled);
    if (!may_act()) return not_leader();
    auto seen = driver_.observe(ref, want_running);
    if (!seen) return seen.error();
    if (want_running && seen->drift.empty()) {
      // Where the tenant lives must be what the log says (histories from
      // before the endpoints were recorded, or a changed driver setting).
      const auto where = driver_.endpoints(ref);
      if (where.gateway_url != s.gateway_url() || where.db_host != s.db_host() ||
          where.db_port != s.db_port() || where.db_upstream != s.db_upstream())
        seen->drift = "endpoints differ from the log";
    }
    v1::TenantEvent ev;
    if (seen->drift.empty()) {
      if (!want_running) return D::finish(Seen::settled);
      // A service whose health check has not run yet since it (re)started
      // (COMING_UP) is no news: only a verdict is recorded, so the log does
      // not grow with every restart.
      bool same = static_cast<int>(seen->health.size()) == s.services_size();
      for (std::size_t i = 0; same && i < seen->health.size(); ++i) {
        const auto& a = seen->health[i];
        const auto& b = s.services(static_cast<int>(i));
        same = a.name == b.name() && (a.status == v1::SERVICE_HEALTH_STATUS_COMING_UP ||
                                      (a.status == b.status() && a.error == b.error()));
      }
      if (same) return D::finish(Seen::settled);
      auto* hc = ev.mutable_stack_health_changed();
      hc->set_observed_generation(s.observed_generation());
      for (const auto& h : seen->health) {
        auto* out = hc->add_services();
        out->set_name(h.name);
        out->set_status(h.status);
        out->set_error(h.error);
      }
      services = seen->health.size();
    } else {
      ev.mutable_drift_detected()->set_observed_generation(s.observed_generation());
      ev.mutable_drift_detected()->set_details(seen->drift);
      drift = seen->drift;
    }
    if (!may_act()) return not_leader();
    return D::write(events::make_tenant_event(ref, ev, system_actor(), "",
                                              event_store::Expected::at(s.version()),
                                              ids::random_hex_id(), "", clock_.now_unix_ms()));
  };
  cmd.appended = [&](v1::TenantState&, const event_store::AppendResult&) -> Result<Seen> {
    return drift.empty() ? Seen::health_recorded : Seen::drifted;
  };
  // One attempt: a state that changed meanwhile is news of its own (its
  // message converges or checks the tenant again).
  event_store::RetryPolicy once;
  once.max_attempts = 1;
  once.exhausted = "";
  auto r = event_store::run_command(store_, *sleeper_, once, cmd);
  if (!r) {
    if (r.error().code == errc::conflict) return false;  // changed meanwhile
    return r.error();
  }
  switch (*r) {
    case Seen::settled:
      return false;
    case Seen::needs_converge:
      lk.unlock();
      if (auto st = converge(ref); !st) return st.error();
      return false;
    case Seen::health_recorded:
      counters_.health_changes++;
      log()->info("health ref={} changed ({} services)", ref, services);
      return false;
    case Seen::drifted:
      break;
  }
  counters_.drift++;
  log()->warn("drift ref={}: {}", ref, drift);
  lk.unlock();
  if (auto st = converge(ref); !st)
    log()->warn("repairing drift ref={}: {}", ref, st.error().message);
  return true;
}

Result<int> Provisioner::resync() {
  const auto t0 = std::chrono::steady_clock::now();
  // One ordered replay folds every tenant: a history read per tenant would
  // cost one consumer per tenant (100,000 tenants: minutes), this costs one.
  events::TenantFolder folder;
  auto st = store_.replay(std::string(kPrefix) + ">", 1, [&](const event_store::StoredMessage& m) {
    folder.add(m);
    return !stop_.load();
  });
  if (!st) return st.error();
  counters_.resync_events += folder.folded();
  const auto states = folder.take();
  int drifted = 0;
  for (const auto& [ref, state] : states) {
    if (stop_) break;
    if (!may_act()) return not_leader();
    auto r = check(ref, &state);
    if (!r) {
      if (r.error().code == errc::unavailable) return r.error();
      log()->warn("resync ref={}: {}", ref, r.error().message);
      continue;
    }
    if (*r) ++drifted;
  }
  counters_.resyncs++;
  counters_.resync_tenants = static_cast<std::int64_t>(states.size());
  counters_.resync_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  return drifted;
}

}  // namespace supaplane::provisioner
