#include "supaplane/http/server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <unordered_map>

namespace supaplane::http {

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kMaxHeaderBytes = 64 * 1024;
/// How long a loop stops accepting after the process ran out of descriptors
/// and could not even shed the waiting connection.
constexpr auto kAcceptBackoff = std::chrono::milliseconds(100);
/// After a refusal the rest of what the client sends (a body still on its
/// way) is read and dropped for up to this long / this much before closing:
/// a close with unread input resets the connection, and the reset can
/// overtake the answer in the client's kernel.
constexpr auto kLinger = std::chrono::seconds(2);
constexpr std::size_t kMaxLingerBytes = 4 << 20;

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
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 411:
      return "Length Required";
    case 413:
      return "Payload Too Large";
    case 415:
      return "Unsupported Media Type";
    case 431:
      return "Request Header Fields Too Large";
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
  std::uint64_t id{0};  ///< unique per loop: a late answer never lands on a reused fd
  std::string in;
  std::string out;
  std::size_t out_pos{0};
  std::size_t accounted{0};  ///< unsent bytes counted in the loop's gauge
  std::uint32_t events{0};   ///< current epoll interest
  bool close_after_write{false};
  bool lingering{false};  ///< answered and shut down for writing: input is dropped
  std::size_t lingered{0};
  Clock::time_point linger_until{};
  bool paused{false};        ///< unsent output over the cap: not reading
  bool in_flight{false};     ///< a request is with a worker: not reading, no deadline
  bool head_checked{false};  ///< the head check passed for the request at the front of `in`
  Clock::time_point last_active{Clock::now()};
  Clock::time_point request_since{};  ///< first byte of an incomplete request; {} = none
  std::size_t pending() const { return out.size() - out_pos; }
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

bool is_token(const std::string& s) {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (c <= 0x20 || c >= 0x7f || std::strchr("\"(),/:;<=>?@[\\]{}", c) != nullptr) return false;
  return true;
}

void append_response(Conn& c, bool head_request, const HttpResponse& res, bool close) {
  close = close || res.close;
  std::string& o = c.out;
  o += "HTTP/1.1 " + std::to_string(res.status) + " " + reason_phrase(res.status) + "\r\n";
  for (const auto& [k, v] : res.headers) o += k + ": " + v + "\r\n";
  // HEAD announces the length GET would send; 304 has no body at all.
  const bool no_body = res.status == 304 || head_request;
  o += "Content-Length: " + std::to_string(res.status == 304 ? 0 : res.body.size()) + "\r\n";
  if (close) o += "Connection: close\r\n";
  o += "\r\n";
  if (!no_body) o += res.body;
  if (close) c.close_after_write = true;
}

/// What process() needs from its server.
struct Env {
  const HttpHandler& handler;
  const HeadCheck& head_check;
  const RefusalObserver& observer;
  const HttpLimits& limits;
  HttpServerStats& stats;
  /// Hands a complete request to a worker; false: the queue is full.
  std::function<bool(Conn&, HttpRequest&&, bool close)> submit;
};

/// Answers `status` with an empty body and marks the connection for closing
/// (what is left of the input is not parsed any further).
void refuse(Conn& c, int status, Env& env) {
  HttpResponse res;
  res.status = status;
  if (status == 503) {
    env.stats.queue_full.fetch_add(1, std::memory_order_relaxed);
    res.headers.emplace_back("Retry-After", std::to_string(env.limits.retry_after_seconds));
  } else {
    env.stats.bad_requests.fetch_add(1, std::memory_order_relaxed);
    if (status == 413) env.stats.too_large.fetch_add(1, std::memory_order_relaxed);
  }
  append_response(c, false, res, true);
  c.in.clear();
  if (env.observer) env.observer(status);
}

/// Parses the request head in c.in[0, end); false: malformed.
bool parse_head(const std::string& in, std::size_t end, HttpRequest& req, bool& http10) {
  const std::size_t line_end = in.find("\r\n");
  const std::string line = in.substr(0, line_end);
  const auto sp1 = line.find(' ');
  const auto sp2 = line.rfind(' ');
  if (sp1 == std::string::npos || sp2 == sp1 || line.compare(sp2 + 1, 5, "HTTP/") != 0)
    return false;
  req.method = line.substr(0, sp1);
  const std::string target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  if (!is_token(req.method) || target.empty() || target.find(' ') != std::string::npos)
    return false;
  req.path = target.substr(0, target.find('?'));
  http10 = line.compare(sp2 + 1, 8, "HTTP/1.0") == 0;
  for (std::size_t at = line_end + 2; at < end;) {
    const auto next = in.find("\r\n", at);
    const std::string h = in.substr(at, next - at);
    at = next + 2;
    const auto colon = h.find(':');
    // No colon, an empty or spaced name, or an obsolete folded line: refused.
    if (colon == std::string::npos) return false;
    std::string name = h.substr(0, colon);
    if (!is_token(name)) return false;
    name = lower(std::move(name));
    std::string value = trim(h.substr(colon + 1));
    auto [it, fresh] = req.headers.emplace(name, value);
    if (fresh) continue;
    // A repeated Content-Length / Transfer-Encoding / Host is how requests
    // are smuggled past a proxy: refuse it rather than pick one.
    if (name == "content-length" || name == "transfer-encoding" || name == "host") return false;
    it->second += ", " + value;
  }
  return true;
}

/// Parses as many complete requests as `c.in` holds and answers them (or
/// hands one to a worker and stops there), while the connection's unsent
/// output stays under the cap.
void process(Conn& c, Env& env) {
  if (c.out_pos > 0) {  // keep only what is unsent before appending more
    c.out.erase(0, c.out_pos);
    c.out_pos = 0;
  }
  while (!c.close_after_write && !c.in_flight && c.pending() < env.limits.max_output_bytes &&
         !c.in.empty()) {
    const auto end = c.in.find("\r\n\r\n");
    if (end == std::string::npos) {
      if (c.in.size() > kMaxHeaderBytes) refuse(c, 431, env);
      return;
    }
    HttpRequest req;
    bool http10 = false;
    if (!parse_head(c.in, end, req, http10)) return refuse(c, 400, env);
    std::size_t consumed = end + 4;
    const bool close = http10 ? lower(req.header("connection")) != "keep-alive"
                              : lower(req.header("connection")) == "close";
    // No chunked bodies: a length must be known before the body is read.
    if (req.headers.count("transfer-encoding") != 0) return refuse(c, 411, env);
    std::size_t n = 0;
    if (req.headers.count("content-length") != 0) {
      const std::string len = req.header("content-length");
      if (len.empty() || len.size() > 19 ||
          len.find_first_not_of("0123456789") != std::string::npos)
        return refuse(c, 400, env);
      n = std::stoull(len);  // <= 19 digits: fits
      if (n > env.limits.max_body) return refuse(c, 413, env);
    }
    if (!c.head_checked && env.head_check) {
      HttpResponse res;
      if (env.head_check(req, res)) {
        append_response(c, req.method == "HEAD", res, true);
        c.in.clear();
        return;
      }
    }
    c.head_checked = true;
    if (c.in.size() < consumed + n) return;  // the body is still coming
    req.body = c.in.substr(consumed, n);
    consumed += n;
    c.in.erase(0, consumed);
    c.head_checked = false;
    if (env.limits.workers > 0) {
      if (env.submit(c, std::move(req), close))
        c.in_flight = true;
      else
        refuse(c, 503, env);
      return;
    }
    HttpResponse res;
    try {
      env.handler(req, res);
    } catch (...) {
      env.stats.handler_errors.fetch_add(1, std::memory_order_relaxed);
      res = HttpResponse{};
      res.status = 500;
    }
    append_response(c, req.method == "HEAD", res, close);
  }
}

}  // namespace

