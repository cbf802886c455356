#pragma once
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "supaplane/core/result.hpp"

namespace supaplane::docker {

using Json = nlohmann::json;

/// An answer of the Engine API (2xx only; other statuses are errors).
struct Response {
  long status{0};
  Json body;  ///< parsed JSON, or null for an empty / non-JSON body
  /// The body as sent when it is not one JSON value (e.g. a pull's stream
  /// of progress objects, one per line); empty otherwise.
  std::string text;
};

/// Docker Engine API over a unix socket. Thread-safe: every call uses its
/// own curl handle (calls are few and the socket is local).
class Client {
 public:
  /// `host`: `unix:///path/to/docker.sock` (the only scheme supported).
  /// `registry_auth_file`: a Docker config.json whose `auths` are used for
  /// pulls (empty = anonymous pulls).
  explicit Client(std::string host, std::string registry_auth_file = {});

  /// Validates the host and reads the API version (`GET /version`).
  /// unavailable when the daemon cannot be reached.
  Status connect();
  const std::string& api_version() const { return version_; }
  /// Whether the last call reached the daemon (any HTTP answer counts).
  bool reachable() const { return reachable_.load(); }
  const std::string& socket_path() const { return socket_; }

  /// One call: `path` starts with `/` and is prefixed by the API version.
  /// Errors carry the HTTP status and Docker's message.
  Result<Response> call(const std::string& method, const std::string& path,
                        const Json* body = nullptr, long timeout_ms = 60'000);

  /// Pulls `image` unless present, waiting for the pull. A pull that fails
  /// names the image and carries Docker's own reason (never the registry
  /// credentials).
  Status ensure_image(const std::string& image);

  /// Whether `image` is in the daemon, without waiting for a pull: when it
  /// is not, its pull starts on a thread of its own (one per image however
  /// many ask, with a client of its own, so it outlives this one safely)
  /// and this answers false until the image is there. A failed pull is
  /// the answer (the error naming the image) for 30 s, so a converge's
  /// retries all see it; the first ask after that pulls again.
  Result<bool> image_ready(const std::string& image);

  /// The `X-Registry-Auth` value for pulling `image`: the credentials the
  /// registry auth file holds for the image's registry (Docker Hub for
  /// images without a registry host), base64url JSON; empty when the file
  /// is unset or has none for that registry. Never logged.
  std::string registry_auth_for(const std::string& image) const;

  /// Streams `/events` with `filters` (Engine API filter JSON), calling
  /// `on_event` for each, until `stop` is set or the stream breaks (then
  /// returns unavailable; the caller reconnects).
  Status stream_events(const Json& filters, const std::function<void(const Json&)>& on_event,
                       const std::atomic<bool>& stop);

  /// Docker's reason in a pull's answer (a stream of progress objects, one
  /// JSON object a line): the first `errorDetail.message` or `error`; empty
  /// when there is none. At most 500 characters.
  static std::string pull_error(const std::string& stream);

  /// `s` with every byte outside [A-Za-z0-9._~-] percent-encoded.
  static std::string url_encode(const std::string& s);

 private:
  Result<Response> raw_call(const std::string& method, const std::string& url,
                            const std::string* body, long timeout_ms,
                            const std::map<std::string, std::string>& headers);
  std::string host_;
  std::string socket_;
  std::string auth_file_;
  std::string version_;
  std::mutex pull_mu_;  ///< one pull at a time per image name is enough
  struct Pulls;
  std::shared_ptr<Pulls> pulls_;  ///< background pulls, shared with their threads
  std::atomic<bool> reachable_{false};
};

}  // namespace supaplane::docker
