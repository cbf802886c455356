// The HTTP server of lib/http (EpollHttpServer) against hostile clients, over
// real loopback sockets: pipelining without reading, slow and idle
// connections, too many connections, no file descriptors left, a port held by
// someone else, malformed heads.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "eventually.hpp"
#include "router_app.hpp"
#include "supaplane/http/server.hpp"

namespace supaplane {
namespace {

using testenv::eventually;
using namespace std::chrono_literals;

int connect_to(int port, bool nonblocking = false) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (nonblocking) {
    // A fixed receive buffer (no autotuning up to tcp_rmem's 32 MB): what
    // the client does not read piles up in the server, not in our kernel.
    const int rcvbuf = 64 * 1024;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  if (nonblocking) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

bool send_all(int fd, const std::string& s) {
  return ::send(fd, s.data(), s.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(s.size());
}

/// Reads until `want` bytes or EOF / error / the 5 s receive timeout.
std::string read_some(int fd, std::size_t want) {
  std::string got;
  char buf[65536];
  while (got.size() < want) {
    const ssize_t n = ::recv(fd, buf, std::min(sizeof buf, want - got.size()), 0);
    if (n <= 0) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  return got;
}

/// True once the peer closed: recv returns 0 or a reset (never blocks).
bool closed_by_peer(int fd) {
  char b;
  const ssize_t n = ::recv(fd, &b, 1, MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

std::string get(int port, const std::string& path) {
  const int fd = connect_to(port);
  if (fd < 0) return {};
  std::string got;
  if (send_all(fd, "GET " + path + " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"))
    got = read_some(fd, 1 << 20);
  ::close(fd);
  return got;
}

const std::string kBody(4096, 'x');
// What one answer to GET /x takes on the wire.
const std::size_t kAnswer =
    std::string("HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n").size() + kBody.size();

struct Served {
  explicit Served(http::HttpLimits limits, int threads = 2)
      : server(
            [](const http::HttpRequest& req, http::HttpResponse& res) {
              if (req.path == "/throw") throw std::runtime_error("handler failure");
              res.body = kBody;
            },
            threads, limits) {
    port = server.bind("127.0.0.1", 0).value();
    server.start();
  }
  http::EpollHttpServer server;
  int port{0};
};

TEST(EpollHttpLimits, PipeliningClientThatNeverReadsHoldsAtMostTheOutputCap) {
  http::HttpLimits limits;
  limits.max_output_bytes = 64 * 1024;
  Served s(limits);
  constexpr int kConns = 4;
  constexpr int kRequests = 5000;  // 20 MB of answers per connection
  const std::string one = "GET /x HTTP/1.1\r\nHost: t\r\n\r\n";
  std::string all;
  for (int i = 0; i < kRequests; ++i) all += one;
  std::vector<int> fds;
  std::vector<std::size_t> sent(kConns, 0);
  for (int i = 0; i < kConns; ++i) fds.push_back(connect_to(s.port, true));
  // Write as much as the kernel takes, never reading a byte.
  auto push = [&](int i) {
    while (sent[i] < all.size()) {
      const ssize_t n = ::send(fds[i], all.data() + sent[i], all.size() - sent[i], MSG_NOSIGNAL);
      if (n <= 0) break;
      sent[i] += static_cast<std::size_t>(n);
    }
  };
  ASSERT_TRUE(eventually(
      [&] {
        for (int i = 0; i < kConns; ++i) push(i);
        return s.server.stats().read_pauses.load() >= kConns;
      },
      5s))
      << "pauses " << s.server.stats().read_pauses.load() << " buffered "
      << s.server.buffered_output_bytes() << " sent " << sent[0] << "/" << all.size();
  // Paused connections are not read: what they buffer stops growing at the
  // cap plus at most one answer each.
  const auto bound = static_cast<std::int64_t>(kConns * (limits.max_output_bytes + kAnswer));
  for (int round = 0; round < 20; ++round) {
    for (int i = 0; i < kConns; ++i) push(i);
    EXPECT_LE(s.server.buffered_output_bytes(), bound);
  }
  EXPECT_GT(s.server.buffered_output_bytes(), 0);
  // The clients drain: every request is answered, in order, nothing lost.
  for (int i = 0; i < kConns; ++i) {
    std::size_t got = 0;
    char buf[65536];
    while (got < kRequests * kAnswer) {
      push(i);
      pollfd p{fds[i], static_cast<short>(POLLIN | (sent[i] < all.size() ? POLLOUT : 0)), 0};
      ASSERT_GT(::poll(&p, 1, 5000), 0) << "stalled at " << got << " bytes";
      const ssize_t n = ::recv(fds[i], buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) got += static_cast<std::size_t>(n);
      ASSERT_NE(n, 0) << "closed at " << got;
    }
    EXPECT_EQ(got, kRequests * kAnswer);
    ::close(fds[i]);
  }
  EXPECT_TRUE(eventually([&] { return s.server.buffered_output_bytes() == 0; }));
}

TEST(EpollHttpLimits, RequestHeadThatNeverEndsIsCutOffAtTheDeadline) {
  http::HttpLimits limits;
  limits.header_timeout_ms = 300;
  Served s(limits);
  // A head that stops half-way, and one that drips a byte at a time (each
  // byte would reset an idle timer; the deadline runs from the first byte).
  const int stalled = connect_to(s.port);
  ASSERT_TRUE(send_all(stalled, "GET /x HTTP/1.1\r\nHost: t\r\n"));
  const int drip = connect_to(s.port);
  ASSERT_TRUE(send_all(drip, "GET /x HTTP/1.1\r\n"));
  EXPECT_TRUE(eventually(
      [&] {
        ::send(drip, "X", 1, MSG_NOSIGNAL);
        return closed_by_peer(stalled) && closed_by_peer(drip);
      },
      10s, 20ms));
  EXPECT_EQ(s.server.stats().header_timeouts.load(), 2u);
  // A connection that completes its request in time is served.
  EXPECT_EQ(get(s.port, "/x").rfind("HTTP/1.1 200 OK", 0), 0u);
  ::close(stalled);
  ::close(drip);
}

TEST(EpollHttpLimits, IdleKeepAliveConnectionIsClosed) {
  http::HttpLimits limits;
  limits.idle_timeout_ms = 300;
  Served s(limits);
  const int fd = connect_to(s.port);
  ASSERT_TRUE(send_all(fd, "GET /x HTTP/1.1\r\nHost: t\r\n\r\n"));
  EXPECT_EQ(read_some(fd, kAnswer).size(), kAnswer);
  EXPECT_TRUE(eventually([&] { return closed_by_peer(fd); }, 10s));
  EXPECT_EQ(s.server.stats().idle_timeouts.load(), 1u);
  EXPECT_EQ(s.server.stats().header_timeouts.load(), 0u);
  ::close(fd);
}

TEST(EpollHttpLimits, ConnectionsBeyondTheLimitAreClosedAtOnce) {
  http::HttpLimits limits;
  limits.max_connections = 3;
  Served s(limits);
  std::vector<int> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(connect_to(s.port));
    ASSERT_TRUE(send_all(held.back(), "GET /x HTTP/1.1\r\nHost: t\r\n\r\n"));
    ASSERT_EQ(read_some(held.back(), kAnswer).size(), kAnswer);
  }
  EXPECT_EQ(s.server.stats().open_connections.load(), 3);
  const int extra = connect_to(s.port);
  EXPECT_TRUE(eventually([&] { return closed_by_peer(extra); }));
  ::close(extra);
  EXPECT_EQ(s.server.stats().refused_connections.load(), 1u);
  // A held connection still works; once one closes there is room again.
  ASSERT_TRUE(send_all(held[0], "GET /x HTTP/1.1\r\nHost: t\r\n\r\n"));
  EXPECT_EQ(read_some(held[0], kAnswer).size(), kAnswer);
  ::close(held[2]);
  EXPECT_TRUE(eventually([&] { return s.server.stats().open_connections.load() == 2; }));
  EXPECT_EQ(get(s.port, "/x").rfind("HTTP/1.1 200 OK", 0), 0u);
  ::close(held[0]);
  ::close(held[1]);
}

TEST(EpollHttpLimits, OutOfFileDescriptorsShedsWaitingConnectionsWithoutSpinning) {
  Served s(http::HttpLimits{}, 1);
  const int control = connect_to(s.port);  // accepted while descriptors remain
  ASSERT_TRUE(send_all(control, "GET /x HTTP/1.1\r\nHost: t\r\n\r\n"));
  ASSERT_EQ(read_some(control, kAnswer).size(), kAnswer);
  constexpr int kWaiting = 10;
  std::vector<int> clients;
  for (int i = 0; i < kWaiting; ++i) clients.push_back(::socket(AF_INET, SOCK_STREAM, 0));
  // From here no new descriptor can be opened in this process: the limit is
  // the lowest free number. connect() needs none, accept() does.
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  const int lowest_free = ::dup(0);
  ASSERT_GE(lowest_free, 0);
  ::close(lowest_free);
  rlimit low = saved;
  low.rlim_cur = static_cast<rlim_t>(lowest_free);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(s.port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int fd : clients) ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  // Each waiting client is told at once (closed), not left in the backlog.
  const bool all_shed = eventually([&] {
    for (int fd : clients)
      if (!closed_by_peer(fd)) return false;
    return true;
  });
  const auto errors = s.server.stats().accept_errors.load();
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
  EXPECT_TRUE(all_shed);
  // One failed accept per shed connection, not a loop spinning on a
  // listening socket that stays readable.
  EXPECT_GE(errors, static_cast<std::uint64_t>(kWaiting));
  EXPECT_LE(errors, static_cast<std::uint64_t>(2 * kWaiting));
  EXPECT_GE(s.server.stats().refused_connections.load(), static_cast<std::uint64_t>(kWaiting));
  for (int fd : clients) ::close(fd);
  // With descriptors back, old and new connections are served.
  ASSERT_TRUE(send_all(control, "GET /x HTTP/1.1\r\nHost: t\r\n\r\n"));
  EXPECT_EQ(read_some(control, kAnswer).size(), kAnswer);
  EXPECT_EQ(get(s.port, "/x").rfind("HTTP/1.1 200 OK", 0), 0u);
  ::close(control);
}

TEST(EpollHttpLimits, OutOfFileDescriptorsWithoutAReserveBacksOffInsteadOfSpinning) {
  Served s(http::HttpLimits{}, 1);
  const int client = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(s.port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // Below every descriptor the server holds: even its reserve cannot be
  // reopened, so the waiting connection cannot be shed.
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  rlimit low = saved;
  low.rlim_cur = 3;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  ASSERT_EQ(::connect(client, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  const bool failing = eventually([&] { return s.server.stats().accept_errors.load() >= 5; });
  const auto errors = s.server.stats().accept_errors.load();
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
  ASSERT_TRUE(failing);
  // Backing off (100 ms) makes at most a few failed accepts between two
  // looks 10 ms apart; a loop spinning on the readable listener makes
  // thousands in that time.
  EXPECT_LT(errors, 100u) << "accept() retried in a busy loop";
  // Descriptors back: the connection that waited in the backlog is served.
  ASSERT_TRUE(send_all(client, "GET /x HTTP/1.1\r\nHost: t\r\n\r\n"));
  timeval tv{5, 0};
  ::setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  EXPECT_EQ(read_some(client, kAnswer).size(), kAnswer);
  ::close(client);
}

/// A listener as another process would open it, with SO_REUSEPORT set (the
/// option that lets a same-user process join a port group).
int hostile_listener(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 16) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

int port_of(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

TEST(EpollHttpLimits, PortHeldByAnotherListenerIsRefusedNamingTheAddress) {
  const int other = hostile_listener(0);
  ASSERT_GE(other, 0);
  const int port = port_of(other);
  http::EpollHttpServer server([](const http::HttpRequest&, http::HttpResponse&) {}, 2);
  auto bound = server.bind("127.0.0.1", port);
  ASSERT_FALSE(bound);
  EXPECT_NE(bound.error().message.find("127.0.0.1:" + std::to_string(port)), std::string::npos)
      << bound.error().message;
  ::close(other);

  // The other way round: while we listen, nobody can join our port.
  Served s(http::HttpLimits{});
  EXPECT_EQ(hostile_listener(s.port), -1);
  EXPECT_EQ(get(s.port, "/x").rfind("HTTP/1.1 200 OK", 0), 0u);
}

TEST(EpollHttpLimits, RouterSyncRefusesToStartOnAPortInUse) {
  const int other = hostile_listener(0);
  ASSERT_GE(other, 0);
  const std::string addr = "127.0.0.1:" + std::to_string(port_of(other));
  router::AppOptions o;
  o.master_key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
  o.http_addr = addr;
  o.metrics_addr = "127.0.0.1:0";
  o.traefik_dir = ::testing::TempDir();
  router::App app(o);
  auto st = app.start();
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message.find(addr), std::string::npos) << st.error().message;
  ::close(other);
}

TEST(EpollHttpLimits, MalformedHeadsGet400AndACountAndTheServerGoesOn) {
  Served s(http::HttpLimits{});
  const std::vector<std::string> bad = {
      "garbage\r\n\r\n",
      "GET /x HTTP/1.1\r\nno colon here\r\n\r\n",
      "GET /x HTTP/1.1\r\n: empty name\r\n\r\n",
      "GET /x HTTP/1.1\r\nHost: a\r\n folded: line\r\n\r\n",
      "GET /x HTTP/1.1\r\nBad Name: v\r\n\r\n",
      "G(T /x HTTP/1.1\r\n\r\n",
      "GET /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
      "GET /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
      "GET /x HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
      "GET /x HTTP/1.1\r\nContent-Length:\r\n\r\n",
      "GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
      "GET /x HTTP/1.1\r\nHo\x01st: v\r\n\r\n",
  };
  std::uint64_t refused = 0;
  for (const auto& raw : bad) {
    const int fd = connect_to(s.port);
    ASSERT_TRUE(send_all(fd, raw));
    const std::string got = read_some(fd, 1 << 16);
    EXPECT_EQ(got.rfind("HTTP/1.1 400", 0), 0u) << raw << " -> " << got;
    ++refused;
    ::close(fd);
  }
  EXPECT_EQ(s.server.stats().bad_requests.load(), refused);
  // A head over 64 KiB: 431; a throwing handler: 500, counted.
  const int big = connect_to(s.port);
  ASSERT_TRUE(send_all(big, "GET /x HTTP/1.1\r\nX: " + std::string(70000, 'a')));
  EXPECT_EQ(read_some(big, 1 << 16).rfind("HTTP/1.1 431", 0), 0u);
  ::close(big);
  EXPECT_EQ(get(s.port, "/throw").rfind("HTTP/1.1 500", 0), 0u);
  EXPECT_EQ(s.server.stats().handler_errors.load(), 1u);
  EXPECT_EQ(get(s.port, "/x").rfind("HTTP/1.1 200 OK", 0), 0u);
}

/// A server whose handler runs on one worker: POST echoes the body, /block
/// waits until released.
struct Pooled {
  explicit Pooled(http::HttpLimits limits)
      : server(
            [this](const http::HttpRequest& req, http::HttpResponse& res) {
              ++handled;
              if (req.path == "/block") {
                std::unique_lock lk(mu);
                cv.wait(lk, [&] { return released; });
              }
              res.body = req.method + " " + req.path + " " + req.body;
            },
            1, with_workers(limits)) {
    server.set_head_check([](const http::HttpRequest& head, http::HttpResponse& res) {
      if (head.path != "/nope") return false;
      res.status = 404;
      return true;
    });
    server.set_refusal_observer([this](int status) {
      std::lock_guard lk(mu);
      refusals.push_back(status);
    });
    port = server.bind("127.0.0.1", 0).value();
    server.start();
  }
  ~Pooled() {
    release();
    server.stop();
  }
  static http::HttpLimits with_workers(http::HttpLimits l) {
    if (l.workers == 0) l.workers = 1;
    return l;
  }
  void release() {
    {
      std::lock_guard lk(mu);
      released = true;
    }
    cv.notify_all();
  }
  std::vector<int> seen_refusals() {
    std::lock_guard lk(mu);
    return refusals;
  }
  std::atomic<int> handled{0};
  std::mutex mu;
  std::condition_variable cv;
  bool released{false};
  std::vector<int> refusals;
  http::EpollHttpServer server;
  int port{0};
};

std::string post(const std::string& path, const std::string& body, bool close = true) {
  return "POST " + path + " HTTP/1.1\r\nHost: t\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n" + (close ? "Connection: close\r\n" : "") + "\r\n" + body;
}

TEST(EpollHttpWorkers, BodiesReachTheHandlerWholeAndPipelinedAnswersKeepTheirOrder) {
  Pooled s(http::HttpLimits{});
  const int fd = connect_to(s.port);
  ASSERT_TRUE(send_all(fd, post("/a", "first body", false) + post("/b", "", false) +
                               post("/c", std::string(100000, 'z'))));
  const std::string got = read_some(fd, 1 << 20);
  ::close(fd);
  const auto a = got.find("POST /a first body");
  const auto b = got.find("POST /b ");
  const auto c = got.find("POST /c zzzz");
  ASSERT_NE(a, std::string::npos) << got.substr(0, 300);
  ASSERT_NE(b, std::string::npos);
  ASSERT_NE(c, std::string::npos);
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  EXPECT_EQ(s.handled.load(), 3);
}

TEST(EpollHttpWorkers, OverTheLimitChunkedAndHeadRefusalsAreAnsweredBeforeTheBody) {
  http::HttpLimits limits;
  limits.max_body = 1000;
  Pooled s(limits);
  // Heads only: each is answered without waiting for a body that never comes.
  auto status_of = [&](const std::string& head) {
    const int fd = connect_to(s.port);
    EXPECT_TRUE(send_all(fd, head));
    const std::string got = read_some(fd, 1 << 16);
    ::close(fd);
    return got.substr(0, 12);
  };
  EXPECT_EQ(status_of("POST /a HTTP/1.1\r\nContent-Length: 1001\r\n\r\n"), "HTTP/1.1 413");
  EXPECT_EQ(status_of("POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), "HTTP/1.1 411");
  EXPECT_EQ(status_of("POST /nope HTTP/1.1\r\nContent-Length: 500\r\n\r\n"), "HTTP/1.1 404");
  EXPECT_EQ(s.handled.load(), 0);
  EXPECT_EQ(s.server.stats().too_large.load(), 1u);
  EXPECT_EQ(s.server.stats().bad_requests.load(), 2u);
  EXPECT_EQ(s.seen_refusals(), (std::vector<int>{413, 411}));
  // A client that sends its too-large body anyway still reads the 413.
  const int eager = connect_to(s.port);
  ASSERT_TRUE(send_all(eager, post("/a", std::string(2 << 20, 'e'))));
  EXPECT_EQ(read_some(eager, 1 << 16).rfind("HTTP/1.1 413", 0), 0u);
  ::close(eager);
  // Exactly at the limit is served.
  const int fd = connect_to(s.port);
  ASSERT_TRUE(send_all(fd, post("/a", std::string(1000, 'k'))));
  EXPECT_NE(read_some(fd, 1 << 16).find("POST /a kkk"), std::string::npos);
  ::close(fd);
}

// After a refusal the server reads and drops what the client still sends
// (up to 2 s / 4 MiB) before closing. A client that writes its whole body
// before reading (as most HTTP clients do) is refused while its body is on
// the way: it must be able to finish writing, then read the whole answer and
// an orderly end. A server that closed at once would answer the rest of the
// body with a reset: the client's writes fail and it never gets to the answer.
TEST(EpollHttpWorkers, ARefusedClientCanFinishSendingItsBodyThenReadsTheWholeAnswer) {
  http::HttpLimits limits;
  limits.max_body = 1000;
  Pooled s(limits);
  const int fd = connect_to(s.port);
  ASSERT_GE(fd, 0);
  // Small, fixed buffers on our side: the body cannot pile up in our kernel,
  // so the server really has to take it; a send that cannot finish gives up
  // after 5 s instead of hanging the suite.
  const int sndbuf = 16 * 1024;
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  ASSERT_TRUE(send_all(fd, "POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000000\r\n\r\n"));
  // The refusal is on its way before any of the body (answered from the head).
  pollfd p{fd, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1) << "no answer to a head announcing too large a body";
  // The body goes on regardless: 1 MiB, far more than the buffers between us
  // and the server hold, far less than the 4 MiB it drops.
  const std::string chunk(16 * 1024, 'b');
  std::size_t sent = 0;
  while (sent < (1u << 20)) {
    const ssize_t n = ::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  EXPECT_GE(sent, 1u << 20) << "the body was cut off after " << sent << " bytes (errno " << errno
                            << ")";
  // The whole answer, then an orderly end (not a reset).
  std::string got;
  char buf[4096];
  ssize_t n = 0;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) got.append(buf, static_cast<std::size_t>(n));
  const int end_errno = n < 0 ? errno : 0;
  ::close(fd);
  EXPECT_EQ(n, 0) << "the answer ended in an error (errno " << end_errno << ")";
  ASSERT_EQ(got.rfind("HTTP/1.1 413", 0), 0u) << got;
  const auto head_end = got.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos) << got;
  const auto cl = got.find("Content-Length: ");
  ASSERT_LT(cl, head_end) << got;
  EXPECT_EQ(got.size() - head_end - 4, std::stoul(got.substr(cl + 16))) << got;
  EXPECT_NE(got.find("Connection: close\r\n"), std::string::npos) << got;
  EXPECT_EQ(s.handled.load(), 0);
  EXPECT_EQ(s.server.stats().too_large.load(), 1u);
}

TEST(EpollHttpWorkers, ABodyDrippedPastTheDeadlineGets408AndNeverReachesTheHandler) {
  http::HttpLimits limits;
  limits.header_timeout_ms = 400;
  Pooled s(limits);
  const int fd = connect_to(s.port);
  // The head at once, then one body byte every 40 ms: each read is quick, the
  // request as a whole is not.
  ASSERT_TRUE(send_all(fd, "POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 200\r\n\r\n"));
  bool answered = false;
  for (int i = 0; i < 200 && !answered; ++i) {
    if (::send(fd, "b", 1, MSG_NOSIGNAL) != 1) break;
    pollfd p{fd, POLLIN, 0};
    answered = ::poll(&p, 1, 40) == 1;
  }
  ASSERT_TRUE(answered);
  const std::string got = read_some(fd, 1 << 16);
  EXPECT_EQ(got.rfind("HTTP/1.1 408", 0), 0u) << got;
  EXPECT_TRUE(closed_by_peer(fd));
  ::close(fd);
  EXPECT_EQ(s.server.stats().header_timeouts.load(), 1u);
  EXPECT_EQ(s.handled.load(), 0);
  EXPECT_EQ(s.seen_refusals(), std::vector<int>{408});
}

TEST(EpollHttpWorkers, AFullQueueIs503WithRetryAfterWhileTheLoopServesOn) {
  http::HttpLimits limits;
  limits.max_queued = 1;
  limits.retry_after_seconds = 7;
  Pooled s(limits);
  const int busy = connect_to(s.port);
  ASSERT_TRUE(send_all(busy, post("/block", "one")));
  ASSERT_TRUE(eventually([&] { return s.server.stats().busy_workers.load() == 1; }));
  const int queued = connect_to(s.port);
  ASSERT_TRUE(send_all(queued, post("/block", "two")));
  ASSERT_TRUE(eventually([&] { return s.server.stats().queued_requests.load() == 1; }));
  // A client that leaves while its request waits: its answer is dropped.
  const int gone = connect_to(s.port);
  const int refused = connect_to(s.port);
  ASSERT_TRUE(send_all(refused, post("/a", "three")));
  const std::string got = read_some(refused, 1 << 16);
  EXPECT_EQ(got.rfind("HTTP/1.1 503", 0), 0u) << got;
  EXPECT_NE(got.find("Retry-After: 7\r\n"), std::string::npos) << got;
  EXPECT_TRUE(closed_by_peer(refused));
  ::close(refused);
  ::close(gone);
  EXPECT_EQ(s.server.stats().queue_full.load(), 1u);
  EXPECT_EQ(s.seen_refusals(), std::vector<int>{503});
  s.release();
  EXPECT_NE(read_some(busy, 1 << 16).find("POST /block one"), std::string::npos);
  EXPECT_NE(read_some(queued, 1 << 16).find("POST /block two"), std::string::npos);
  ::close(busy);
  ::close(queued);
  EXPECT_EQ(s.handled.load(), 2);
  EXPECT_TRUE(eventually([&] { return s.server.stats().busy_workers.load() == 0; }));
  EXPECT_EQ(s.server.stats().queued_requests.load(), 0);
}

TEST(EpollHttpWorkers, AnAnswerForAClientThatLeftNeverReachesTheNextOnItsDescriptor) {
  Pooled s(http::HttpLimits{});
  const int leaver = connect_to(s.port);
  ASSERT_TRUE(send_all(leaver, post("/block", "secret of the first client")));
  ASSERT_TRUE(eventually([&] { return s.server.stats().busy_workers.load() == 1; }));
  // It resets the connection (a plain FIN is only seen once the answer is
  // written: nothing is read while a worker has the request).
  const linger reset{1, 0};
  ::setsockopt(leaver, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
  ::close(leaver);
  ASSERT_TRUE(eventually([&] { return s.server.stats().open_connections.load() == 0; }));
  // The server likely hands the next connection the same descriptor.
  const int next = connect_to(s.port);
  ASSERT_TRUE(eventually([&] { return s.server.stats().open_connections.load() == 1; }));
  s.release();
  ASSERT_TRUE(eventually([&] { return s.server.stats().busy_workers.load() == 0; }));
  ASSERT_TRUE(send_all(next, post("/a", "mine")));
  const std::string got = read_some(next, 1 << 16);
  EXPECT_EQ(got.find("secret"), std::string::npos) << got;
  EXPECT_NE(got.find("POST /a mine"), std::string::npos) << got;
  ::close(next);
}

}  // namespace
}  // namespace supaplane