/// A worker's answer on its way back to the loop that owns the connection.
struct Done {
  int fd{-1};
  std::uint64_t conn_id{0};
  bool head_request{false};
  bool close{false};
  HttpResponse res{};
};

struct EpollHttpServer::Loop {
  int epoll_fd{-1};
  int wake_fd{-1};     ///< eventfd: workers' answers are waiting in `done`
  int reserve_fd{-1};  ///< closed to accept-and-shed one connection when out of descriptors
  bool listening{false};
  Clock::time_point listen_again{};
  std::unordered_map<int, Conn> conns;
  std::uint64_t next_id{1};
  std::int64_t buffered{0};  ///< written by the loop only
  std::atomic<std::int64_t> buffered_seen{0};
  std::mutex done_mu;
  std::vector<Done> done;  ///< guarded by done_mu
  void post(Done d) {
    {
      std::lock_guard lk(done_mu);
      done.push_back(std::move(d));
    }
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto w = ::write(wake_fd, &one, sizeof one);
  }
  ~Loop() {
    for (auto& [fd, c] : conns) ::close(fd);
    if (epoll_fd >= 0) ::close(epoll_fd);
    if (wake_fd >= 0) ::close(wake_fd);
    if (reserve_fd >= 0) ::close(reserve_fd);
  }
};

