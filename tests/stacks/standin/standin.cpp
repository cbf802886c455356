// sp-standin: a tiny static program that stands in for a Supabase service in
// the docker driver's tests (tests/stacks/test-stack.yaml). Linked statically
// into a FROM-scratch style image by scripts/docker-test-images, so nothing is
// pulled.
//
//   sp-standin serve   HTTP on $PORT (default 8000). GET /health answers 200
//                      once $STARTUP_DELAY_MS has passed. With $JWT_SECRET and
//                      REQUIRE_JWT=1 (the gateway stand-in), every other request
//                      needs `Authorization: Bearer <HS256 JWT>` signed with
//                      that secret, else 401. Answers
//                      {"service":$SERVICE,"ref":$TENANT_REF,"role":<jwt role>}.
//                      $FAIL_FILE: while that file exists, /health answers 503
//                      (tests make a service unhealthy with it).
//                      $DB_URL / $DB_PASSWORD (the services that use the
//                      database): /health also needs the db stand-in at
//                      host:port to accept that password (GET /login), as a
//                      real service needs its database login.
//                      SERVICE=db with $DATA_DIR (its volume): like the
//                      postgres image, the first start with an empty
//                      DATA_DIR stores $POSTGRES_PASSWORD there; later starts
//                      keep what is stored, whatever the environment says.
//                      GET /login answers 200 when the X-Db-Password header
//                      equals the stored password, else 401.
//   sp-standin probe PORT   exit 0 when 127.0.0.1:PORT/health answers 200
//                           (the container health check).
//   sp-standin set-password  (db, run as an exec) stores $POSTGRES_PASSWORD
//                            in $DATA_DIR: the stand-in's ALTER ROLE.
//   sp-standin db-login      exit 0 when the db at $DB_URL accepts
//                            $DB_PASSWORD (tests run it as an exec).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <sodium.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

namespace {

std::string env(const char* name, const char* dflt = "") {
  const char* v = std::getenv(name);
  return v ? v : dflt;
}

bool b64url_decode(const std::string& in, std::string* out) {
  out->assign(in.size(), '\0');
  size_t len = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out->data()), out->size(), in.data(),
                        in.size(), nullptr, &len, nullptr,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
    return false;
  out->resize(len);
  return true;
}

/// The `role` claim of an HS256 JWT signed with `secret`, or "" when it
/// does not verify.
std::string verified_role(const std::string& jwt, const std::string& secret) {
  const auto d1 = jwt.find('.');
  const auto d2 = jwt.find('.', d1 == std::string::npos ? 0 : d1 + 1);
  if (d1 == std::string::npos || d2 == std::string::npos) return "";
  const std::string signing_input = jwt.substr(0, d2);
  std::string sig, payload, header;
  if (!b64url_decode(jwt.substr(d2 + 1), &sig) || sig.size() != crypto_auth_hmacsha256_BYTES)
    return "";
  if (!b64url_decode(jwt.substr(0, d1), &header) || header.find("\"HS256\"") == std::string::npos)
    return "";
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, reinterpret_cast<const unsigned char*>(secret.data()),
                              secret.size());
  crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(signing_input.data()),
                                signing_input.size());
  crypto_auth_hmacsha256_final(&st, mac);
  if (sodium_memcmp(mac, sig.data(), sizeof mac) != 0) return "";
  if (!b64url_decode(jwt.substr(d1 + 1, d2 - d1 - 1), &payload)) return "";
  const auto at = payload.find("\"role\":\"");
  if (at == std::string::npos) return "?";
  const auto start = at + 8;
  return payload.substr(start, payload.find('"', start) - start);
}

void answer(int fd, int status, const std::string& body) {
  const char* reason = status == 200 ? "OK" : status == 401 ? "Unauthorized" : "Unavailable";
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason +
                    "\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\n\r\n" + body;
  for (size_t sent = 0; sent < out.size();) {
    const ssize_t n = ::send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return;
    sent += static_cast<size_t>(n);
  }
}

std::string header_value(const std::string& head, const std::string& name) {
  std::string lower = head;
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const auto at = lower.find("\r\n" + name + ":");
  if (at == std::string::npos) return "";
  auto start = at + 3 + name.size();
  while (start < head.size() && head[start] == ' ') ++start;
  return head.substr(start, head.find("\r\n", start) - start);
}

std::string password_file() { return env("DATA_DIR") + "/password"; }

