// The console server's own Prometheus metrics (prom-client), served on a
// listener of their own (SUPAPLANE_CONSOLE_METRICS_ADDR), never on the port
// the browsers reach.
import { createServer, type Server } from "node:http";
import { Counter, Registry, collectDefaultMetrics } from "prom-client";

/** Why the server answered a request without serving or forwarding it. */
export const refusalReasons = [
  "unknown_method", // a gRPC-Web path outside the route table (404)
  "content_type", // gRPC-Web other than binary protobuf (415)
  "body_too_large", // a request body over SUPAPLANE_CONSOLE_MAX_REQUEST_BYTES (413)
  "bad_frame", // a body that is not exactly one uncompressed gRPC-Web frame (400)
  "not_grpc_web", // a POST that is not gRPC-Web (404)
  "method_not_allowed", // a page or asset asked for with another method than GET / HEAD (405)
  "bad_path", // a path that does not decode (400)
  "header_timeout", // headers not complete within the header deadline (408)
  "headers_too_large", // headers over Node's limit (431)
  "bad_http", // a request that does not parse as HTTP (400)
] as const;
export type RefusalReason = (typeof refusalReasons)[number];

/** Owns the registry and the console's counters. Single-threaded (Node's loop). */
export class ConsoleMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<"route" | "code">;
  private readonly calls: Counter<"method" | "code">;
  private readonly refusals: Counter<"reason">;

  constructor(opts: { processMetrics?: boolean } = {}) {
    this.requests = new Counter({
      name: "supaplane_console_http_requests_total",
      help: "HTTP requests answered, by route (bridge, page, asset, healthz, readyz, other) and status code ('aborted': the client left first)",
      labelNames: ["route", "code"],
      registers: [this.registry],
    });
    this.calls = new Counter({
      name: "supaplane_console_bridge_calls_total",
      help: "gRPC calls the bridge forwarded, by method path and the gRPC status they ended with",
      labelNames: ["method", "code"],
      registers: [this.registry],
    });
    this.refusals = new Counter({
      name: "supaplane_console_refused_requests_total",
      help: "requests refused before they were served or forwarded, by reason",
      labelNames: ["reason"],
      registers: [this.registry],
    });
    for (const reason of refusalReasons) this.refusals.inc({ reason }, 0);
    // process_* and nodejs_* (CPU, memory, open fds, event loop lag, GC).
    if (opts.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  request(route: string, code: number | "aborted"): void {
    this.requests.inc({ route, code: String(code) });
  }
  call(method: string, code: string): void {
    this.calls.inc({ method, code });
  }
  refused(reason: RefusalReason): void {
    this.refusals.inc({ reason });
  }

  /** An HTTP server answering GET /metrics (the text format) and 404 to anything else. */
  createServer(): Server {
    return createServer({ requestTimeout: 10000, headersTimeout: 10000 }, (req, res) => {
      const path = (req.url ?? "/").split("?")[0];
      if (path !== "/metrics" || (req.method !== "GET" && req.method !== "HEAD")) {
        req.resume();
        res.writeHead(404, { "content-type": "text/plain; charset=utf-8" });
        res.end("not found: the console's metrics are at GET /metrics\n");
        return;
      }
      this.registry.metrics().then(
        (text) => {
          res.writeHead(200, { "content-type": this.registry.contentType, "cache-control": "no-store" });
          res.end(req.method === "HEAD" ? undefined : text);
        },
        (e: Error) => {
          res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
          res.end(`metrics failed: ${e.message}\n`);
        },
      );
    });
  }
}