struct EpollHttpServer::Job {
  Loop* loop{nullptr};
  int fd{-1};
  std::uint64_t conn_id{0};
  bool close{false};
  HttpRequest req{};
};

/// Complete requests waiting for a worker, bounded by max_queued.
struct EpollHttpServer::Pool {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Job> jobs;
  bool stopping{false};
};

EpollHttpServer::EpollHttpServer(HttpHandler handler, int threads, HttpLimits limits)
    : handler_(std::move(handler)),
      threads_(threads > 0 ? threads
                           : std::max(1, static_cast<int>(std::thread::hardware_concurrency()))),
      limits_(limits) {
  if (limits_.workers > 0) pool_ = std::make_unique<Pool>();
}

EpollHttpServer::~EpollHttpServer() { stop(); }

std::int64_t EpollHttpServer::buffered_output_bytes() const {
  std::int64_t sum = 0;
  for (const auto& l : loops_) sum += l->buffered_seen.load(std::memory_order_relaxed);
  return sum;
}

Result<int> EpollHttpServer::bind(const std::string& host, int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  if (::inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host.c_str(), &addr.sin_addr) != 1)
    return make_error(errc::invalid_argument, "not an IPv4 address: " + host, "http_addr");
  const std::string where = host + ":" + std::to_string(port);
  // One socket for all loops, without SO_REUSEPORT: a second listener on this
  // address (another process, another copy of us) makes bind fail here
  // instead of silently taking a share of the connections. SO_REUSEADDR only
  // lets a restart bind while old connections sit in TIME_WAIT.
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0)
    return make_error(errc::unavailable, "cannot listen on " + where + ": " + std::strerror(errno),
                      "http_addr");
  const int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 1024) != 0) {
    const int err = errno;
    ::close(listen_fd_);
    listen_fd_ = -1;
    return make_error(errc::unavailable,
                      "cannot listen on " + where + ": " + std::strerror(err) +
                          (err == EADDRINUSE ? " (another process holds this address)" : ""),
                      "http_addr");
  }
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  for (int i = 0; i < threads_; ++i) {
    auto loop = std::make_unique<Loop>();
    loop->epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
    loop->wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    loop->reserve_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    // EPOLLEXCLUSIVE: a new connection wakes one loop, not all of them.
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLEXCLUSIVE;
    ev.data.fd = listen_fd_;
    if (loop->epoll_fd < 0 || ::epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, listen_fd_, &ev) != 0)
      return make_error(errc::unavailable, "epoll: " + std::string(std::strerror(errno)));
    epoll_event wake{};
    wake.events = EPOLLIN;
    wake.data.fd = loop->wake_fd;
    if (loop->wake_fd < 0 || ::epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, loop->wake_fd, &wake) != 0)
      return make_error(errc::unavailable, "eventfd: " + std::string(std::strerror(errno)));
    loop->listening = true;
    loops_.push_back(std::move(loop));
  }
  return static_cast<int>(ntohs(addr.sin_port));
}

