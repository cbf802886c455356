#include "supaplane/projection/projector.hpp"

#include <algorithm>
#include <chrono>
#include <deque>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "supaplane/core/ids.hpp"
#include "supaplane/domain/tenant.hpp"
#include "supaplane/logging/logging.hpp"
#include "supaplane/projection/guard.hpp"

namespace supaplane::projection {

namespace {
std::shared_ptr<spdlog::logger> log() {
  static auto l = logging::get("projector");
  return l;
}

}  // namespace

TenantProjector::TenantProjector(TenantProjection& projection, RedisAddress redis,
                                 SequenceWaiter& waiter, ProjectorObserver& observer,
                                 ProjectionGuard* guard)
    : projection_(projection),
      redis_(std::move(redis), projection.scripts().all()),
      waiter_(waiter),
      observer_(observer),
      guard_(guard) {}

void TenantProjector::handle(std::vector<event_store::InboundMessage>& batch) {
  std::vector<DecodedEvent> decoded;
  decoded.reserve(batch.size());
  for (const auto& in : batch) decoded.push_back(decode(in.message));
  std::size_t at = 0;
  int failures = 0;
  while (at < batch.size()) {
    if (stop_) {
      for (std::size_t i = at; i < batch.size(); ++i)
        batch[i].disposition = event_store::Disposition::release;
      return;
    }
    auto r = apply_from(batch, decoded, at);
    if (r) {
      at = *r;
      failures = 0;
      continue;
    }
    if ((r.error().code == errc::not_found || r.error().code == errc::corrupt) && guard_) {
      // The live generation is gone (Redis lost its data) or holds a value
      // that cannot be decoded: rebuild it from the log (or wait for the
      // process that is rebuilding it), then redo this batch, which the
      // checkpoint rule then mostly skips.
      log()->warn("projection unusable in Redis ({}); rebuilding it from the event log",
                  r.error().message);
      Status st = Status::Ok();
      if (r.error().code == errc::corrupt) {
        if (auto rb = guard_->rebuild(RebuildReason::undecodable); !rb) st = rb.error();
      } else {
        st = guard_->check();
      }
      if (st) {
        counters_.recoveries++;
        continue;
      }
      log()->warn("projection not rebuilt yet: {}", st.error().message);
    }
    // Redis is down: order matters, so wait here instead of nak'ing.
    counters_.redis_errors++;
    observer_.on_redis_error(r.error());
    if (failures++ == 0) log()->warn("projection write failed: {}; retrying", r.error().message);
    const int delay_ms = std::min(2000, 50 << std::min(failures, 6));
    for (int w = 0; w < delay_ms && !stop_; w += 10)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

Result<std::size_t> TenantProjector::apply_from(std::vector<event_store::InboundMessage>& batch,
                                                const std::vector<DecodedEvent>& decoded,
                                                std::size_t from) {
  std::vector<std::string> refs;
  std::unordered_map<std::string, std::size_t> index;
  for (std::size_t i = from; i < batch.size(); ++i) {
    const auto& d = decoded[i];
    if (!d.ref.empty() && !index.count(d.ref)) {
      index.emplace(d.ref, refs.size());
      refs.push_back(d.ref);
    }
  }
  auto states = projection_.read(redis_, refs);
  if (!states) return states.error();
  std::deque<v1::TenantState> written;  // stable addresses for TenantWrite
  std::vector<std::string> types(batch.size());
  // Per ref, the version of the newer state already told in this run for
  // events another process applied first (told once, not once per event).
  std::unordered_map<std::string, std::uint64_t> told_ahead;
  // The state right after event i, when known: what the observer is told.
  std::vector<const v1::TenantState*> applied_state(batch.size(), nullptr);
  std::vector<TenantWrite> writes;
  writes.reserve(batch.size() - from);
  for (std::size_t i = from; i < batch.size(); ++i) {
    const auto& d = decoded[i];
    TenantWrite w;
    w.sequence = d.sequence;
    if (i > from) w.after = decoded[i - 1].sequence;
    if (!d.ref.empty()) {
      auto& cur = states->states[index.at(d.ref)];
      const auto old_phase = cur.phase();
      if (advance_tenant(d, cur)) {
        w.old_phase = old_phase;
        written.push_back(cur);
        w.state = &written.back();
        if (d.kind == DecodedEvent::Kind::tenant) applied_state[i] = w.state;
      } else if (d.kind == DecodedEvent::Kind::tenant && cur.version() >= d.sequence) {
        // Another process applied it already. Nothing newer: the state read
        // is the one right after this event. The tenant moved on (this
        // projector is behind the shared checkpoint): the state read is a
        // later one, told now, because this process's in-memory views
        // (watchers, caches, routes) must follow the stream it reads even
        // when the tenant's own last event is one this build cannot apply.
        auto& told = told_ahead[d.ref];
        if (cur.version() == d.sequence || told != cur.version()) {
          told = cur.version();
          written.push_back(cur);
          applied_state[i] = &written.back();
        }
      }
      if (applied_state[i]) types[i] = domain::event_type(d.envelope.tenant());
    }
    writes.push_back(w);
  }
  // One atomic script for the whole run: one round trip, one checkpoint write.
  projection_.queue_apply(redis_, states->gen, writes, /*check_pointer=*/true);
  auto rep = redis_.get_reply();
  if (!rep) return rep.error();
  auto results = TenantProjection::apply_results(rep->get(), writes.size());
  if (!results) return results.error();
  for (std::size_t i = from; i < batch.size(); ++i) {
    const long long v = (*results)[i - from];
    if (v == -1 || v == -2) {
      // -1: the live generation changed under us; -2: a predecessor in this
      // run was not applied. Either way: re-read and redo from here.
      return i;
    }
    const auto& d = decoded[i];
    if (v == 0)
      counters_.skipped++;
    else if (applied_state[i])
      counters_.applied++;
    // Applied here or by another process sharing the projection: either way
    // the observer (watchers, caches, routes) hears of it.
    if (applied_state[i]) observer_.on_applied(*applied_state[i], d.sequence, types[i]);
    switch (d.kind) {
      case DecodedEvent::Kind::malformed:
        counters_.malformed++;
        observer_.on_malformed(d.sequence, batch[i].message.subject);
        log()->error("seq {} on {} cannot be decoded; terminated", d.sequence,
                     batch[i].message.subject);
        batch[i].disposition = event_store::Disposition::poison;
        break;
      case DecodedEvent::Kind::unknown:
        counters_.unknown++;
        observer_.on_unknown(d.sequence);
        batch[i].disposition = event_store::Disposition::ack;
        break;
      default:
        batch[i].disposition = event_store::Disposition::ack;
    }
    waiter_.advance(d.sequence);
  }
  return batch.size();
}

std::string new_generation_name() { return "g" + ids::random_hex_id().substr(0, 12); }

Result<RebuildResult> rebuild_tenants(event_store::EventStore& store, RedisConnection& redis,
                                      TenantProjection& projection, const std::string& gen,
                                      bool switch_live, int catch_up_timeout_ms,
                                      const std::string& filter) {
  const auto t0 = std::chrono::steady_clock::now();
  if (auto st = redis.ensure(); !st) return st.error();
  if (auto live = projection.active_generation(redis); live && *live == gen)
    return make_error(errc::invalid_argument, "generation " + gen + " is live; pick another name");
  if (auto st = projection.drop_generation(redis, gen); !st) return st.error();
  RebuildResult res;
  res.generation = gen;
  // The new generation is private until the switch, so each round folds the
  // log in memory and writes every changed tenant once (in version order,
  // through the same Lua apply as the live projector, so the keys are the
  // same), then the checkpoint.
  std::unordered_map<std::string, v1::TenantState> states;
  std::unordered_map<std::string, v1::Phase> written_phase;
  std::unordered_set<std::string> dirty;
  std::uint64_t next = 1;
  auto replay_from = [&](std::uint64_t from) -> Status {
    return store.replay(filter, from, [&](const event_store::StoredMessage& m) {
      const DecodedEvent d = decode(m);
      if (!d.ref.empty() && advance_tenant(d, states[d.ref])) dirty.insert(d.ref);
      ++res.events;
      next = d.sequence + 1;
      return true;
    });
  };
  auto flush = [&]() -> Status {
    std::vector<const v1::TenantState*> order;
    order.reserve(dirty.size());
    for (const auto& ref : dirty) order.push_back(&states.at(ref));
    std::sort(order.begin(), order.end(),
              [](const auto* a, const auto* b) { return a->version() < b->version(); });
    std::size_t queued = 0;
    Error error;
    bool failed = false;
    auto drain = [&] {
      for (; queued > 0; --queued) {
        auto r = redis.get_reply();
        if (!r && !failed) {
          failed = true;
          error = r.error();
        }
      }
    };
    std::vector<TenantWrite> writes;
    writes.reserve(std::min<std::size_t>(order.size() + 1, 256));
    auto queue = [&] {
      projection.queue_apply(redis, gen, writes, /*check_pointer=*/false);
      writes.clear();
      if (++queued >= 64) drain();
    };
    for (const auto* st : order) {
      TenantWrite w;
      w.sequence = st->version();
      w.state = st;
      auto it = written_phase.find(st->ref());
      w.old_phase = it == written_phase.end() ? v1::PHASE_UNSPECIFIED : it->second;
      written_phase[st->ref()] = st->phase();
      writes.push_back(w);
      if (writes.size() == 256) queue();
    }
    TenantWrite cp;  // the checkpoint: everything read so far
    cp.sequence = next - 1;
    writes.push_back(cp);
    queue();
    drain();
    dirty.clear();
    if (failed) return error;
    return Status::Ok();
  };
  auto round = [&](std::uint64_t from) -> Status {
    if (auto st = replay_from(from); !st) return st;
    if (auto st = flush(); !st) return st;
    res.checkpoint = next - 1;
    return Status::Ok();
  };
  if (auto st = round(1); !st) return st.error();
  if (switch_live) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(catch_up_timeout_ms);
    for (;;) {
      std::string previous;
      auto sw = projection.switch_to(redis, gen, &previous);
      if (!sw) return sw.error();
      if (*sw) {
        res.switched = true;
        if (!previous.empty() && previous != gen) {
          if (auto d = projection.drop_generation(redis, previous); !d)
            log()->warn("rebuild: could not drop old generation {}: {}", previous,
                        d.error().message);
        }
        break;
      }
      if (std::chrono::steady_clock::now() > deadline)
        return make_error(errc::unavailable, "rebuild could not catch up with the live projection");
      if (auto st = round(next); !st) return st.error();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace supaplane::projection
