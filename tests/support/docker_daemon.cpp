#include "docker_daemon.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <thread>

#include "supaplane/docker/client.hpp"

namespace supaplane::testenv {

namespace fs = std::filesystem;

DockerDaemon::DockerDaemon(std::string pool)
    : pool_(std::move(pool)), socket_(dir_.path() + "/docker.sock") {}

DockerDaemon::~DockerDaemon() { stop(); }

std::string docker_unavailable_reason() {
  if (!fs::exists("/usr/sbin/dockerd") && !fs::exists("/usr/bin/dockerd"))
    return "dockerd is not installed (apt-get install docker.io)";
  if (::geteuid() != 0) return "dockerd needs root";
  return "";
}

void DockerDaemon::start() {
  fs::create_directories(dir_.path() + "/data");
  fs::create_directories(dir_.path() + "/exec");
  proc_.start(
      {"dockerd", "--data-root", dir_.path() + "/data", "--exec-root", dir_.path() + "/exec", "-H",
       host(), "--pidfile", dir_.path() + "/docker.pid", "--bridge=none", "--default-address-pool",
       "base=" + pool_ + ",size=24", "--log-level", "warn"},
      dir_.path() + "/dockerd.log");
  docker::Client c(host());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    if (fs::exists(socket_) && c.connect()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  throw std::runtime_error("dockerd did not start; see " + dir_.path() + "/dockerd.log");
}

void DockerDaemon::stop() {
  if (!proc_.running()) return;
  docker::Client c(host());
  if (c.connect()) {
    if (auto list = c.call("GET", "/containers/json?all=1"); list && list->body.is_array())
      for (const auto& ct : list->body)
        (void)c.call("DELETE", "/containers/" + ct.value("Id", "") + "?force=1&v=1");
  }
  stop_keep();
}

void DockerDaemon::stop_keep() { proc_.stop(); }

int DockerDaemon::run(const std::string& shell_command) const {
  const std::string cmd = "DOCKER_HOST=" + host() + " " + shell_command;
  return std::system(cmd.c_str());
}

void DockerDaemon::build_test_images(const std::string& standin_binary) const {
  const std::string script = std::string(SUPAPLANE_SOURCE_DIR) + "/scripts/docker-test-images";
  if (run(script + " " + standin_binary + " >/dev/null") != 0)
    throw std::runtime_error("scripts/docker-test-images failed");
}

}  // namespace supaplane::testenv
