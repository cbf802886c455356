#include "supaplane/http/metrics.hpp"

namespace supaplane::http {

void export_metrics(metrics::Mirror& mirror, const std::string& prefix,
                    const prometheus::Labels& labels, const EpollHttpServer& server) {
  const auto& s = server.stats();
  mirror.counter(prefix + "refused_connections_total",
                 "connections closed at once: over the connection limit, or shed while out of "
                 "file descriptors",
                 labels, s.refused_connections);
  mirror.counter(prefix + "header_timeouts_total",
                 "connections closed because a request did not arrive whole in time", labels,
                 s.header_timeouts);
  mirror.counter(prefix + "idle_timeouts_total",
                 "connections closed after the idle keep-alive timeout", labels, s.idle_timeouts);
  mirror.counter(prefix + "bad_requests_total",
                 "malformed or over-limit requests answered 400/411/413/431 and closed", labels,
                 s.bad_requests);
  mirror.counter(prefix + "too_large_total",
                 "requests whose Content-Length was over the body limit (413; also counted in "
                 "bad_requests_total)",
                 labels, s.too_large);
  mirror.counter(prefix + "accept_errors_total",
                 "accept() failures (out of file descriptors or kernel memory)", labels,
                 s.accept_errors);
  mirror.counter(prefix + "read_pauses_total",
                 "times a connection's unsent answers reached the cap and reading stopped", labels,
                 s.read_pauses);
  mirror.counter(prefix + "handler_errors_total", "requests whose handler threw (answered 500)",
                 labels, s.handler_errors);
  mirror.gauge(prefix + "open_connections", "open HTTP connections", labels,
               [&s] { return static_cast<double>(s.open_connections.load()); });
  mirror.gauge(prefix + "buffered_output_bytes",
               "answer bytes waiting to be sent, over all connections", labels,
               [&server] { return static_cast<double>(server.buffered_output_bytes()); });
  if (server.limits().workers <= 0) return;
  mirror.counter(prefix + "queue_full_total",
                 "requests answered 503 with Retry-After: every worker busy and the queue full",
                 labels, s.queue_full);
  mirror.gauge(prefix + "queued_requests", "complete requests waiting for a worker", labels,
               [&s] { return static_cast<double>(s.queued_requests.load()); });
  mirror.gauge(prefix + "busy_workers", "workers running a request's handler", labels,
               [&s] { return static_cast<double>(s.busy_workers.load()); });
}

}  // namespace supaplane::http
