#include "route_sync.hpp"

#include <algorithm>
#include <ctime>
#include <future>
#include <optional>

#include "render_state.hpp"
#include "supaplane/core/parse.hpp"
#include "supaplane/logging/logging.hpp"
#include "supaplane/secrets/secrets.hpp"

namespace supaplane::router {

using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

namespace {
std::shared_ptr<spdlog::logger> log() {
  static auto l = logging::get("route-sync");
  return l;
}

bool has_routes(v1::Phase p) { return p != v1::PHASE_DELETED && p != v1::PHASE_UNSPECIFIED; }

/// The keys generation the edge must serve: the one the stack uses, once the
/// provisioner has reported an outcome (it stores the keys before acting);
/// -1 before that (no keys yet).
std::int64_t wanted_keys(const v1::TenantState& s) {
  return s.observed_generation() > 0 ? s.applied_keys_generation() : -1;
}

/// CPU time of the calling thread: the start's log line gives it next to the
/// wall time (on a loaded machine the two differ several times over).
std::int64_t thread_cpu_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

std::string reply_str(const redisReply* r) {
  return r && r->type == REDIS_REPLY_STRING ? std::string(r->str, r->len) : std::string();
}

/// The keys as this service stores them in Redis (`HMGET <key> gen pub sec
/// jwt`); nullopt when there are none or they do not decode (then they are
/// as good as none: loaded again from the key store).
std::optional<EdgeKeys> stored_keys(const redisReply* rep) {
  if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 4 ||
      rep->element[0]->type != REDIS_REPLY_STRING)
    return std::nullopt;
  auto gen = parse_decimal<std::int64_t>(reply_str(rep->element[0]));
  if (!gen) return std::nullopt;
  EdgeKeys k;
  k.keys_generation = *gen;
  k.publishable_hash = reply_str(rep->element[1]);
  k.secret_hash = reply_str(rep->element[2]);
  // Opened by the edge on first use: most tenants' secrets are not needed
  // for a while, and opening 100,000 of them delays a start.
  k.sealed_jwt_secret = reply_str(rep->element[3]);
  return k;
}
}  // namespace

RouteSync::RouteSync(RenderOptions render, TraefikDir& dir, EdgeAuth& edge,
                     keystore::KeyStore& keys, projection::RedisAddress redis,
                     secrets::MasterKey master, std::string key_prefix,
                     std::chrono::milliseconds flush_interval, EndpointPattern gateway_pattern,
                     EndpointPattern db_pattern)
    : render_(std::move(render)),
      dir_(dir),
      edge_(edge),
      keys_(keys),
      redis_(std::move(redis), {}),
      master_(master),
      key_prefix_(std::move(key_prefix)),
      interval_(flush_interval),
      gateway_pattern_(std::move(gateway_pattern)),
      db_pattern_(std::move(db_pattern)),
      fingerprint_(render_fingerprint(render_, gateway_pattern_, db_pattern_)),
      base_(render_base(render_)) {}

RouteSync::~RouteSync() { stop(); }

RouteTenant RouteSync::checked_route(const v1::TenantState& s) {
  RouteTenant t = route_tenant(s);
  if (!t.gateway_url.empty() && !gateway_pattern_.allows(t.ref, t.gateway_url)) {
    ++counters_.refused_endpoints;
    log()->warn("ref={}: gateway URL from the log does not match {}; not routed", t.ref,
                gateway_pattern_.source());
    t.gateway_url.clear();
  }
  const std::string expected_host = "db." + t.ref + "." + render_.base_domain;
  if (!t.db_upstream.empty() &&
      (!db_pattern_.allows(t.ref, t.db_upstream) || t.db_host != expected_host)) {
    ++counters_.refused_endpoints;
    log()->warn("ref={}: database route from the log does not match {} / {}; not routed", t.ref,
                db_pattern_.source(), expected_host);
    t.db_upstream.clear();
  }
  return t;
}