/// The stored password ("" when none is stored).
std::string stored_password() {
  std::ifstream in(password_file());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// Stores `pw` (write a temp file, then rename: a reader sees the old or
/// the new password, never half of one).
bool store_password(const std::string& pw) {
  const std::string tmp = password_file() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return false;
  const bool ok =
      ::write(fd, pw.data(), pw.size()) == static_cast<ssize_t>(pw.size()) && ::fsync(fd) == 0;
  ::close(fd);
  return ok && ::rename(tmp.c_str(), password_file().c_str()) == 0;
}

bool same(const std::string& a, const std::string& b) {
  return a.size() == b.size() && sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

/// Sends `req` to host:port and returns the HTTP status (-1 when unreachable).
int http_status(const std::string& host, const std::string& port, const std::string& req) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || !res) return -1;
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{1, 0};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  const bool connected = ::connect(s, res->ai_addr, res->ai_addrlen) == 0;
  ::freeaddrinfo(res);
  int status = -1;
  if (connected &&
      ::send(s, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
    char buf[64] = {};
    const ssize_t n = ::recv(s, buf, sizeof buf - 1, 0);
    if (n > 12) status = std::atoi(buf + 9);
  }
  ::close(s);
  return status;
}

/// Whether the db at $DB_URL (http://host:port) accepts `password`.
bool db_accepts(const std::string& password) {
  std::string url = env("DB_URL");
  if (url.rfind("http://", 0) == 0) url = url.substr(7);
  const auto colon = url.find(':');
  if (colon == std::string::npos) return false;
  const std::string req = "GET /login HTTP/1.1\r\nHost: db\r\nX-Db-Password: " + password +
                          "\r\nConnection: close\r\n\r\n";
  return http_status(url.substr(0, colon), url.substr(colon + 1), req) == 200;
}

void handle(int fd, const std::chrono::steady_clock::time_point ready_at) {
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string head;
  char buf[4096];
  while (head.find("\r\n\r\n") == std::string::npos && head.size() < 65536) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return;
    head.append(buf, static_cast<size_t>(n));
  }
  const auto sp1 = head.find(' ');
  const auto sp2 = head.find(' ', sp1 + 1);
  const std::string path = sp1 == std::string::npos ? "" : head.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string service = env("SERVICE", "standin");
  const std::string ref = env("TENANT_REF");
  if (path == "/health") {
    struct stat st {};
    const std::string fail = env("FAIL_FILE");
    if (std::chrono::steady_clock::now() < ready_at ||
        (!fail.empty() && ::stat(fail.c_str(), &st) == 0))
      return answer(fd, 503, "{\"healthy\":false}");
    if (!env("DB_URL").empty() && !db_accepts(env("DB_PASSWORD")))
      return answer(fd, 503, "{\"healthy\":false,\"error\":\"database login failed\"}");
    return answer(fd, 200, "{\"healthy\":true,\"service\":\"" + service + "\"}");
  }
  if (path == "/login" && service == "db") {
    const std::string stored = stored_password();
    if (stored.empty() || !same(header_value(head, "x-db-password"), stored))
      return answer(fd, 401, "{\"message\":\"password authentication failed\"}");
    return answer(fd, 200, "{\"login\":true}");
  }
  std::string role;
  if (env("REQUIRE_JWT") == "1") {
    const std::string auth = header_value(head, "authorization");
    const std::string secret = env("JWT_SECRET");
    if (secret.empty() || auth.rfind("Bearer ", 0) != 0)
      return answer(fd, 401, "{\"message\":\"no bearer token\"}");
    role = verified_role(auth.substr(7), secret);
    if (role.empty()) return answer(fd, 401, "{\"message\":\"invalid JWT\"}");
  }
  answer(fd, 200,
         "{\"service\":\"" + service + "\",\"ref\":\"" + ref + "\",\"role\":\"" + role + "\"}");
}

int serve() {
  if (env("SERVICE") == "db" && !env("DATA_DIR").empty() && stored_password().empty()) {
    // An empty data directory: initialise it with the password of the
    // environment (the postgres image's initdb). Never again afterwards.
    if (env("POSTGRES_PASSWORD").empty() || !store_password(env("POSTGRES_PASSWORD"))) {
      std::fprintf(stderr, "sp-standin: cannot initialise %s\n", env("DATA_DIR").c_str());
      return 1;
    }
  }
  const int port = std::atoi(env("PORT", "8000").c_str());
  const auto ready_at = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(std::atoi(env("STARTUP_DELAY_MS", "0").c_str()));
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  if (::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(s, 64) != 0) {
    std::perror("sp-standin: bind");
    return 1;
  }
  std::fprintf(stderr, "sp-standin %s listening on %d\n", env("SERVICE", "standin").c_str(), port);
  for (;;) {
    const int fd = ::accept(s, nullptr, nullptr);
    if (fd < 0) continue;
    std::thread([fd, ready_at] {
      handle(fd, ready_at);
      ::close(fd);
    }).detach();
  }
}

int probe(int port) {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return 1;
  const std::string req = "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";
  if (::send(s, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) return 1;
  char buf[64] = {};
  const ssize_t n = ::recv(s, buf, sizeof buf - 1, 0);
  ::close(s);
  return n > 12 && std::strncmp(buf + 9, "200", 3) == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (sodium_init() < 0) return 2;
  signal(SIGPIPE, SIG_IGN);
  // PID 1 in its container: exit at once on SIGTERM (docker stop).
  signal(SIGTERM, [](int) { _exit(0); });
  signal(SIGINT, [](int) { _exit(0); });
  const std::string cmd = argc > 1 ? argv[1] : "serve";
  if (cmd == "serve") return serve();
  if (cmd == "probe" && argc > 2) return probe(std::atoi(argv[2]));
  if (cmd == "set-password") {
    if (env("DATA_DIR").empty() || env("POSTGRES_PASSWORD").empty()) return 2;
    return store_password(env("POSTGRES_PASSWORD")) ? 0 : 1;
  }
  if (cmd == "db-login") return db_accepts(env("DB_PASSWORD")) ? 0 : 1;
  std::fprintf(stderr, "usage: sp-standin serve | probe PORT | set-password | db-login\n");
  return 2;
}
