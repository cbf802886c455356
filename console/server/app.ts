// The console's HTTP server: the built app, /healthz, /readyz and the
// gRPC-Web bridge, counted in ConsoleMetrics. server.ts builds it from the
// environment; the unit tests build it with their own settings.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { readFileSync, existsSync, statSync } from "node:fs";
import { extname, join, normalize } from "node:path";
import { handleGrpcWeb, isGrpcWeb, type RouteTable } from "./bridge.js";
import type { TrustedProxies } from "./client_address.js";
import type { ConsoleMetrics, RefusalReason } from "./metrics.js";

export interface ConsoleServerConfig {
  routes: RouteTable;
  /** dist/public: index.html, app.js, style.css, ... */
  publicDir: string;
  /** index.html as served (with the page's configuration filled in). */
  indexHtml: string;
  maxRequestBytes: number;
  trustedProxies: TrustedProxies;
  /** For /readyz's answer. */
  apiAddr: string;
  apiReachable: () => Promise<boolean>;
  log: (line: string) => void;
  metrics: ConsoleMetrics;
}

const securityHeaders: Record<string, string> = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "x-content-type-options": "nosniff",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
  "permissions-policy": "camera=(), microphone=(), geolocation=()",
};

const types: Record<string, string> = {
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".map": "application/json",
};

function sendText(res: ServerResponse, code: number, text: string): void {
  res.writeHead(code, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" });
  res.end(text);
}

/** The route label of a request: a small fixed set, never the raw path. */
function routeOf(req: IncomingMessage, path: string): string {
  if (isGrpcWeb(req)) return "bridge";
  if (path === "/healthz" || path === "/readyz") return path.slice(1);
  if (req.method === "POST") return "other";
  return extname(path) ? "asset" : "page";
}

export function createConsoleServer(c: ConsoleServerConfig): Server {
  const refuse = (res: ServerResponse, reason: RefusalReason, code: number, text: string) => {
    c.metrics.refused(reason);
    sendText(res, code, text);
  };

  function serveStatic(req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== "GET" && req.method !== "HEAD") {
      refuse(res, "method_not_allowed", 405, "method not allowed\n");
      return;
    }
    let path: string;
    try {
      path = decodeURIComponent((req.url ?? "/").split("?")[0]);
    } catch {
      refuse(res, "bad_path", 400, "bad request\n");
      return;
    }
    const ext = extname(path);
    if (ext && types[ext]) {
      const file = normalize(join(c.publicDir, path));
      if (file.startsWith(c.publicDir + "/") && existsSync(file) && statSync(file).isFile()) {
        res.writeHead(200, { "content-type": types[ext], "cache-control": "no-cache" });
        res.end(req.method === "HEAD" ? undefined : readFileSync(file));
        return;
      }
      sendText(res, 404, "not found\n");
      return;
    }
    // Every other path is a page of the single-page app.
    res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
    res.end(req.method === "HEAD" ? undefined : c.indexHtml);
  }

  const server = createServer({ requestTimeout: 0, headersTimeout: 20000 }, (req, res) => {
    for (const [k, v] of Object.entries(securityHeaders)) res.setHeader(k, v);
    const path = (req.url ?? "/").split("?")[0];
    const route = routeOf(req, path);
    // Counted when the answer is complete (a stream: when it ends).
    res.on("close", () => c.metrics.request(route, res.writableFinished ? res.statusCode : "aborted"));
    if (route === "bridge") {
      handleGrpcWeb(req, res, c.routes, {
        maxRequestBytes: c.maxRequestBytes,
        defaultUnaryTimeoutMs: 30000,
        trustedProxies: c.trustedProxies,
        log: c.log,
        metrics: c.metrics,
      }).catch((e) => {
        c.log(`bridge error on ${path.slice(0, 200)}: ${(e as Error).message}`);
        if (!res.headersSent) sendText(res, 500, "internal error\n");
        else res.destroy();
      });
      return;
    }
    if (req.method === "POST") {
      // Not gRPC-Web: the console has no other API.
      req.resume();
      refuse(res, "not_grpc_web", 404, "not found\n");
      return;
    }
    if (path === "/healthz") {
      sendText(res, 200, "ok\n");
      return;
    }
    if (path === "/readyz") {
      c.apiReachable().then((ok) =>
        ok ? sendText(res, 200, "ready\n") : sendText(res, 503, `not ready: supaplane-api at ${c.apiAddr} unreachable\n`),
      );
      return;
    }
    serveStatic(req, res);
  });

  // What Node refuses before a request exists (Node's own answers, counted).
  server.on("clientError", (err: NodeJS.ErrnoException, socket: Socket) => {
    // As Node's default: no answer on a dead socket, or over a response
    // already under way on it (keep-alive).
    const inFlight = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (err.code === "ECONNRESET" || !socket.writable || inFlight?.headersSent) {
      socket.destroy();
      return;
    }
    let reason: RefusalReason = "bad_http";
    let status = "400 Bad Request";
    if (err.code === "ERR_HTTP_REQUEST_TIMEOUT") {
      reason = "header_timeout";
      status = "408 Request Timeout";
    } else if (err.code === "HPE_HEADER_OVERFLOW") {
      reason = "headers_too_large";
      status = "431 Request Header Fields Too Large";
    }
    c.metrics.refused(reason);
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  });
  return server;
}