Status RouteSync::start(projection::TenantProjection& projection,
                        projection::RedisConnection& redis, const std::string& generation,
                        std::uint64_t checkpoint) {
  const auto t0 = SteadyClock::now();
  const auto cpu0 = thread_cpu_ms();
  if (auto st = dir_.prepare(); !st) return st.error();
  // The directory's stat pass (listing, a stat per file, the manifest) runs
  // on its own thread meanwhile: it only reads, and nothing writes the
  // directory before the reconcile below.
  std::int64_t other_cpu_ms = 0;  // the helper threads' CPU, for the log line
  std::int64_t scan_cpu_ms = 0;
  auto scan = std::async(std::launch::async, [this, &scan_cpu_ms] {
    const auto c0 = thread_cpu_ms();
    auto r = dir_.scan();
    scan_cpu_ms = thread_cpu_ms() - c0;
    return r;
  });
  // The render state a clean stop saved: used only when built from this
  // very projection (live generation and checkpoint) with these options.
  // Removed once read, so that a later start never takes it for the state
  // after events this run applies.
  std::map<std::string, RouteTenant> tenants;
  std::map<std::string, std::int64_t> wanted;
  std::map<std::string, TenantJson> rendered;
  std::set<std::string> pending;
  std::vector<WantedFile> files;
  const std::string base_yaml = to_yaml(base_);
  files.push_back(WantedFile{kBaseFile, TraefikDir::content_hash(base_yaml), base_yaml.size()});
  SteadyClock::time_point loaded_tenants, loaded_keys, rendered_at;
  bool from_state = false;
  if (auto mapped = dir_.map_private(RenderState::kFile); !mapped) {
    ++counters_.state_corrupt;
    log()->warn("directory {}: saved render state unreadable ({}); full render", dir_.path(),
                mapped.error().message);
  } else if (*mapped) {
    // Read straight into the maps (no copy of the whole state); the edge
    // is told only once the whole state has been read.
    std::vector<std::pair<std::string, v1::Phase>> phases;
    std::vector<std::pair<std::string, EdgeKeys>> keys;
    bool current = false;
    auto walked = walk_render_state(
        (*mapped)->view(),
        [&](const RenderState& head) {
          current = head.matches(generation, checkpoint, fingerprint_);
          if (!current)
            log()->info(
                "directory {}: saved render state is of generation {} at {}, the projection is "
                "{} at {} (or the options changed); full render",
                dir_.path(), head.generation, head.checkpoint, generation, checkpoint);
          return current;
        },
        [&](SavedTenant& t) {
          const std::string& ref = t.route.ref;
          phases.emplace_back(ref, t.route.phase);
          if (!t.keys.sealed_jwt_secret.empty() && t.keys.keys_generation >= t.want && t.want >= 0)
            keys.emplace_back(ref, std::move(t.keys));
          else if (t.want >= 0)
            pending.insert(pending.end(), ref);
          t.keys = EdgeKeys{};
          files.push_back(WantedFile{tenant_file(ref), t.yaml_hash, t.yaml_size});
          rendered.emplace_hint(rendered.end(), ref, std::move(t.json));
          wanted.emplace_hint(wanted.end(), ref, t.want);
          tenants.emplace_hint(tenants.end(), ref, std::move(t.route));
        });
    if (!walked) {
      ++counters_.state_corrupt;
      log()->warn("directory {}: saved render state rejected ({}); full render", dir_.path(),
                  walked.error().message);
    } else if (!current) {
      ++counters_.state_stale;
    } else {
      from_state = true;
      std::vector<EdgeTenant> install;
      install.reserve(phases.size());
      auto k = keys.begin();
      for (auto& [ref, phase] : phases) {
        EdgeTenant e{std::move(ref), phase, {}};
        if (k != keys.end() && k->first == e.ref) e.keys = std::move((k++)->second);
        install.push_back(std::move(e));
      }
      edge_.install(std::move(install));
    }
    if (!from_state) {
      tenants.clear();
      wanted.clear();
      rendered.clear();
      pending.clear();
      files.resize(1);  // the base file
    }
    // Removed once read, so that a later start never takes it for the state
    // after events this run applies.
    if (auto st = dir_.remove_private(RenderState::kFile); !st) return st.error();
  }
  if (from_state) {
    ++counters_.state_used;
    loaded_tenants = loaded_keys = rendered_at = SteadyClock::now();
  } else {
    // Every tenant of the projection, read in bulk: the refs of its `all`
    // index, then pipelined batches of one MGET of their states and one
    // HMGET of their stored keys each (hashes and the sealed JWT secret, as
    // this service stored them), two workers on two connections, each
    // keeping its next batch in flight while it renders the one before.
    auto all = projection.refs(redis, generation);
    if (!all) return all.error();
    std::vector<std::string>& refs = *all;
    std::sort(refs.begin(), refs.end());  // the maps below are then built without a search each
    loaded_tenants = SteadyClock::now();
    struct Item {
      RouteTenant route;
      std::int64_t want{-1};
      EdgeKeys keys{};
      std::uint64_t yaml_hash{0};
      std::uint64_t yaml_size{0};
      TenantJson json{};
      bool routed{false};  ///< has routes (not deleted); else skipped
    };
    std::vector<Item> items(refs.size());
    auto work = [&](projection::RedisConnection& conn, std::size_t begin, std::size_t end,
                    std::int64_t* cpu_ms) -> Status {
      const auto c0 = thread_cpu_ms();
      if (auto st = conn.ensure(); !st) return st;
      constexpr std::size_t kBatch = 500;
      auto send = [&](std::size_t b) {
        const std::size_t e = std::min(end, b + kBatch);
        std::vector<std::string> mget;
        mget.reserve(e - b + 1);
        mget.emplace_back("MGET");
        for (std::size_t i = b; i < e; ++i)
          mget.push_back(projection.state_key(generation, refs[i]));
        conn.append(mget);
        for (std::size_t i = b; i < e; ++i)
          conn.append({"HMGET", key_prefix_ + refs[i], "gen", "pub", "sec", "jwt"});
      };
      // Every reply of a batch sent is read, errors or not, so none is left
      // in the pipeline for a later command.
      auto receive = [&](std::size_t b, std::vector<Result<projection::Reply>>& out) {
        const std::size_t e = std::min(end, b + kBatch);
        out.clear();
        for (std::size_t i = b; i <= e; ++i) out.push_back(conn.get_reply());
      };
      std::optional<Error> failed;
      std::vector<Result<projection::Reply>> replies;
      std::string yaml;
      TenantJson scratch;
      if (begin < end) send(begin);
      for (std::size_t b = begin; b < end; b += kBatch) {
        if (b + kBatch < end) send(b + kBatch);
        receive(b, replies);
        if (!failed) {
          for (const auto& r : replies)
            if (!r) {
              failed = r.error();
              break;
            }
        }
        if (!failed) {
          const redisReply* states = replies[0]->get();
          const std::size_t e = std::min(end, b + kBatch);
          if (states->type != REDIS_REPLY_ARRAY || states->elements != e - b)
            failed = make_error(errc::corrupt, "unexpected MGET reply");
          for (std::size_t i = b; i < e && !failed; ++i) {
            const redisReply* sr = states->element[i - b];
            // Gone between the index and the read: the projection was
            // rebuilt meanwhile (another replica's guard); start again.
            if (sr->type != REDIS_REPLY_STRING) {
              failed = make_error(errc::unavailable,
                                  "projection generation " + generation + " changed while read");
              break;
            }
            v1::TenantState s;
            if (!s.ParseFromArray(sr->str, static_cast<int>(sr->len))) {
              failed = make_error(errc::corrupt, "undecodable tenant state for " + refs[i]);
              break;
            }
            if (!has_routes(s.phase())) continue;
            Item& it = items[i];
            it.routed = true;
            it.route = checked_route(s);
            it.want = wanted_keys(s);
            // An undecodable entry is as good as none: the keys are loaded again.
            if (auto k = stored_keys(replies[i - b + 1]->get()); k) it.keys = std::move(*k);
            if (!render_tenant_text(it.route, render_, &yaml, &scratch)) continue;
            it.yaml_hash = TraefikDir::content_hash(yaml);
            it.yaml_size = yaml.size();
            it.json = scratch;  // a copy of the exact size
          }
        }
        if (!failed) continue;
        // Drain the batch already sent after this one, then give up.
        if (b + kBatch < end) receive(b + kBatch, replies);
        break;
      }
      *cpu_ms = thread_cpu_ms() - c0;
      if (failed) return *failed;
      return Status::Ok();
    };
    const std::size_t half = refs.size() / 2;
    std::int64_t cpu_first = 0, cpu_second = 0;
    Status second_st = Status::Ok();
    {
      std::thread other([&] { second_st = work(redis_, half, refs.size(), &cpu_second); });
      auto first_st = work(redis, 0, half, &cpu_first);
      other.join();
      other_cpu_ms += cpu_second;
      if (!first_st) return first_st;
      if (!second_st) return second_st;
    }
    // Unchanged while read: the index and the states are of one generation.
    if (auto now = projection.active_generation(redis); !now)
      return now.error();
    else if (*now != generation)
      return make_error(errc::unavailable, "projection generation changed while read (" +
                                               generation + " → " + *now + ")");
    loaded_keys = SteadyClock::now();
    std::vector<EdgeTenant> edge_tenants;
    edge_tenants.reserve(items.size());
    files.reserve(items.size() + 1);
    for (auto& it : items) {
      if (!it.routed) continue;
      const std::string& ref = it.route.ref;
      EdgeTenant e{ref, it.route.phase, {}};
      if (!it.keys.sealed_jwt_secret.empty() && it.keys.keys_generation >= it.want && it.want >= 0)
        e.keys = std::move(it.keys);
      else if (it.want >= 0)
        pending.insert(pending.end(), ref);
      edge_tenants.push_back(std::move(e));
      if (it.json.size() > 0) {
        files.push_back(WantedFile{tenant_file(ref), it.yaml_hash, it.yaml_size});
        rendered.emplace_hint(rendered.end(), ref, std::move(it.json));
      }
      wanted.emplace_hint(wanted.end(), ref, it.want);
      tenants.emplace_hint(tenants.end(), ref, std::move(it.route));
    }
    items.clear();
    items.shrink_to_fit();
    edge_.install(std::move(edge_tenants));
    rendered_at = SteadyClock::now();
  }
  auto scanned = scan.get();
  other_cpu_ms += scan_cpu_ms;
  if (!scanned) return scanned.error();
  auto content = [&](const std::string& name) -> std::string {
    if (name == kBaseFile) return base_yaml;
    std::string yaml;
    if (auto it = tenants.find(ref_of_file(name)); it != tenants.end())
      render_tenant_text(it->second, render_, &yaml, nullptr);
    return yaml;
  };
  auto changed = dir_.reconcile(std::move(*scanned), files, content, [](const std::string& name) {
    return name == kBaseFile || !ref_of_file(name).empty();
  });
  if (!changed) return changed.error();
  files.clear();
  if (changed->manifest_bad) {
    ++counters_.manifest_rejected;
    log()->warn("directory {}: manifest {} unreadable; every file read back and compared",
                dir_.path(), TraefikDir::kManifest);
  }
  counters_.start_read_back = static_cast<std::uint64_t>(changed->read_back);
  const auto ms = [](SteadyClock::time_point a, SteadyClock::time_point b) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count();
  };
  const auto done = SteadyClock::now();
  log()->info(
      "directory {} reconciled ({}): {} tenants, {} files changed, {} read back, {} vouched for "
      "by the manifest in {} ms, {} ms of CPU (tenants {} ms, keys {} ms, render {} ms, directory "
      "{} ms)",
      dir_.path(), loaded_tenants == rendered_at ? "from the saved render state" : "full render",
      rendered.size(), changed->changed, changed->read_back, changed->trusted, ms(t0, done),
      thread_cpu_ms() - cpu0 + other_cpu_ms, ms(t0, loaded_tenants),
      ms(loaded_tenants, loaded_keys), ms(loaded_keys, rendered_at), ms(rendered_at, done));
  {
    std::lock_guard lk(mu_);
    tenants_ = std::move(tenants);
    keys_wanted_ = std::move(wanted);
    keys_pending_ = std::move(pending);
    rendered_ = std::move(rendered);
    ++version_;
  }
  started_ = true;
  thread_ = std::thread([this] { run(); });
  return Status::Ok();
}

