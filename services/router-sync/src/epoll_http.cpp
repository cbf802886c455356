#include "epoll_http.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <unordered_map>

namespace supaplane::router {

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kMaxHeaderBytes = 64 * 1024;
constexpr auto kIdleTimeout = std::chrono::seconds(60);

const char* reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 404:
      return "Not Found";
    case 411:
      return "Length Required";
    case 413:
      return "Payload Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Status";
  }
}

struct Conn {
  int fd{-1};
  std::string in;
  std::string out;
  std::size_t out_pos{0};
  bool close_after_write{false};
  bool want_write{false};
  Clock::time_point last_active{Clock::now()};
};

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

void append_response(Conn& c, const HttpRequest& req, const HttpResponse& res, bool close) {
  std::string& o = c.out;
  o += "HTTP/1.1 " + std::to_string(res.status) + " " + reason_phrase(res.status) + "\r\n";
  for (const auto& [k, v] : res.headers) o += k + ": " + v + "\r\n";
  // HEAD announces the length GET would send; 304 has no body at all.
  const bool no_body = res.status == 304 || req.method == "HEAD";
  o += "Content-Length: " + std::to_string(res.status == 304 ? 0 : res.body.size()) + "\r\n";
  if (close) o += "Connection: close\r\n";
  o += "\r\n";
  if (!no_body) o += res.body;
  if (close) c.close_after_write = true;
}

/// Parses as many complete requests as `c.in` holds and answers them.
/// Returns false when the connection must be closed at once.
bool process(Conn& c, const HttpHandler& handler, std::size_t max_body) {
  while (!c.close_after_write) {
    const auto end = c.in.find("\r\n\r\n");
    if (end == std::string::npos) return c.in.size() <= kMaxHeaderBytes;
    HttpRequest req;
    std::size_t line_end = c.in.find("\r\n");
    const std::string line = c.in.substr(0, line_end);
    const auto sp1 = line.find(' ');
    const auto sp2 = line.rfind(' ');
    HttpResponse res;
    if (sp1 == std::string::npos || sp2 == sp1 || line.compare(sp2 + 1, 5, "HTTP/") != 0) {
      res.status = 400;
      append_response(c, req, res, true);
      return true;
    }
    req.method = line.substr(0, sp1);
    std::string target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    req.path = target.substr(0, target.find('?'));
    const bool http10 = line.compare(sp2 + 1, 8, "HTTP/1.0") == 0;
    for (std::size_t at = line_end + 2; at < end;) {
      const auto next = c.in.find("\r\n", at);
      const std::string h = c.in.substr(at, next - at);
      const auto colon = h.find(':');
      if (colon != std::string::npos)
        req.headers[lower(trim(h.substr(0, colon)))] = trim(h.substr(colon + 1));
      at = next + 2;
    }
    std::size_t consumed = end + 4;
    bool close = http10 ? lower(req.header("connection")) != "keep-alive"
                        : lower(req.header("connection")) == "close";
    if (!req.header("transfer-encoding").empty()) {
      res.status = 411;  // no chunked bodies here: answer and hang up
      append_response(c, req, res, true);
      return true;
    }
    const std::string len = req.header("content-length");
    if (!len.empty()) {
      if (len.size() > 19 || len.find_first_not_of("0123456789") != std::string::npos) {
        res.status = 400;
        append_response(c, req, res, true);
        return true;
      }
      const std::size_t n = std::stoull(len);
      if (n > max_body) {
        res.status = 413;
        append_response(c, req, res, true);
        return true;
      }
      if (c.in.size() < consumed + n) return true;  // the body is still coming
      consumed += n;                                // read and ignored
    }
    c.in.erase(0, consumed);
    try {
      handler(req, res);
    } catch (const std::exception&) {
      res = HttpResponse{};
      res.status = 500;
    }
    append_response(c, req, res, close);
  }
  return true;
}

}  // namespace

struct EpollHttpServer::Loop {
  int listen_fd{-1};
  int epoll_fd{-1};
  std::unordered_map<int, Conn> conns;
  ~Loop() {
    for (auto& [fd, c] : conns) ::close(fd);
    if (listen_fd >= 0) ::close(listen_fd);
    if (epoll_fd >= 0) ::close(epoll_fd);
  }
};

EpollHttpServer::EpollHttpServer(HttpHandler handler, int threads, std::size_t max_body)
    : handler_(std::move(handler)),
      threads_(threads > 0 ? threads
                           : std::max(1, static_cast<int>(std::thread::hardware_concurrency()))),
      max_body_(max_body) {}

