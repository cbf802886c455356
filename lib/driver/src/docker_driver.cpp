#include "supaplane/driver/docker_driver.hpp"

#include <sodium.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <set>
#include <thread>

#include "supaplane/core/types.hpp"
#include "supaplane/logging/logging.hpp"

namespace supaplane::driver {

using docker::Json;

namespace {
std::shared_ptr<spdlog::logger> log() {
  static auto l = logging::get("docker_driver");
  return l;
}
constexpr const char* kTenantLabel = "supaplane.tenant";
constexpr const char* kServiceLabel = "supaplane.service";
constexpr const char* kHashLabel = "supaplane.config-hash";
constexpr const char* kManagedLabel = "supaplane.managed";
/// The limits the container was created with (Memory / NanoCpus / PidsLimit
/// of its create body), so observe() can tell a `docker update` without the
/// tenant's plan. Outside the config hash: adding it recreated nothing.
constexpr const char* kLimitsLabel = "supaplane.limits";

/// The limits a HostConfig (a create body's or an inspect's) sets; Docker
/// reports "unlimited" as 0, null or -1 depending on field and version.
Json limits_of(const Json& host) {
  auto get = [&](const char* k) -> std::int64_t {
    const auto it = host.find(k);
    if (it == host.end() || !it->is_number_integer()) return 0;
    return std::max<std::int64_t>(0, it->get<std::int64_t>());
  };
  return Json{
      {"Memory", get("Memory")}, {"NanoCpus", get("NanoCpus")}, {"PidsLimit", get("PidsLimit")}};
}

std::string hash_hex(const std::string& s) {
  unsigned char h[16];
  crypto_generichash(h, sizeof h, reinterpret_cast<const unsigned char*>(s.data()), s.size(),
                     nullptr, 0);
  char hex[33];
  sodium_bin2hex(hex, sizeof hex, h, sizeof h);
  return hex;
}

Json label_filter(const std::string& label) { return Json{{"label", Json::array({label})}}; }

/// "Up 3 seconds (healthy)" → healthy, "(health: starting)" → starting, ...
std::string health_of(const std::string& status_text) {
  if (status_text.find("(healthy)") != std::string::npos) return "healthy";
  if (status_text.find("(unhealthy)") != std::string::npos) return "unhealthy";
  if (status_text.find("(health: starting)") != std::string::npos) return "starting";
  return "none";
}

bool ignorable(const Error& e) { return e.code == errc::not_found; }
}  // namespace

/// One container of a tenant as the daemon lists it.
struct DockerDriver::Seen {
  std::string id;
  std::string state;   ///< created | running | exited | paused | restarting | dead
  std::string health;  ///< healthy | unhealthy | starting | none (no health check)
  std::string hash;
  std::string limits;  ///< the kLimitsLabel value; empty on containers made before it
  /// Its image is being pulled: not created (or not recreated) yet.
  std::string pulling{};
  bool running() const { return state == "running"; }
  /// Running, and healthy if it has a health check.
  bool ready() const { return running() && (health == "healthy" || health == "none"); }
};

DockerDriver::DockerDriver(DockerDriverOptions opts)
    : opts_(std::move(opts)), client_(opts_.docker_host, opts_.registry_auth_file) {}

Status DockerDriver::connect() {
  if (auto st = client_.connect(); !st) return st;
  return ensure_edge_network();
}

bool DockerDriver::on_edge(const std::string& service) const {
  return service == opts_.spec.gateway_service || service == opts_.spec.database_service;
}

Endpoints DockerDriver::endpoints(const std::string& ref) const {
  Endpoints e;
  e.gateway_url = "http://" + container_name(ref, opts_.spec.gateway_service) + ":" +
                  std::to_string(opts_.spec.gateway_port);
  e.db_host = "db." + ref + "." + opts_.base_domain;
  e.db_port = opts_.db_edge_port;
  e.db_name = opts_.spec.database_name;
  auto user = render_template(opts_.spec.database_user, {{"ref", ref}}, "");
  e.db_user = user ? *user : opts_.spec.database_user;
  e.db_schema = "public";
  e.db_upstream = container_name(ref, opts_.spec.database_service) + ":" +
                  std::to_string(opts_.spec.database_port);
  return e;
}

std::map<std::string, std::string> DockerDriver::template_values(const StackRequest& r) const {
  return {{"ref", r.ref},
          {"base_domain", opts_.base_domain},
          {"api_url", "https://" + r.ref + "." + opts_.base_domain},
          {"jwt_secret", r.keys.jwt_secret},
          {"anon_key", r.keys.anon_jwt},
          {"service_role_key", r.keys.service_role_jwt},
          {"db_password", r.db_password},
          {"jwt_issuer", opts_.jwt_issuer},
          {"db_name", opts_.spec.database_name},
          {"stack_network", network_name(r.ref)}};
}

Result<Json> DockerDriver::container_body(const ServiceSpec& svc, const StackRequest& r) const {
  const auto values = template_values(r);
  auto render_list = [&](const std::vector<std::string>& in) -> Result<Json> {
    Json out = Json::array();
    for (const auto& part : in) {
      auto v = render_template(part, values, r.keys.stack_seed);
      if (!v) return v.error();
      out.push_back(*v);
    }
    return out;
  };
  Json body;
  body["Image"] = svc.image;
  if (!svc.command.empty()) {
    auto c = render_list(svc.command);
    if (!c) return c.error();
    body["Cmd"] = *c;
  }
  if (!svc.entrypoint.empty()) {
    auto e = render_list(svc.entrypoint);
    if (!e) return e.error();
    body["Entrypoint"] = *e;
  }
  Json env = Json::array();
  for (const auto& [k, tmpl] : svc.environment) {
    auto v = render_template(tmpl, values, r.keys.stack_seed);
    if (!v)
      return make_error(errc::internal,
                        "service " + svc.name + " environment " + k + ": " + v.error().message);
    env.push_back(k + "=" + *v);
  }
  body["Env"] = env;
  if (!svc.user.empty()) body["User"] = svc.user;
  body["Hostname"] = svc.name;
  if (!svc.healthcheck.test.empty()) {
    constexpr std::int64_t ns = 1'000'000;
    auto test = render_list(svc.healthcheck.test);
    if (!test) return test.error();
    body["Healthcheck"] = {{"Test", *test},
                           {"Interval", svc.healthcheck.interval_ms * ns},
                           {"Timeout", svc.healthcheck.timeout_ms * ns},
                           {"StartPeriod", svc.healthcheck.start_period_ms * ns},
                           {"Retries", svc.healthcheck.retries}};
  }
  Json host;
  host["NetworkMode"] = network_name(r.ref);
  host["CapDrop"] = Json::array({"ALL"});
  host["CapAdd"] = svc.capabilities;
  host["SecurityOpt"] = Json::array({"no-new-privileges:true"});
  host["ReadonlyRootfs"] = svc.read_only;
  host["RestartPolicy"] = {{"Name", "no"}};
  Json tmpfs = Json::object();
  for (const auto& t : svc.tmpfs) tmpfs[t] = "rw,nosuid,nodev,size=64m";
  host["Tmpfs"] = tmpfs;
  const Resources res = opts_.spec.resources_for(svc, r.plan);
  if (res.memory_mb > 0) host["Memory"] = res.memory_mb * 1024 * 1024;
  if (res.cpus > 0) host["NanoCpus"] = static_cast<std::int64_t>(res.cpus * 1e9);
  if (res.pids > 0) host["PidsLimit"] = res.pids;
  Json mounts = Json::array();
  for (const auto& [vol, path] : svc.volumes)
    mounts.push_back({{"Type", "volume"}, {"Source", volume_name(r.ref, vol)}, {"Target", path}});
  host["Mounts"] = mounts;
  body["HostConfig"] = host;
  body["NetworkingConfig"] = {
      {"EndpointsConfig", {{network_name(r.ref), {{"Aliases", Json::array({svc.name})}}}}}};
  // The hash covers everything above, so any change of image, environment
  // (rotated keys), limits (plan) or command recreates the container.
  const std::string hash = hash_hex(body.dump());
  body["Labels"] = {{kTenantLabel, r.ref},
                    {kServiceLabel, svc.name},
                    {kHashLabel, hash},
                    {kLimitsLabel, limits_of(host).dump()},
                    {kManagedLabel, "true"}};
  return body;
}

Status DockerDriver::ensure_edge_network() {
  if (edge_ready_) return Status::Ok();
  auto have = client_.call("GET", "/networks/" + docker::Client::url_encode(opts_.edge_network));
  if (!have) {
    if (have.error().code != errc::not_found) return have.error();
    Json body{{"Name", opts_.edge_network},
              {"Driver", "bridge"},
              {"CheckDuplicate", true},
              {"Labels", {{kManagedLabel, "true"}}}};
    if (auto made = client_.call("POST", "/networks/create", &body);
        !made && made.error().code != errc::conflict)
      return made.error();
  }
  edge_ready_ = true;
  return Status::Ok();
}

Status DockerDriver::ensure_network(const std::string& ref) {
  const std::string name = network_name(ref);
  auto have = client_.call("GET", "/networks/" + name);
  if (have) return Status::Ok();
  if (have.error().code != errc::not_found) return have.error();
  // Internal: the tenant's services reach each other and nothing else; only
  // the edge-attached ones are reachable from Traefik.
  Json body{{"Name", name},
            {"Driver", "bridge"},
            {"Internal", true},
            {"CheckDuplicate", true},
            {"Labels", {{kTenantLabel, ref}, {kManagedLabel, "true"}}}};
  auto made = client_.call("POST", "/networks/create", &body);
  if (!made && made.error().code != errc::conflict) return made.error();
  return Status::Ok();
}

Status DockerDriver::ensure_volumes(const std::string& ref) {
  std::set<std::string> vols;
  for (const auto& s : opts_.spec.services)
    for (const auto& [v, _] : s.volumes) vols.insert(v);
  for (const auto& v : vols) {
    const std::string name = volume_name(ref, v);
    if (client_.call("GET", "/volumes/" + name)) continue;
    Json body{{"Name", name}, {"Labels", {{kTenantLabel, ref}, {kManagedLabel, "true"}}}};
    if (auto made = client_.call("POST", "/volumes/create", &body); !made) return made.error();
  }
  return Status::Ok();
}

Result<std::map<std::string, DockerDriver::Seen>> DockerDriver::list(const std::string& ref) {
  const Json filters = label_filter(std::string(kTenantLabel) + "=" + ref);
  auto r = client_.call(
      "GET", "/containers/json?all=1&filters=" + docker::Client::url_encode(filters.dump()));
  if (!r) return r.error();
  std::map<std::string, Seen> out;
  if (!r->body.is_array()) return out;
  for (const auto& c : r->body) {
    const auto labels = c.value("Labels", Json::object());
    const std::string service = labels.value(kServiceLabel, "");
    if (service.empty()) continue;
    Seen s;
    s.id = c.value("Id", "");
    s.state = c.value("State", "");
    s.health = health_of(c.value("Status", ""));
    s.hash = labels.value(kHashLabel, "");
    s.limits = labels.value(kLimitsLabel, "");
    out[service] = s;
  }
  return out;
}

Result<std::string> DockerDriver::changed_by_hand(const std::string& ref, const ServiceSpec& svc,
                                                  const Seen& s, const Json& want_limits) {
  auto inspect = client_.call("GET", "/containers/" + s.id + "/json");
  if (!inspect) {
    if (ignorable(inspect.error())) return std::string();  // gone meanwhile: "missing" next time
    return inspect.error();
  }
  const Json& c = inspect->body;
  const std::string name = container_name(ref, svc.name);
  std::vector<std::string> what;
  const std::string image = c.value("Config", Json::object()).value("Image", "");
  if (image != svc.image) what.push_back("image " + image + " instead of " + svc.image);
  std::set<std::string> want_nets{network_name(ref)};
  if (on_edge(svc.name)) want_nets.insert(opts_.edge_network);
  std::set<std::string> nets;
  const Json settings = c.value("NetworkSettings", Json::object());
  const auto n = settings.find("Networks");
  if (n != settings.end() && n->is_object())
    for (const auto& [net, _] : n->items()) nets.insert(net);
  for (const auto& net : want_nets)
    if (!nets.count(net)) what.push_back("disconnected from network " + net);
  for (const auto& net : nets)
    if (!want_nets.count(net)) what.push_back("connected to network " + net);
  const Json host = c.value("HostConfig", Json::object());
  if (want_limits.is_object()) {
    const Json have = limits_of(host);
    for (const auto& [field, label] :
         {std::pair{"Memory", "memory limit"}, std::pair{"NanoCpus", "CPU limit (NanoCpus)"},
          std::pair{"PidsLimit", "pids limit"}})
      if (have.value(field, 0LL) != want_limits.value(field, 0LL))
        what.push_back(std::string(label) + " " + std::to_string(have.value(field, 0LL)) +
                       " instead of " + std::to_string(want_limits.value(field, 0LL)));
  }
  const std::string restart =
      host.value("RestartPolicy", Json::object()).value("Name", std::string("no"));
  if (!restart.empty() && restart != "no") what.push_back("restart policy " + restart);
  if (what.empty()) return std::string();
  std::string out = name + " changed by hand:";
  for (std::size_t i = 0; i < what.size(); ++i) out += (i ? ", " : " ") + what[i];
  return out;
}

Status DockerDriver::create_container(const ServiceSpec& svc, const StackRequest& r,
                                      const Json& body) {
  const std::string name = container_name(r.ref, svc.name);
  auto made = client_.call("POST", "/containers/create?name=" + name, &body);
  if (!made) {
    if (made.error().code != errc::conflict) return made.error();
    // A leftover of an interrupted call: replace it.
    (void)client_.call("DELETE", "/containers/" + name + "?force=1");
    made = client_.call("POST", "/containers/create?name=" + name, &body);
    if (!made) return made.error();
  }
  if (on_edge(svc.name)) {
    if (auto st = ensure_edge_network(); !st) return st;
    Json conn{{"Container", name}};
    auto c = client_.call("POST", "/networks/" + opts_.edge_network + "/connect", &conn);
    if (!c && c.error().message.find("already exists") == std::string::npos) return c.error();
  }
  log()->info("created container {} ({})", name, svc.image);
  return Status::Ok();
}

Result<std::map<std::string, DockerDriver::Seen>> DockerDriver::materialize(const StackRequest& r) {
  if (!TenantRef::valid(r.ref)) return make_error(errc::invalid_argument, "bad tenant ref", "ref");
  if (auto st = ensure_network(r.ref); !st) return st.error();
  if (auto st = ensure_volumes(r.ref); !st) return st.error();
  auto seen = list(r.ref);
  if (!seen) return seen.error();
  // Containers of services the spec no longer has.
  for (auto it = seen->begin(); it != seen->end();) {
    if (opts_.spec.find(it->first)) {
      ++it;
      continue;
    }
    if (auto d = client_.call("DELETE", "/containers/" + it->second.id + "?force=1");
        !d && !ignorable(d.error()))
      return d.error();
    it = seen->erase(it);
  }
  // Create what is missing, recreate what changed.
  for (const auto& svc : opts_.spec.services) {
    auto body = container_body(svc, r);
    if (!body) return body.error();
    const std::string hash = (*body)["Labels"][kHashLabel];
    auto it = seen->find(svc.name);
    std::string why = "configuration changed";
    if (it != seen->end() && it->second.hash == hash) {
      // Same configuration as rendered; what `docker update` / `docker
      // network disconnect` change is not in the hash: compare it too (the
      // same comparison observe() reports as drift, so a repair settles it).
      {
        std::lock_guard lk(verified_mu_);
        if (verified_.count(it->second.id)) continue;
      }
      auto changed = changed_by_hand(r.ref, svc, it->second, limits_of((*body)["HostConfig"]));
      if (!changed) return changed.error();
      if (changed->empty()) {
        std::lock_guard lk(verified_mu_);
        verified_.insert(it->second.id);
        continue;
      }
      why = *changed;
    }
    // A missing image is pulled in the background; until it is there the
    // service waits (an old container of it stays as it is), and the other
    // services go on.
    auto image = client_.image_ready(svc.image);
    if (!image) return image.error();
    if (!*image) {
      if (it == seen->end()) it = seen->emplace(svc.name, Seen{"", "", "none", "", ""}).first;
      it->second.pulling = svc.image;
      continue;
    }
    if (it != seen->end()) {
      log()->info("recreating {} ({})", container_name(r.ref, svc.name), why);
      {
        std::lock_guard lk(verified_mu_);
        verified_.erase(it->second.id);
      }
      if (auto d = client_.call("DELETE", "/containers/" + it->second.id + "?force=1");
          !d && !ignorable(d.error()))
        return d.error();
      seen->erase(it);
    }
    if (auto st = create_container(svc, r, *body); !st) return st.error();
    (*seen)[svc.name] = Seen{container_name(r.ref, svc.name), "created", "none", hash,
                             (*body)["Labels"][kLimitsLabel]};
  }
  return seen;
}

Result<Progress> DockerDriver::provision(const StackRequest& r) {
  auto seen = materialize(r);
  if (!seen) return seen.error();
  // Start, in dependency order, what may start now: every service whose
  // dependencies hold is started in this step, side by side (each start is
  // a runc + network set-up: hundreds of milliseconds).
  Progress p;
  p.done = true;
  std::vector<std::string> to_start;
  // Healthy, and its on_healthy command (if any) succeeded in this container:
  // what a dependent waiting for `healthy` needs (dependencies come first).
  std::set<std::string> healthy;
  for (const auto& svc : opts_.spec.services) {
    const Seen& s = (*seen)[svc.name];
    std::string waiting;
    if (!svc.on_healthy.exec.empty() && s.pulling.empty()) {
      if (!s.running()) {
        forget_on_healthy(r.ref, svc.name);  // runs again once started and healthy
      } else if (s.ready()) {
        auto hook = on_healthy_step(r.ref, svc, s.id);
        if (!hook) return hook.error();
        waiting = *hook;
      }
    }
    if (s.ready() && s.pulling.empty() && waiting.empty()) healthy.insert(svc.name);
    if (!s.pulling.empty()) {
      waiting = svc.name + " waits for its image " + s.pulling + " (pulling)";
    } else if (!s.running()) {
      for (const auto& [dep, cond] : svc.depends_on) {
        const Seen& d = (*seen)[dep];
        const bool ok =
            cond == "healthy" ? healthy.count(dep) > 0 : d.running() && d.pulling.empty();
        if (!ok) {
          waiting = svc.name + " waits for " + dep + " to be " + cond;
          break;
        }
      }
      if (waiting.empty()) {
        to_start.push_back(container_name(r.ref, svc.name));
        waiting = svc.name + " starting";
      }
    } else if (!s.ready()) {
      waiting = svc.name + (s.health == "unhealthy" ? " unhealthy" : " not healthy yet");
    }
    if (!waiting.empty() && p.done) {
      p.done = false;
      p.waiting_on = waiting;
    }
    if (!svc.health_name.empty()) {
      ServiceHealth h{svc.health_name, v1::SERVICE_HEALTH_STATUS_COMING_UP, ""};
      if (s.ready()) h.status = v1::SERVICE_HEALTH_STATUS_ACTIVE_HEALTHY;
      if (s.running() && s.health == "unhealthy") {
        h.status = v1::SERVICE_HEALTH_STATUS_UNHEALTHY;
        h.error = "health check failing";
      }
      p.health.push_back(h);
    }
  }
  std::vector<std::future<Result<docker::Response>>> starts;
  for (const auto& name : to_start)
    starts.push_back(std::async(std::launch::async, [this, name] {
      return client_.call("POST", "/containers/" + name + "/start");
    }));
  Status failed = Status::Ok();
  for (std::size_t i = 0; i < starts.size(); ++i) {
    auto st = starts[i].get();
    if (!st && failed)
      failed = make_error(st.error().code == errc::unavailable ? errc::unavailable : errc::internal,
                          "starting " + to_start[i] + ": " + st.error().message);
  }
  if (!failed) return failed.error();
  return p;
}

Status DockerDriver::pause(const StackRequest& r) {
  // What is missing is created (stopped), so a resume only starts it.
  auto seen = materialize(r);
  if (!seen) return seen.error();
  // Dependents first, so nothing runs against a stopped dependency: in
  // waves, each stopping side by side every running service that no running
  // service depends on (a stop may take its whole grace period).
  std::set<std::string> left;
  for (const auto& [service, s] : *seen)
    if (!s.id.empty() && (s.running() || s.state == "restarting")) left.insert(service);
  while (!left.empty()) {
    std::vector<std::string> wave;
    for (const auto& name : left) {
      const bool needed = std::any_of(left.begin(), left.end(), [&](const std::string& other) {
        const auto* o = opts_.spec.find(other);
        return o && o->depends_on.count(name) > 0;
      });
      if (!needed) wave.push_back(name);
    }
    if (wave.empty()) wave.assign(left.begin(), left.end());  // a cycle: the spec refuses them
    std::vector<std::future<Result<docker::Response>>> stops;
    for (const auto& name : wave)
      stops.push_back(std::async(std::launch::async, [this, id = (*seen)[name].id] {
        return client_.call("POST", "/containers/" + id + "/stop?t=10", nullptr, 60'000);
      }));
    Status failed = Status::Ok();
    for (auto& f : stops)
      if (auto st = f.get(); !st && !ignorable(st.error()) && failed) failed = st.error();
    if (!failed) return failed;
    for (const auto& name : wave) left.erase(name);
  }
  return Status::Ok();
}

Status DockerDriver::remove(const std::string& ref) {
  if (!TenantRef::valid(ref)) return make_error(errc::invalid_argument, "bad tenant ref", "ref");
  forget_on_healthy(ref);
  auto seen = list(ref);
  if (!seen) return seen.error();
  for (const auto& [service, s] : *seen) {
    auto d = client_.call("DELETE", "/containers/" + s.id + "?force=1&v=1");
    if (!d && !ignorable(d.error())) return d.error();
    std::lock_guard lk(verified_mu_);
    verified_.erase(s.id);
  }
  if (auto d = client_.call("DELETE", "/networks/" + network_name(ref));
      !d && !ignorable(d.error()))
    return d.error();
  const Json filters = label_filter(std::string(kTenantLabel) + "=" + ref);
  auto vols = client_.call("GET", "/volumes?filters=" + docker::Client::url_encode(filters.dump()));
  if (!vols) return vols.error();
  if (vols->body.is_object() && vols->body["Volumes"].is_array()) {
    for (const auto& v : vols->body["Volumes"]) {
      auto d = client_.call("DELETE", "/volumes/" + v.value("Name", ""));
      if (!d && !ignorable(d.error())) return d.error();
    }
  }
  return Status::Ok();
}

Result<StackStatus> DockerDriver::observe(const std::string& ref, bool want_running) {
  if (!TenantRef::valid(ref)) return make_error(errc::invalid_argument, "bad tenant ref", "ref");
  StackStatus st;
  auto net = client_.call("GET", "/networks/" + network_name(ref));
  if (!net && !ignorable(net.error())) return net.error();
  auto seen = list(ref);
  if (!seen) return seen.error();
  st.exists = net.ok() || !seen->empty();
  st.accepting_connections = true;
  for (const auto& svc : opts_.spec.services) {
    const std::string name = container_name(ref, svc.name);
    auto it = seen->find(svc.name);
    std::string drift;
    if (it == seen->end()) {
      drift = name + " missing";
      st.accepting_connections = false;
    } else {
      if (!it->second.running()) st.accepting_connections = false;
      if (it->second.hash.empty())
        drift = name + " changed outside supaplane";
      else if (want_running && !it->second.running())
        drift = name + " is " + it->second.state + " while ACTIVE";
      else if (!want_running && it->second.running())
        drift = name + " runs while PAUSED";
      if (drift.empty() && st.drift.empty() && !it->second.hash.empty()) {
        // What the list does not show (networks, limits, image): one inspect
        // per container, only until the first drift (one reason is enough
        // for the event; the repair recreates whatever else differs).
        // Containers made before the limits label have their limits
        // compared at the next converge instead.
        Json want =
            it->second.limits.empty() ? Json() : Json::parse(it->second.limits, nullptr, false);
        if (want.is_discarded()) want = Json();
        auto changed = changed_by_hand(ref, svc, it->second, want);
        if (!changed) return changed.error();
        drift = *changed;
        if (!drift.empty()) {
          std::lock_guard lk(verified_mu_);
          verified_.erase(it->second.id);
        }
      }
    }
    if (!drift.empty() && st.drift.empty()) st.drift = drift;
    if (want_running && !svc.health_name.empty()) {
      ServiceHealth h{svc.health_name, v1::SERVICE_HEALTH_STATUS_UNHEALTHY, "not running"};
      if (it != seen->end() && it->second.ready()) {
        h.status = v1::SERVICE_HEALTH_STATUS_ACTIVE_HEALTHY;
        h.error.clear();
      } else if (it != seen->end() && it->second.running() && it->second.health == "starting") {
        h.status = v1::SERVICE_HEALTH_STATUS_COMING_UP;
        h.error.clear();
      } else if (it != seen->end() && it->second.running()) {
        h.error = "health check failing";
      }
      st.health.push_back(h);
    }
  }
  if (!net.ok() && st.drift.empty()) st.drift = network_name(ref) + " network missing";
  return st;
}

void DockerDriver::watch(const std::function<void(const std::string&)>& on_change,
                         const std::atomic<bool>& stop) {
  // Only the state changes a converge or the drift check acts on. Without
  // the `event` filter every health check's exec_create / exec_start /
  // exec_die reached us (three per check per container), and each made a
  // re-check of the tenant: with 20 stacks starting at once that kept the
  // daemon busy answering us instead of running the checks.
  // ("health_status" matches "health_status: healthy" and the rest;
  // "update" is a `docker update` of limits, drift. A network disconnect is
  // a network event without the tenant's label: the periodic resync finds it.)
  const Json filters{{"type", Json::array({"container"})},
                     {"label", Json::array({std::string(kManagedLabel) + "=true"})},
                     {"event", Json::array({"start", "die", "stop", "destroy", "oom", "pause",
                                            "unpause", "update", "health_status"})}};
  int delay_ms = 100;
  while (!stop) {
    auto st = client_.stream_events(
        filters,
        [&](const Json& ev) {
          delay_ms = 100;
          const auto attrs = ev.value("Actor", Json::object()).value("Attributes", Json::object());
          const std::string ref = attrs.value(kTenantLabel, "");
          if (TenantRef::valid(ref)) on_change(ref);
        },
        stop);
    if (stop) return;
    (void)client_.call("GET", "/_ping", nullptr, 2'000);  // keeps reachable() current
    log()->warn("docker events: {}; reconnecting in {} ms",
                st ? "stream closed" : st.error().message, delay_ms);
    for (int w = 0; w < delay_ms && !stop; w += 20)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    delay_ms = std::min(delay_ms * 2, 5'000);
  }
}

}  // namespace supaplane::driver