void RouteSync::stop() {
  if (stop_.exchange(true)) return;
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (started_) {
    // What the coalescing window still held.
    std::set<std::string> refs;
    {
      std::lock_guard lk(mu_);
      refs = std::move(dirty_);
      dirty_.clear();
    }
    if (!refs.empty()) flush(refs);
  }
  // What the flushes wrote, so the next start need not read those files back.
  if (started_)
    if (auto st = dir_.save_manifest(); !st)
      log()->warn("directory {}: manifest not saved: {}", dir_.path(), st.error().message);
}

Status RouteSync::save_state(const std::string& generation, std::uint64_t checkpoint) {
  if (!started_ || !stop_)
    return make_error(errc::failed_precondition, "not stopped after a start");
  RenderState state;
  state.generation = generation;
  state.checkpoint = checkpoint;
  state.fingerprint = fingerprint_;
  {
    std::lock_guard lk(mu_);
    if (!dirty_.empty())
      return make_error(errc::unavailable, std::to_string(dirty_.size()) + " files not written");
    state.tenants.reserve(tenants_.size());
    for (const auto& [ref, t] : tenants_) {
      SavedTenant s;
      s.route = t;
      if (auto w = keys_wanted_.find(ref); w != keys_wanted_.end()) s.want = w->second;
      auto r = rendered_.find(ref);
      const FileStamp* f = dir_.stamp(tenant_file(ref));
      if (r == rendered_.end() || !f)
        return make_error(errc::unavailable, "tenant " + ref + " has no recorded file");
      s.json = r->second;
      s.yaml_hash = f->hash;
      s.yaml_size = f->size;
      state.tenants.push_back(std::move(s));
    }
  }
  for (auto& s : state.tenants) {
    EdgeKeys k = edge_.keys_of(s.route.ref);
    if (k.keys_generation < 0) continue;
    // Never the opened secret on disk: the sealed form, as Redis holds it.
    if (k.sealed_jwt_secret.empty() && !k.jwt_secret.empty())
      k.sealed_jwt_secret = secrets::seal(master_, s.route.ref, k.jwt_secret);
    k.jwt_secret.clear();
    if (k.sealed_jwt_secret.empty()) continue;
    s.keys = std::move(k);
  }
  return dir_.write_private(RenderState::kFile, encode_render_state(state));
}

