// The docker driver's on_healthy commands: an Engine API exec started in a
// healthy container and read back by a later converge step, so no worker
// waits for it (the provisioner comes back on the daemon's events and its
// poll of starting stacks).
#include "supaplane/driver/docker_driver.hpp"
#include "supaplane/logging/logging.hpp"

namespace supaplane::driver {

using docker::Json;

namespace {
std::shared_ptr<spdlog::logger> log() {
  static auto l = logging::get("docker_driver");
  return l;
}

/// An Engine API failure, naming the service (its code kept: an absent
/// daemon stays `unavailable`).
Error api_error(const std::string& service, const Error& e) {
  return make_error(e.code, "service " + service + ": on_healthy: " + e.message);
}
}  // namespace

Result<std::string> DockerDriver::on_healthy_step(const std::string& ref, const ServiceSpec& svc,
                                                  const std::string& container_id) {
  const std::string name = container_name(ref, svc.name);
  std::unique_lock lk(hooks_mu_);
  HookRun& run = hooks_[{ref, svc.name}];
  if (run.container != container_id) run = HookRun{container_id, "", false, ""};
  if (run.done) return std::string();
  const std::string waiting =
      svc.name + " on_healthy running" +
      (run.last_error.empty() ? std::string() : " (the last run " + run.last_error + ")");
  if (run.exec.empty()) {
    lk.unlock();
    // The command inherits the container's environment and user; its
    // arguments are never templates (the spec refuses them), so no secret
    // is in what the daemon shows of it.
    const Json body{{"Cmd", svc.on_healthy.exec},
                    {"AttachStdin", false},
                    {"AttachStdout", false},
                    {"AttachStderr", false}};
    auto made = client_.call("POST", "/containers/" + container_id + "/exec", &body);
    if (!made) return api_error(svc.name, made.error());
    const std::string exec_id = made->body.is_object() ? made->body.value("Id", "") : "";
    if (exec_id.empty())
      return make_error(errc::internal, "service " + svc.name + ": on_healthy: no exec id");
    const Json start{{"Detach", true}, {"Tty", false}};
    if (auto st = client_.call("POST", "/exec/" + exec_id + "/start", &start); !st)
      return api_error(svc.name, st.error());
    lk.lock();
    HookRun& now = hooks_[{ref, svc.name}];
    if (now.container == container_id) now.exec = exec_id;
    log()->info("{}: on_healthy started", name);
    return waiting;
  }
  const std::string exec_id = run.exec;
  lk.unlock();
  auto st = client_.call("GET", "/exec/" + exec_id + "/json");
  std::string failure;
  if (!st) {
    if (st.error().code != errc::not_found) return api_error(svc.name, st.error());
    failure = "was lost by the daemon";
  } else {
    const Json& b = st->body;
    if (b.is_object() && b.value("Running", false)) return waiting;
    const auto code = b.is_object() ? b.find("ExitCode") : b.end();
    if (code == b.end() || !code->is_number_integer())
      failure = "did not start";
    else if (code->get<int>() != 0)
      failure = "exited with code " + std::to_string(code->get<int>());
  }
  lk.lock();
  HookRun& now = hooks_[{ref, svc.name}];
  if (now.container != container_id || now.exec != exec_id) return waiting;  // raced: look again
  now.exec.clear();
  if (failure.empty()) {
    now.done = true;
    now.last_error.clear();
    counters_.on_healthy_runs++;
    log()->info("{}: on_healthy succeeded", name);
    return std::string();
  }
  now.last_error = failure;
  counters_.on_healthy_failures++;
  log()->warn("{}: on_healthy {}; it runs again at the next step", name, failure);
  return make_error(errc::internal, "service " + svc.name + ": on_healthy command " + failure);
}

void DockerDriver::forget_on_healthy(const std::string& ref, const std::string& service) {
  std::lock_guard lk(hooks_mu_);
  hooks_.erase({ref, service});
}

void DockerDriver::forget_on_healthy(const std::string& ref) {
  std::lock_guard lk(hooks_mu_);
  for (auto it = hooks_.lower_bound({ref, ""}); it != hooks_.end() && it->first.first == ref;)
    it = hooks_.erase(it);
}

}  // namespace supaplane::driver
