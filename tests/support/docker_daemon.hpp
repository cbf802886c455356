#pragma once
// A throwaway dockerd for the docker driver's tests: its own data root, exec
// root and socket in a temp dir, no default bridge, its own address pool;
// stopped (containers removed first) at the end.
#include <string>

#include "servers.hpp"

namespace supaplane::testenv {

class DockerDaemon {
 public:
  /// `pool`: the address pool of its networks (e.g. "172.30.0.0/16").
  explicit DockerDaemon(std::string pool = "172.30.0.0/16");
  ~DockerDaemon();
  /// Starts dockerd and waits until it answers /_ping (throws otherwise).
  void start();
  /// Removes every container, then SIGTERM and wait.
  void stop();
  /// SIGTERM and wait, leaving containers as dockerd leaves them.
  void stop_keep();
  std::string host() const { return "unix://" + socket_; }
  const std::string& socket() const { return socket_; }
  /// Builds the test images (scripts/docker-test-images) into this daemon.
  void build_test_images(const std::string& standin_binary) const;
  /// Runs a command with DOCKER_HOST pointing here; returns its exit code.
  int run(const std::string& shell_command) const;

 private:
  std::string pool_;
  TempDir dir_{"spd"};
  std::string socket_;
  Process proc_;
};

/// Why the docker tests cannot run here ("" when they can): dockerd missing.
std::string docker_unavailable_reason();

}  // namespace supaplane::testenv