void RouteSync::on_applied(const v1::TenantState& state, std::uint64_t /*seq*/,
                           const std::string& /*event_type*/) {
  const std::string& ref = state.ref();
  // The edge follows at once: a pause answers 503 and a rotation stops the
  // old keys before the directory or the new keys are written.
  if (!has_routes(state.phase())) {
    edge_.forget(ref);
  } else {
    edge_.set_phase(ref, state.phase());
    if (wanted_keys(state) > edge_.keys_generation(ref)) edge_.drop_keys(ref);
  }
  {
    std::lock_guard lk(mu_);
    if (!has_routes(state.phase())) {
      if (tenants_.erase(ref) || rendered_.count(ref)) dirty_.insert(ref);
      keys_wanted_.erase(ref);
      keys_pending_.erase(ref);
      keys_drop_.insert(ref);
    } else {
      auto t = checked_route(state);
      auto it = tenants_.find(ref);
      if (it == tenants_.end() || it->second.phase != t.phase || it->second.plan != t.plan ||
          it->second.gateway_url != t.gateway_url || it->second.db_upstream != t.db_upstream ||
          it->second.db_host != t.db_host) {
        tenants_[ref] = t;
        dirty_.insert(ref);
      }
      auto w = keys_wanted_.emplace(ref, -1).first;
      w->second = std::max(w->second, wanted_keys(state));
      if (w->second >= 0 && w->second > edge_.keys_generation(ref)) keys_pending_.insert(ref);
    }
    ++marked_;
  }
  cv_.notify_all();
}

