#include "supaplane/docker/client.hpp"

#include <curl/curl.h>
#include <sodium.h>

#include <cctype>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <thread>

#include "supaplane/logging/logging.hpp"

namespace supaplane::docker {

namespace {
std::shared_ptr<spdlog::logger> log() {
  static auto l = logging::get("docker");
  return l;
}

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

size_t append_body(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

errc status_errc(long status) {
  if (status == 404) return errc::not_found;
  if (status == 409) return errc::conflict;
  if (status == 400) return errc::invalid_argument;
  if (status == 401 || status == 403) return errc::permission_denied;
  return errc::internal;
}

std::string base64url(const std::string& s) {
  std::string out(sodium_base64_ENCODED_LEN(s.size(), sodium_base64_VARIANT_URLSAFE), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(s.data()),
                    s.size(), sodium_base64_VARIANT_URLSAFE);
  out.resize(std::strlen(out.c_str()));
  return out;
}

/// "registry.example.com/org/img:tag" → "registry.example.com"; Docker Hub
/// images (no host part) → "https://index.docker.io/v1/" as config.json keys it.
std::string registry_of(const std::string& image) {
  const auto slash = image.find('/');
  if (slash != std::string::npos) {
    const std::string first = image.substr(0, slash);
    if (first.find('.') != std::string::npos || first.find(':') != std::string::npos ||
        first == "localhost")
      return first;
  }
  return "https://index.docker.io/v1/";
}

/// An image reference in a URL path: `/`, `:` and `@` kept (the Engine
/// API's image routes take them as they are), the rest percent-encoded.
std::string image_path(const std::string& image) {
  std::string out;
  for (std::size_t i = 0; i < image.size();) {
    const auto next = image.find_first_of("/:@", i);
    out += Client::url_encode(image.substr(i, next - i));
    if (next == std::string::npos) break;
    out += image[next];
    i = next + 1;
  }
  return out;
}

/// name and tag of an image reference (digests keep their `@` form in name).
std::pair<std::string, std::string> split_image(const std::string& image) {
  if (image.find('@') != std::string::npos) return {image, ""};
  const auto colon = image.rfind(':');
  const auto slash = image.rfind('/');
  if (colon != std::string::npos && (slash == std::string::npos || colon > slash))
    return {image.substr(0, colon), image.substr(colon + 1)};
  return {image, "latest"};
}
}  // namespace

Client::Client(std::string host, std::string registry_auth_file)
    : host_(std::move(host)),
      auth_file_(std::move(registry_auth_file)),
      pulls_(std::make_shared<Pulls>()) {
  static const bool curl_ready = [] {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return true;
  }();
  (void)curl_ready;
  static const bool sodium_ready = sodium_init() >= 0;
  (void)sodium_ready;
  constexpr std::string_view kUnix = "unix://";
  if (host_.compare(0, kUnix.size(), kUnix) == 0) socket_ = host_.substr(kUnix.size());
}

std::string Client::url_encode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

Status Client::connect() {
  if (socket_.empty())
    return make_error(
        errc::invalid_argument,
        "SUPAPLANE_DOCKER_HOST must be unix:///path/to/docker.sock, not '" + host_ + "'",
        "docker_host");
  auto r = raw_call("GET", "/version", nullptr, 10'000, {});
  if (!r) return r.error();
  const std::string v = r->body.is_object() ? r->body.value("ApiVersion", "") : "";
  if (v.empty()) return make_error(errc::internal, "docker: /version has no ApiVersion");
  version_ = "v" + v;
  log()->info("docker daemon at {}: API {}", socket_, version_);
  return Status::Ok();
}

Result<Response> Client::call(const std::string& method, const std::string& path, const Json* body,
                              long timeout_ms) {
  if (version_.empty()) {
    if (auto st = connect(); !st) return st.error();
  }
  std::string text;
  if (body) text = body->dump();
  return raw_call(method, "/" + version_ + path, body ? &text : nullptr, timeout_ms,
                  body ? std::map<std::string, std::string>{{"Content-Type", "application/json"}}
                       : std::map<std::string, std::string>{});
}

Result<Response> Client::raw_call(const std::string& method, const std::string& url,
                                  const std::string* body, long timeout_ms,
                                  const std::map<std::string, std::string>& headers) {
  std::unique_ptr<CURL, CurlDeleter> c(curl_easy_init());
  if (!c) return make_error(errc::internal, "docker: curl_easy_init failed");
  std::string out;
  const std::string full = "http://docker" + url;
  curl_easy_setopt(c.get(), CURLOPT_UNIX_SOCKET_PATH, socket_.c_str());
  curl_easy_setopt(c.get(), CURLOPT_URL, full.c_str());
  curl_easy_setopt(c.get(), CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, append_body);
  curl_easy_setopt(c.get(), CURLOPT_WRITEDATA, &out);
  curl_easy_setopt(c.get(), CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(c.get(), CURLOPT_CONNECTTIMEOUT_MS, 5'000L);
  curl_easy_setopt(c.get(), CURLOPT_NOSIGNAL, 1L);
  std::unique_ptr<curl_slist, SlistDeleter> hdrs;
  for (const auto& [k, v] : headers)
    hdrs.reset(curl_slist_append(hdrs.release(), (k + ": " + v).c_str()));
  if (body) {
    curl_easy_setopt(c.get(), CURLOPT_POSTFIELDS, body->data());
    curl_easy_setopt(c.get(), CURLOPT_POSTFIELDSIZE, static_cast<long>(body->size()));
  } else if (method == "POST") {
    curl_easy_setopt(c.get(), CURLOPT_POSTFIELDSIZE, 0L);
    curl_easy_setopt(c.get(), CURLOPT_POSTFIELDS, "");
  }
  if (hdrs) curl_easy_setopt(c.get(), CURLOPT_HTTPHEADER, hdrs.get());
  const CURLcode rc = curl_easy_perform(c.get());
  // A timeout is an answer that did not come in time, not a daemon gone.
  if (rc != CURLE_OPERATION_TIMEDOUT) reachable_ = rc == CURLE_OK;
  if (rc != CURLE_OK)
    return make_error(errc::unavailable, "docker daemon at " + socket_ + " unreachable (" + method +
                                             " " + url + "): " + curl_easy_strerror(rc));
  long status = 0;
  curl_easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &status);
  Response r;
  r.status = status;
  r.body = Json::parse(out, nullptr, false);
  if (r.body.is_discarded()) {
    r.body = Json();
    r.text = std::move(out);
  }
  // 304: the container already is in the state asked for (start / stop).
  if ((status >= 200 && status < 300) || status == 304) return r;
  std::string msg = r.body.is_object() ? r.body.value("message", "") : "";
  if (msg.empty()) msg = r.text.substr(0, 200);
  return make_error(status_errc(status),
                    "docker " + method + " " + url + ": " + std::to_string(status) + " " + msg);
}

std::string Client::registry_auth_for(const std::string& image) const {
  if (auth_file_.empty()) return {};
  std::ifstream in(auth_file_);
  if (!in) return {};
  std::stringstream ss;
  ss << in.rdbuf();
  const auto cfg = Json::parse(ss.str(), nullptr, false);
  if (!cfg.is_object() || !cfg.contains("auths") || !cfg["auths"].is_object()) return {};
  const std::string registry = registry_of(image);
  const auto& auths = cfg["auths"];
  if (!auths.contains(registry) || !auths[registry].is_object()) return {};
  const std::string encoded = auths[registry].value("auth", "");
  std::string decoded(encoded.size(), '\0');
  size_t len = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(decoded.data()), decoded.size(),
                        encoded.data(), encoded.size(), nullptr, &len, nullptr,
                        sodium_base64_VARIANT_ORIGINAL) != 0)
    return {};
  decoded.resize(len);
  const auto colon = decoded.find(':');
  if (colon == std::string::npos) return {};
  Json a{{"username", decoded.substr(0, colon)},
         {"password", decoded.substr(colon + 1)},
         {"serveraddress", registry}};
  return base64url(a.dump());
}

std::string Client::pull_error(const std::string& stream) {
  std::istringstream in(stream);
  for (std::string line; std::getline(in, line);) {
    const auto j = Json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) continue;
    const auto text = [](const Json& o, const char* key) {
      const auto it = o.find(key);
      return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    const auto detail = j.find("errorDetail");
    std::string msg = detail != j.end() && detail->is_object() ? text(*detail, "message") : "";
    if (msg.empty()) msg = text(j, "error");
    if (!msg.empty()) return msg.substr(0, 500);
  }
  return {};
}

Status Client::ensure_image(const std::string& image) {
  if (auto have = call("GET", "/images/" + image_path(image) + "/json"); have)
    return Status::Ok();
  else if (have.error().code != errc::not_found)
    return have.error();
  std::lock_guard lk(pull_mu_);
  if (auto have = call("GET", "/images/" + image_path(image) + "/json"); have) return Status::Ok();
  if (version_.empty()) {
    if (auto st = connect(); !st) return st;
  }
  const auto [name, tag] = split_image(image);
  std::string url = "/" + version_ + "/images/create?fromImage=" + url_encode(name);
  if (!tag.empty()) url += "&tag=" + url_encode(tag);
  std::map<std::string, std::string> headers;
  if (auto auth = registry_auth_for(image); !auth.empty()) headers["X-Registry-Auth"] = auth;
  log()->info("pulling image {}", image);
  auto r = raw_call("POST", url, nullptr, 30 * 60'000L, headers);
  if (!r) {
    if (r.error().code == errc::unavailable) return r.error();
    return make_error(errc::internal, "image " + image + " cannot be pulled: " + r.error().message);
  }
  // The answer is a stream of progress objects; a failure is one of them.
  if (auto have = call("GET", "/images/" + image_path(image) + "/json"); !have) {
    const std::string why = pull_error(r->body.is_null() ? r->text : r->body.dump());
    return make_error(errc::internal,
                      "image " + image + " cannot be pulled: " +
                          (why.empty() ? std::string("not present after the pull") : why));
  }
  return Status::Ok();
}

struct Client::Pulls {
  std::mutex mu;
  std::set<std::string> running;
  struct Failure {
    Error error;
    std::chrono::steady_clock::time_point at;
  };
  std::map<std::string, Failure> failed;
};

namespace {
/// How long a failed pull is the answer for its image: long enough for a
/// converge's retries to see the same failure (and give up on it), short
/// enough that a fixed registry is tried again soon.
constexpr auto kPullFailureHeld = std::chrono::seconds(30);
}  // namespace

Result<bool> Client::image_ready(const std::string& image) {
  {
    std::lock_guard lk(pulls_->mu);
    if (auto f = pulls_->failed.find(image); f != pulls_->failed.end()) {
      if (std::chrono::steady_clock::now() - f->second.at < kPullFailureHeld)
        return f->second.error;
      pulls_->failed.erase(f);
    }
    if (pulls_->running.count(image)) return false;
  }
  auto have = call("GET", "/images/" + image_path(image) + "/json");
  if (have) return true;
  if (have.error().code != errc::not_found) return have.error();
  std::lock_guard lk(pulls_->mu);
  if (!pulls_->running.insert(image).second) return false;
  std::thread([pulls = pulls_, host = host_, auth = auth_file_, image] {
    Client own(host, auth);
    auto st = own.ensure_image(image);
    std::lock_guard lk(pulls->mu);
    pulls->running.erase(image);
    if (!st)
      pulls->failed.insert_or_assign(image,
                                     Pulls::Failure{st.error(), std::chrono::steady_clock::now()});
  }).detach();
  return false;
}

namespace {
struct EventSink {
  std::string buffer;
  const std::function<void(const Json&)>* on_event;
  const std::atomic<bool>* stop;
};
size_t event_bytes(char* data, size_t size, size_t n, void* p) {
  auto* s = static_cast<EventSink*>(p);
  s->buffer.append(data, size * n);
  for (auto nl = s->buffer.find('\n'); nl != std::string::npos; nl = s->buffer.find('\n')) {
    const auto j = Json::parse(s->buffer.substr(0, nl), nullptr, false);
    s->buffer.erase(0, nl + 1);
    if (!j.is_discarded() && j.is_object()) (*s->on_event)(j);
  }
  return size * n;
}
int event_progress(void* p, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return static_cast<EventSink*>(p)->stop->load() ? 1 : 0;  // non-zero aborts
}
}  // namespace

Status Client::stream_events(const Json& filters, const std::function<void(const Json&)>& on_event,
                             const std::atomic<bool>& stop) {
  if (version_.empty()) {
    if (auto st = connect(); !st) return st;
  }
  std::unique_ptr<CURL, CurlDeleter> c(curl_easy_init());
  if (!c) return make_error(errc::internal, "docker: curl_easy_init failed");
  EventSink sink{{}, &on_event, &stop};
  const std::string full =
      "http://docker/" + version_ + "/events?filters=" + url_encode(filters.dump());
  curl_easy_setopt(c.get(), CURLOPT_UNIX_SOCKET_PATH, socket_.c_str());
  curl_easy_setopt(c.get(), CURLOPT_URL, full.c_str());
  curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, event_bytes);
  curl_easy_setopt(c.get(), CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(c.get(), CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c.get(), CURLOPT_XFERINFOFUNCTION, event_progress);
  curl_easy_setopt(c.get(), CURLOPT_XFERINFODATA, &sink);
  curl_easy_setopt(c.get(), CURLOPT_CONNECTTIMEOUT_MS, 5'000L);
  curl_easy_setopt(c.get(), CURLOPT_NOSIGNAL, 1L);
  const CURLcode rc = curl_easy_perform(c.get());
  if (stop) return Status::Ok();
  return make_error(errc::unavailable,
                    std::string("docker event stream ended: ") + curl_easy_strerror(rc));
}

}  // namespace supaplane::docker