void EpollHttpServer::start() {
  for (auto& loop : loops_) workers_.emplace_back([this, l = loop.get()] { run(*l); });
  for (int i = 0; pool_ && i < limits_.workers; ++i)
    workers_.emplace_back([this] {
      for (;;) {
        Job job;
        {
          std::unique_lock lk(pool_->mu);
          pool_->cv.wait(lk, [&] { return pool_->stopping || !pool_->jobs.empty(); });
          if (pool_->stopping) return;  // what is still queued is dropped with its connection
          job = std::move(pool_->jobs.front());
          pool_->jobs.pop_front();
          stats_.queued_requests.fetch_sub(1, std::memory_order_relaxed);
          stats_.busy_workers.fetch_add(1, std::memory_order_relaxed);
        }
        Done d;
        d.fd = job.fd;
        d.conn_id = job.conn_id;
        d.head_request = job.req.method == "HEAD";
        d.close = job.close;
        try {
          handler_(job.req, d.res);
        } catch (...) {
          stats_.handler_errors.fetch_add(1, std::memory_order_relaxed);
          d.res = HttpResponse{};
          d.res.status = 500;
        }
        stats_.busy_workers.fetch_sub(1, std::memory_order_relaxed);
        job.loop->post(std::move(d));
      }
    });
}

void EpollHttpServer::stop() {
  stop_ = true;
  if (pool_) {
    std::lock_guard lk(pool_->mu);
    pool_->stopping = true;
    stats_.queued_requests.fetch_sub(static_cast<std::int64_t>(pool_->jobs.size()),
                                     std::memory_order_relaxed);
    pool_->jobs.clear();
  }
  if (pool_) pool_->cv.notify_all();
  // Loops and workers are joined before any loop goes: a worker still posts
  // its answer to its loop.
  for (auto& t : workers_)
    if (t.joinable()) t.join();
  workers_.clear();
  for (auto& l : loops_) stats_.open_connections -= static_cast<std::int64_t>(l->conns.size());
  loops_.clear();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  listen_fd_ = -1;
}

/// Accepts one connection; false when there is nothing more to accept now.
bool EpollHttpServer::accept_one(Loop& loop) {
  const int cfd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (cfd < 0) {
    if (errno == EINTR || errno == ECONNABORTED) return true;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
    // Out of descriptors (or kernel memory): the listening socket stays
    // readable, so a level-triggered loop would spin. Shed the waiting
    // connection with the reserve descriptor so its client learns at once;
    // when that is not possible, stop accepting in this loop for a while.
    stats_.accept_errors.fetch_add(1, std::memory_order_relaxed);
    if ((errno == EMFILE || errno == ENFILE) && loop.reserve_fd >= 0) {
      ::close(loop.reserve_fd);
      const int shed = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (shed >= 0) {
        // Counted before the close, so a client that sees the close sees
        // the count too.
        stats_.refused_connections.fetch_add(1, std::memory_order_relaxed);
        ::close(shed);
      }
      loop.reserve_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (shed >= 0 && loop.reserve_fd >= 0) return true;
    }
    ::epoll_ctl(loop.epoll_fd, EPOLL_CTL_DEL, listen_fd_, nullptr);
    loop.listening = false;
    loop.listen_again = Clock::now() + kAcceptBackoff;
    return false;
  }
  if (stats_.open_connections.load(std::memory_order_relaxed) >= limits_.max_connections) {
    stats_.refused_connections.fetch_add(1, std::memory_order_relaxed);
    ::close(cfd);
    return true;
  }
  stats_.open_connections.fetch_add(1, std::memory_order_relaxed);
  const int one = 1;
  ::setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP;
  ev.data.fd = cfd;
  ::epoll_ctl(loop.epoll_fd, EPOLL_CTL_ADD, cfd, &ev);
  Conn& c = loop.conns[cfd];
  c.fd = cfd;
  c.id = loop.next_id++;
  c.events = ev.events;
  return true;
}