void RouteSync::reload_keys(const std::string& ref) {
  {
    std::lock_guard lk(mu_);
    auto w = keys_wanted_.find(ref);
    if (w == keys_wanted_.end() || w->second < 0) return;
    keys_pending_.insert(ref);
  }
  log()->warn("tenant={} stored JWT secret does not open; loading the keys from the key store",
              ref);
  cv_.notify_all();
}

void RouteSync::run() {
  auto last_flush = SteadyClock::now() - interval_;
  auto keys_retry_at = SteadyClock::now();
  std::unique_lock lk(mu_);
  while (!stop_) {
    const auto now = SteadyClock::now();
    const bool keys_due = (!keys_pending_.empty() && now >= keys_retry_at) || !keys_drop_.empty();
    const bool flush_due = !dirty_.empty() && now >= last_flush + interval_;
    if (!keys_due && !flush_due) {
      if (flushed_ < marked_ && dirty_.empty()) {
        flushed_ = marked_;
        cv_.notify_all();
      }
      auto wake = now + std::chrono::seconds(1);
      if (!dirty_.empty()) wake = std::min(wake, last_flush + interval_);
      if (!keys_pending_.empty()) wake = std::min(wake, keys_retry_at);
      cv_.wait_until(lk, wake);
      continue;
    }
    if (keys_due) {
      auto drop = std::move(keys_drop_);
      keys_drop_.clear();
      std::vector<std::pair<std::string, std::int64_t>> load;
      if (now >= keys_retry_at)
        for (const auto& ref : keys_pending_) load.emplace_back(ref, keys_wanted_[ref]);
      lk.unlock();
      std::set<std::string> failed_drop;
      std::vector<std::string> loaded;
      bool failed = false;
      for (const auto& ref : drop)
        if (!drop_stored_keys(ref)) failed_drop.insert(ref);
      for (const auto& [ref, want] : load) {
        if (auto st = load_keys(ref, want); st) {
          loaded.push_back(ref);
        } else {
          failed = true;
          ++counters_.keys_errors;
          log()->warn("tenant={} keys not loaded (retrying): {}", ref, st.error().message);
        }
      }
      lk.lock();
      for (const auto& ref : failed_drop) keys_drop_.insert(ref);
      for (const auto& ref : loaded)
        if (auto w = keys_wanted_.find(ref);
            w == keys_wanted_.end() || edge_.keys_generation(ref) >= w->second)
          keys_pending_.erase(ref);
      if (failed || !failed_drop.empty())
        keys_retry_at = SteadyClock::now() + std::chrono::seconds(1);
      continue;
    }
    auto refs = std::move(dirty_);
    dirty_.clear();
    const auto marked = marked_;
    lk.unlock();
    flush(refs);
    last_flush = SteadyClock::now();
    lk.lock();
    if (dirty_.empty()) {
      flushed_ = std::max(flushed_, marked);
      cv_.notify_all();
    }
  }
}

