#include "route_sync.hpp"

#include <algorithm>
#include <ctime>
#include <future>

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
      for (const auto& [ref, phase] : phases) edge_.set_phase(ref, phase);
      for (auto& [ref, k] : keys) edge_.set_keys(ref, std::move(k));
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
    // Tenants as the projection holds them.
    struct Loaded {
      RouteTenant route;
      std::int64_t want{-1};
    };
    std::vector<Loaded> loaded;
    projection::ListQuery q;
    q.limit = 1000;
    for (;;) {
      auto page = projection.list(redis, q);
      if (!page) return page.error();
      for (const auto& s : page->tenants) {
        if (!has_routes(s.phase())) continue;
        loaded.push_back(Loaded{checked_route(s), wanted_keys(s)});
      }
      if (page->next_after == 0) break;
      q.after = page->next_after;
    }
    // In ref order: the maps below are then built without a search each.
    std::sort(loaded.begin(), loaded.end(),
              [](const Loaded& a, const Loaded& b) { return a.route.ref < b.route.ref; });
    loaded_tenants = SteadyClock::now();
    // Keys as this service stored them: hashes and the sealed JWT secret,
    // read in pipelined batches (one round trip per tenant would cost seconds
    // at 100,000 tenants).
    constexpr std::size_t kBatch = 1000;
    auto read_batch = [&](std::size_t begin, std::size_t end) -> Status {
      for (std::size_t i = begin; i < end; ++i)
        redis.append({"HMGET", key_prefix_ + loaded[i].route.ref, "gen", "pub", "sec", "jwt"});
      // Every reply of the batch is read before any error is returned, so no
      // answer is left in the pipeline for a later command.
      std::vector<Result<projection::Reply>> replies;
      replies.reserve(end - begin);
      for (std::size_t i = begin; i < end; ++i) replies.push_back(redis.get_reply());
      for (const auto& r : replies)
        if (!r) return r.error();
      for (std::size_t i = begin; i < end; ++i) {
        const std::string& ref = loaded[i].route.ref;
        const redisReply* rep = replies[i - begin]->get();
        const std::int64_t want = loaded[i].want;
        edge_.set_phase(ref, loaded[i].route.phase);
        EdgeKeys k;
        // An undecodable entry is as good as none: the keys are loaded again.
        std::optional<std::int64_t> gen;
        if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 4 &&
            rep->element[0]->type == REDIS_REPLY_STRING)
          gen = parse_decimal<std::int64_t>(reply_str(rep->element[0]));
        if (gen) {
          k.keys_generation = *gen;
          k.publishable_hash = reply_str(rep->element[1]);
          k.secret_hash = reply_str(rep->element[2]);
          // Opened by the edge on first use: most tenants' secrets are not
          // needed for a while, and opening 100,000 of them here delays the start.
          k.sealed_jwt_secret = reply_str(rep->element[3]);
        }
        if (!k.sealed_jwt_secret.empty() && k.keys_generation >= want && want >= 0)
          edge_.set_keys(ref, std::move(k));
        else if (want >= 0)
          pending.insert(ref);
      }
      return Status::Ok();
    };
    for (std::size_t b = 0; b < loaded.size(); b += kBatch)
      if (auto st = read_batch(b, std::min(loaded.size(), b + kBatch)); !st) return st;
    loaded_keys = SteadyClock::now();
    // Rendered in two halves at once. Each tenant's YAML is rendered into one
    // reused buffer and only its hash and size kept: the directory's manifest
    // vouches for files by hash, and the bytes of the few files to write are
    // rendered again when the reconcile asks for them.
    struct Part {
      std::vector<WantedFile> files;
      std::vector<TenantJson> json;  ///< one per tenant of the range (empty: no routes)
    };
    auto render_range = [this, &loaded](std::size_t begin, std::size_t end, Part& out) {
      std::string yaml;
      TenantJson scratch;
      out.files.reserve(end - begin);
      out.json.reserve(end - begin);
      for (std::size_t i = begin; i < end; ++i) {
        if (!render_tenant_text(loaded[i].route, render_, &yaml, &scratch)) {
          out.json.emplace_back();
          continue;
        }
        out.files.push_back(WantedFile{tenant_file(loaded[i].route.ref),
                                       TraefikDir::content_hash(yaml), yaml.size()});
        out.json.push_back(scratch);  // a copy of the exact size
      }
    };
    const std::size_t half = loaded.size() / 2;
    Part first, second;
    {
      std::thread other([&] {
        const auto c0 = thread_cpu_ms();
        render_range(half, loaded.size(), second);
        other_cpu_ms += thread_cpu_ms() - c0;
      });
      render_range(0, half, first);
      other.join();
    }
    files.reserve(loaded.size() + 1);
    for (std::size_t i = 0; i < loaded.size(); ++i) {
      auto& j = i < half ? first.json[i] : second.json[i - half];
      const std::string& ref = loaded[i].route.ref;
      if (j.size() > 0) rendered.emplace_hint(rendered.end(), ref, std::move(j));
      wanted.emplace_hint(wanted.end(), ref, loaded[i].want);
      tenants.emplace_hint(tenants.end(), ref, std::move(loaded[i].route));
    }
    loaded.clear();
    loaded.shrink_to_fit();
    for (auto* p : {&first, &second})
      for (auto& f : p->files) files.push_back(std::move(f));
    first = Part{};
    second = Part{};
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