void EpollHttpServer::run(Loop& loop) {
  std::vector<epoll_event> events(256);
  const auto header_timeout = std::chrono::milliseconds(std::max(1, limits_.header_timeout_ms));
  const auto idle_timeout = std::chrono::milliseconds(std::max(1, limits_.idle_timeout_ms));
  const auto sweep_every =
      std::clamp(std::min(header_timeout, idle_timeout) / 4, std::chrono::milliseconds(10),
                 std::chrono::milliseconds(1000));
  auto publish = [&](Conn& c) {  // keeps the buffered-bytes gauge true
    const std::size_t now = c.pending();
    if (now == c.accounted) return;
    loop.buffered += static_cast<std::int64_t>(now) - static_cast<std::int64_t>(c.accounted);
    c.accounted = now;
    loop.buffered_seen.store(loop.buffered, std::memory_order_relaxed);
  };
  auto close_conn = [&](int fd) {
    auto it = loop.conns.find(fd);
    if (it == loop.conns.end()) return;
    loop.buffered -= static_cast<std::int64_t>(it->second.accounted);
    loop.buffered_seen.store(loop.buffered, std::memory_order_relaxed);
    ::epoll_ctl(loop.epoll_fd, EPOLL_CTL_DEL, fd, nullptr);
    ::close(fd);
    loop.conns.erase(it);
    stats_.open_connections.fetch_sub(1, std::memory_order_relaxed);
  };
  // Sets the epoll interest from the connection's state: read unless paused
  // by the output cap, write while output is pending.
  auto interest = [&](Conn& c) {
    const bool was_paused = c.paused;
    c.paused = c.pending() >= limits_.max_output_bytes;
    if (c.lingering) c.paused = false;
    if (c.paused && !was_paused) stats_.read_pauses.fetch_add(1, std::memory_order_relaxed);
    // While a worker has the request nothing more is read (one request in
    // flight per connection keeps answers in order and bounds the input).
    const std::uint32_t want =
        (c.paused || c.in_flight ? 0u : EPOLLIN | EPOLLRDHUP) | (c.pending() > 0 ? EPOLLOUT : 0u);
    if (want == c.events) return;
    c.events = want;
    epoll_event ev{};
    ev.events = want;
    ev.data.fd = c.fd;
    ::epoll_ctl(loop.epoll_fd, EPOLL_CTL_MOD, c.fd, &ev);
  };
  auto flush = [&](Conn& c) {  // false: closed
    while (c.out_pos < c.out.size()) {
      const ssize_t n =
          ::send(c.fd, c.out.data() + c.out_pos, c.out.size() - c.out_pos, MSG_NOSIGNAL);
      if (n > 0) {
        c.out_pos += static_cast<std::size_t>(n);
        c.last_active = Clock::now();
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      close_conn(c.fd);
      return false;
    }
    if (c.pending() == 0) {
      c.out.clear();
      c.out_pos = 0;
      if (c.close_after_write) {
        ::shutdown(c.fd, SHUT_WR);
        c.lingering = true;
        c.in.clear();
        c.linger_until = Clock::now() + kLinger;
        c.request_since = {};
        interest(c);
        return false;
      }
    }
    return true;
  };
  Env env{handler_,
          head_check_,
          observer_,
          limits_,
          stats_,
          [&](Conn& c, HttpRequest&& req, bool close) {
            std::lock_guard lk(pool_->mu);
            if (pool_->stopping ||
                pool_->jobs.size() >= static_cast<std::size_t>(std::max(1, limits_.max_queued)))
              return false;
            pool_->jobs.push_back(Job{&loop, c.fd, c.id, close, std::move(req)});
            stats_.queued_requests.fetch_add(1, std::memory_order_relaxed);
            pool_->cv.notify_one();
            return true;
          }};
  // Parses what is buffered, sends what it can, sets the interest; false: closed.
  auto serve = [&](Conn& c) {
    // Parse, send, and parse again while the kernel takes the answers: the
    // cap stops parsing only while output is really waiting.
    for (;;) {
      const std::size_t before = c.in.size();
      process(c, env);
      if (!flush(c)) return false;
      if (c.in.empty() || c.in.size() == before || c.close_after_write || c.in_flight ||
          c.pending() >= limits_.max_output_bytes)
        break;
    }
    // A request is incomplete while input is left and the connection is not
    // waiting for its own output to drain or for a worker: that is what the
    // deadline bounds.
    if (c.in.empty() || c.in_flight || c.pending() >= limits_.max_output_bytes)
      c.request_since = {};
    else if (c.request_since == Clock::time_point{})
      c.request_since = Clock::now();
    publish(c);
    interest(c);
    return true;
  };
  auto last_sweep = Clock::now();
  char buf[16384];
  while (!stop_) {
    const int n = ::epoll_wait(loop.epoll_fd, events.data(), static_cast<int>(events.size()), 100);
    for (int i = 0; i < n; ++i) {
      const int fd = events[static_cast<std::size_t>(i)].data.fd;
      const auto what = events[static_cast<std::size_t>(i)].events;
      if (fd == listen_fd_) {
        for (int k = 0; k < 64 && loop.listening && accept_one(loop); ++k) {
        }
        continue;
      }
      if (fd == loop.wake_fd) {
        std::uint64_t count = 0;
        [[maybe_unused]] const auto r = ::read(loop.wake_fd, &count, sizeof count);
        std::vector<Done> done;
        {
          std::lock_guard lk(loop.done_mu);
          done.swap(loop.done);
        }
        for (auto& d : done) {
          auto it = loop.conns.find(d.fd);
          // The client left (and the descriptor may be another's by now).
          if (it == loop.conns.end() || it->second.id != d.conn_id) continue;
          Conn& c = it->second;
          c.in_flight = false;
          c.last_active = Clock::now();
          if (c.out_pos > 0) {
            c.out.erase(0, c.out_pos);
            c.out_pos = 0;
          }
          append_response(c, d.head_request, d.res, d.close);
          serve(c);  // sends it, then parses what was pipelined behind it
        }
        continue;
      }
      auto it = loop.conns.find(fd);
      if (it == loop.conns.end()) continue;
      Conn& c = it->second;
      if (c.lingering) {
        ssize_t r = 0;
        while ((r = ::recv(fd, buf, sizeof buf, 0)) > 0) c.lingered += static_cast<std::size_t>(r);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) ||
            c.lingered > kMaxLingerBytes)
          close_conn(fd);
        continue;
      }
      if (what & EPOLLOUT) {
        if (!flush(c)) continue;
        if (c.paused && c.pending() < limits_.max_output_bytes) {
          // Drained under the cap: parse what was left, then read again.
          if (!serve(c)) continue;
        } else {
          publish(c);
          interest(c);
        }
      }
      if (!c.paused && !c.in_flight && (what & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
        const ssize_t r = ::recv(fd, buf, sizeof buf, 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
          close_conn(fd);
          continue;
        }
        if (r > 0) {
          c.last_active = Clock::now();
          c.in.append(buf, static_cast<std::size_t>(r));
        }
        serve(c);
      } else if ((c.paused || c.in_flight) && (what & (EPOLLHUP | EPOLLERR))) {
        close_conn(fd);
      }
    }
    const auto now = Clock::now();
    if (!loop.listening && now >= loop.listen_again) {
      if (loop.reserve_fd < 0) loop.reserve_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLEXCLUSIVE;
      ev.data.fd = listen_fd_;
      ::epoll_ctl(loop.epoll_fd, EPOLL_CTL_ADD, listen_fd_, &ev);
      loop.listening = true;
    }
    if (now - last_sweep >= sweep_every) {
      last_sweep = now;
      std::vector<int> slow, idle, lingered;
      for (const auto& [fd, c] : loop.conns) {
        if (c.lingering) {
          if (now > c.linger_until) lingered.push_back(fd);
        } else if (c.request_since != Clock::time_point{} &&
                   now - c.request_since > header_timeout) {
          slow.push_back(fd);
        } else if (!c.in_flight && now - c.last_active > idle_timeout) {
          idle.push_back(fd);
        }
      }
      stats_.header_timeouts.fetch_add(slow.size(), std::memory_order_relaxed);
      stats_.idle_timeouts.fetch_add(idle.size(), std::memory_order_relaxed);
      for (int fd : lingered) close_conn(fd);
      for (int fd : slow) {
        // 408, then the usual close after an answer (see kLinger).
        Conn& c = loop.conns[fd];
        HttpResponse res;
        res.status = 408;
        if (c.out_pos > 0) {
          c.out.erase(0, c.out_pos);
          c.out_pos = 0;
        }
        c.in.clear();
        c.request_since = {};
        append_response(c, false, res, true);
        if (observer_) observer_(408);
        if (flush(c)) {
          publish(c);
          interest(c);
        }
      }
      for (int fd : idle) close_conn(fd);
    }
  }
}

}  // namespace supaplane::http