void RouteSync::flush(const std::set<std::string>& refs) {
  ++counters_.flushes;
  struct Out {
    std::string ref;
    bool routes{false};
    std::string yaml{};
    TenantJson json{};
  };
  std::vector<Out> out;
  {
    std::lock_guard lk(mu_);
    for (const auto& ref : refs) {
      Out o;
      o.ref = ref;
      if (auto it = tenants_.find(ref); it != tenants_.end())
        o.routes = render_tenant_text(it->second, render_, &o.yaml, &o.json);
      out.push_back(std::move(o));
    }
  }
  std::set<std::string> failed;
  for (const auto& o : out) {
    const auto name = tenant_file(o.ref);
    if (!o.routes) {
      auto r = dir_.remove(name);
      if (r && *r) ++counters_.file_removes;
      if (!r) failed.insert(o.ref), log()->warn("tenant={} {}", o.ref, r.error().message);
    } else {
      auto r = dir_.put(name, o.yaml);
      if (r && *r) ++counters_.file_writes;
      if (!r) failed.insert(o.ref), log()->warn("tenant={} {}", o.ref, r.error().message);
    }
  }
  std::lock_guard lk(mu_);
  for (auto& o : out) {
    if (failed.count(o.ref)) {
      ++counters_.write_errors;
      dirty_.insert(o.ref);  // tried again on the next pass
      continue;
    }
    if (!o.routes)
      rendered_.erase(o.ref);
    else
      rendered_[o.ref] = std::move(o.json);
  }
  ++version_;
}