EpollHttpServer::~EpollHttpServer() { stop(); }

Result<int> EpollHttpServer::bind(const std::string& host, int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  if (::inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host.c_str(), &addr.sin_addr) != 1)
    return make_error(errc::invalid_argument, "not an IPv4 address: " + host, "http_addr");
  for (int i = 0; i < threads_; ++i) {
    auto loop = std::make_unique<Loop>();
    loop->listen_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    const int one = 1;
    ::setsockopt(loop->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    ::setsockopt(loop->listen_fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    if (::bind(loop->listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(loop->listen_fd, 1024) != 0)
      return make_error(errc::unavailable, "cannot listen on " + host + ":" + std::to_string(port) +
                                               ": " + std::strerror(errno));
    if (port == 0) {  // the others join the port the kernel picked
      socklen_t len = sizeof addr;
      ::getsockname(loop->listen_fd, reinterpret_cast<sockaddr*>(&addr), &len);
      port = ntohs(addr.sin_port);
    }
    loop->epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = loop->listen_fd;
    ::epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, loop->listen_fd, &ev);
    loops_.push_back(std::move(loop));
  }
  return port;
}

void EpollHttpServer::start() {
  for (auto& loop : loops_) workers_.emplace_back([this, l = loop.get()] { run(*l); });
}

void EpollHttpServer::stop() {
  stop_ = true;
  for (auto& t : workers_)
    if (t.joinable()) t.join();
  workers_.clear();
  loops_.clear();
}

void EpollHttpServer::run(Loop& loop) {
  std::vector<epoll_event> events(256);
  auto close_conn = [&](int fd) {
    ::epoll_ctl(loop.epoll_fd, EPOLL_CTL_DEL, fd, nullptr);
    ::close(fd);
    loop.conns.erase(fd);
  };
  auto flush = [&](Conn& c) {  // false: closed
    while (c.out_pos < c.out.size()) {
      const ssize_t n =
          ::send(c.fd, c.out.data() + c.out_pos, c.out.size() - c.out_pos, MSG_NOSIGNAL);
      if (n > 0) {
        c.out_pos += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      close_conn(c.fd);
      return false;
    }
    const bool pending = c.out_pos < c.out.size();
    if (!pending) {
      c.out.clear();
      c.out_pos = 0;
      if (c.close_after_write) {
        close_conn(c.fd);
        return false;
      }
    }
    if (pending != c.want_write) {
      c.want_write = pending;
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP | (pending ? EPOLLOUT : 0u);
      ev.data.fd = c.fd;
      ::epoll_ctl(loop.epoll_fd, EPOLL_CTL_MOD, c.fd, &ev);
    }
    return true;
  };
  auto last_sweep = Clock::now();
  char buf[16384];
  while (!stop_) {
    const int n = ::epoll_wait(loop.epoll_fd, events.data(), static_cast<int>(events.size()), 100);
    for (int i = 0; i < n; ++i) {
      const int fd = events[static_cast<std::size_t>(i)].data.fd;
      const auto what = events[static_cast<std::size_t>(i)].events;
      if (fd == loop.listen_fd) {
        for (;;) {
          const int cfd = ::accept4(loop.listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (cfd < 0) break;
          const int one = 1;
          ::setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          epoll_event ev{};
          ev.events = EPOLLIN | EPOLLRDHUP;
          ev.data.fd = cfd;
          ::epoll_ctl(loop.epoll_fd, EPOLL_CTL_ADD, cfd, &ev);
          loop.conns[cfd].fd = cfd;
        }
        continue;
      }
      auto it = loop.conns.find(fd);
      if (it == loop.conns.end()) continue;
      Conn& c = it->second;
      c.last_active = Clock::now();
      if (what & EPOLLOUT) {
        if (!flush(c)) continue;
      }
      if (what & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        const ssize_t r = ::recv(fd, buf, sizeof buf, 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
          close_conn(fd);
          continue;
        }
        if (r > 0) c.in.append(buf, static_cast<std::size_t>(r));
        if (!process(c, handler_, max_body_)) {
          close_conn(fd);
          continue;
        }
        flush(c);
      }
    }
    if (Clock::now() - last_sweep > std::chrono::seconds(1)) {
      last_sweep = Clock::now();
      std::vector<int> idle;
      for (const auto& [fd, c] : loop.conns)
        if (last_sweep - c.last_active > kIdleTimeout) idle.push_back(fd);
      for (int fd : idle) close_conn(fd);
    }
  }
}

}  // namespace supaplane::router