Status RouteSync::load_keys(const std::string& ref, std::int64_t want) {
  auto stored = keys_.load(ref);
  if (!stored) return stored.error();
  if (!*stored || (*stored)->keys_generation < want)
    return make_error(errc::unavailable,
                      "keys generation " + std::to_string(want) + " not in the key store yet");
  const auto& k = (*stored)->keys;
  EdgeKeys e{(*stored)->keys_generation, secrets::key_hash(k.publishable_key),
             secrets::key_hash(k.secret_key), k.jwt_secret};
  if (auto st = redis_.ensure(); !st) return st.error();
  auto r = redis_.command({"HSET", key_prefix_ + ref, "gen", std::to_string(e.keys_generation),
                           "pub", e.publishable_hash, "sec", e.secret_hash, "jwt",
                           secrets::seal(master_, ref, k.jwt_secret)});
  if (!r) return r.error();
  {
    // A delete seen meanwhile wins: keys of a deleted tenant are not installed.
    std::lock_guard lk(mu_);
    if (!tenants_.count(ref)) return Status::Ok();
  }
  edge_.set_keys(ref, std::move(e));
  ++counters_.keys_loaded;
  return Status::Ok();
}

Status RouteSync::drop_stored_keys(const std::string& ref) {
  if (auto st = redis_.ensure(); !st) return st.error();
  auto r = redis_.command({"DEL", key_prefix_ + ref});
  if (!r) return r.error();
  return Status::Ok();
}

json RouteSync::merged() const {
  std::lock_guard lk(mu_);
  return json::parse(dynamic_json(base_, rendered_));
}

std::shared_ptr<const DynamicSnapshot> RouteSync::snapshot() {
  {
    std::lock_guard lk(mu_);
    if (snapshot_ && snapshot_version_ == version_) return snapshot_;
  }
  std::uint64_t v;
  std::string body;
  {
    std::lock_guard lk(mu_);
    v = version_;
    body = dynamic_json(base_, rendered_);
  }
  auto snap = std::make_shared<DynamicSnapshot>();
  snap->etag = "\"" + secrets::key_hash(body).substr(0, 32) + "\"";
  snap->json = std::move(body);
  std::lock_guard lk(mu_);
  if (v >= snapshot_version_ || snapshot_version_ == ~0ull) {
    snapshot_ = snap;
    snapshot_version_ = v;
  }
  return snap;
}

bool RouteSync::wait_flushed(std::chrono::milliseconds timeout) {
  std::unique_lock lk(mu_);
  const auto target = marked_;
  return cv_.wait_for(lk, timeout, [&] { return flushed_ >= target && dirty_.empty(); });
}

}  // namespace supaplane::router
