// supaplane-console: serves the built web console and bridges its gRPC-Web
// calls to supaplane-api (and supaplane-billing). It keeps no state and adds
// no API of its own.
//
//   SUPAPLANE_CONSOLE_ADDR   where to listen (default 127.0.0.1:3000)
//   SUPAPLANE_API_ADDR       supaplane-api's gRPC address (default 127.0.0.1:50051)
//   SUPAPLANE_BILLING_ADDR   supaplane-billing's gRPC address (optional: BillingService)
//   SUPAPLANE_TLS=1          speak TLS to the api and billing (system roots)
//   SUPAPLANE_CA_FILE        PEM roots to trust for that TLS (implies SUPAPLANE_TLS)
//   SUPAPLANE_CONSOLE_MAX_REQUEST_BYTES  largest gRPC-Web request body (default 65536)
//   SUPAPLANE_CONSOLE_TRUSTED_PROXIES    addresses / CIDR networks (comma-separated) of the
//                            reverse proxy in front (Traefik), whose X-Forwarded-For names the
//                            browser; empty (default): the socket's peer is the browser
import * as grpc from "@grpc/grpc-js";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { readFileSync, existsSync, statSync } from "node:fs";
import { extname, join, normalize, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { AccountService, AdminService, TenantService, BillingService } from "../src/gen/supaplane/v1/api_pb.js";
import { addRoutes, handleGrpcWeb, isGrpcWeb, type RouteTable } from "./bridge.js";
import { parseTrustedProxies } from "./client_address.js";

const log = (line: string) => process.stdout.write(`${new Date().toISOString()} supaplane-console ${line}\n`);

function fail(msg: string): never {
  process.stderr.write(`supaplane-console: ${msg}\n`);
  process.exit(1);
}

function parseAddr(v: string, name: string): { host: string; port: number } {
  const m = /^(.*):(\d{1,5})$/.exec(v);
  if (!m || Number(m[2]) > 65535) fail(`${name}='${v}' is not host:port`);
  return { host: m[1].replace(/^\[(.*)\]$/, "$1") || "0.0.0.0", port: Number(m[2]) };
}

const env = process.env;
const listenAddr = env.SUPAPLANE_CONSOLE_ADDR || "127.0.0.1:3000";
const listen = parseAddr(listenAddr, "SUPAPLANE_CONSOLE_ADDR");
const apiAddr = env.SUPAPLANE_API_ADDR || "127.0.0.1:50051";
parseAddr(apiAddr, "SUPAPLANE_API_ADDR");
const billingAddr = env.SUPAPLANE_BILLING_ADDR || "";
if (billingAddr) parseAddr(billingAddr, "SUPAPLANE_BILLING_ADDR");
const caFile = env.SUPAPLANE_CA_FILE || "";
const tls = caFile !== "" || ["1", "true", "yes"].includes((env.SUPAPLANE_TLS || "").toLowerCase());
const maxRequestBytes = Number(env.SUPAPLANE_CONSOLE_MAX_REQUEST_BYTES || 65536);
if (!Number.isInteger(maxRequestBytes) || maxRequestBytes < 1024 || maxRequestBytes > 16 << 20)
  fail("SUPAPLANE_CONSOLE_MAX_REQUEST_BYTES must be an integer in 1024..16777216");
const trustedProxies = parseTrustedProxies(env.SUPAPLANE_CONSOLE_TRUSTED_PROXIES || "");
if (typeof trustedProxies === "string") fail(`SUPAPLANE_CONSOLE_TRUSTED_PROXIES: ${trustedProxies}`);

let credentials: grpc.ChannelCredentials;
if (tls) {
  let roots: Buffer | undefined;
  if (caFile) {
    try {
      roots = readFileSync(caFile);
    } catch (e) {
      fail(`cannot read SUPAPLANE_CA_FILE ${caFile}: ${(e as Error).message}`);
    }
    if (!roots.toString("latin1").includes("-----BEGIN CERTIFICATE-----"))
      fail(`SUPAPLANE_CA_FILE ${caFile} holds no PEM certificate`);
  }
  credentials = grpc.credentials.createSsl(roots);
} else {
  credentials = grpc.credentials.createInsecure();
}

// Reconnect quickly after an api restart: the console is interactive.
const channelOptions: grpc.ChannelOptions = {
  "grpc.initial_reconnect_backoff_ms": 250,
  "grpc.max_reconnect_backoff_ms": 2000,
  "grpc.max_receive_message_length": 64 << 20,
  "grpc.keepalive_time_ms": 30000,
};
const apiClient = new grpc.Client(apiAddr, credentials, channelOptions);
const routes: RouteTable = new Map();
addRoutes(routes, [AccountService, TenantService, AdminService], apiClient);
if (billingAddr) addRoutes(routes, [BillingService], new grpc.Client(billingAddr, credentials, channelOptions));

// The built app: dist/public next to dist/server.
const here = dirname(fileURLToPath(import.meta.url));
const publicDir = env.SUPAPLANE_CONSOLE_PUBLIC_DIR || join(here, "..", "public");
if (!existsSync(join(publicDir, "index.html")))
  fail(`no built app in ${publicDir} (run: cd console && npm ci && npm run build)`);
// The page learns whether billing is configured from a meta tag, not from an API.
const indexHtml = readFileSync(join(publicDir, "index.html"), "utf8").replace(
  "<!--supaplane-config-->",
  `<meta name="supaplane-billing" content="${billingAddr ? "on" : "off"}">`,
);

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

function serveStatic(req: IncomingMessage, res: ServerResponse): void {
  if (req.method !== "GET" && req.method !== "HEAD") {
    sendText(res, 405, "method not allowed\n");
    return;
  }
  let path: string;
  try {
    path = decodeURIComponent((req.url ?? "/").split("?")[0]);
  } catch {
    sendText(res, 400, "bad request\n");
    return;
  }
  const ext = extname(path);
  if (ext && types[ext]) {
    const file = normalize(join(publicDir, path));
    if (file.startsWith(publicDir + "/") && existsSync(file) && statSync(file).isFile()) {
      res.writeHead(200, { "content-type": types[ext], "cache-control": "no-cache" });
      res.end(req.method === "HEAD" ? undefined : readFileSync(file));
      return;
    }
    sendText(res, 404, "not found\n");
    return;
  }
  // Every other path is a page of the single-page app.
  res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
  res.end(req.method === "HEAD" ? undefined : indexHtml);
}

function apiReachable(): Promise<boolean> {
  return new Promise((resolve) => {
    apiClient.waitForReady(Date.now() + 1000, (err) => resolve(!err));
  });
}

const server = createServer({ requestTimeout: 0, headersTimeout: 20000 }, (req, res) => {
  for (const [k, v] of Object.entries(securityHeaders)) res.setHeader(k, v);
  const path = (req.url ?? "/").split("?")[0];
  if (isGrpcWeb(req)) {
    handleGrpcWeb(req, res, routes, { maxRequestBytes, defaultUnaryTimeoutMs: 30000, trustedProxies, log }).catch((e) => {
      log(`bridge error on ${path}: ${(e as Error).message}`);
      if (!res.headersSent) sendText(res, 500, "internal error\n");
      else res.destroy();
    });
    return;
  }
  if (req.method === "POST") {
    // Not gRPC-Web: the console has no other API.
    req.resume();
    sendText(res, 404, "not found\n");
    return;
  }
  if (path === "/healthz") {
    sendText(res, 200, "ok\n");
    return;
  }
  if (path === "/readyz") {
    apiReachable().then((ok) =>
      ok ? sendText(res, 200, "ready\n") : sendText(res, 503, `not ready: supaplane-api at ${apiAddr} unreachable\n`),
    );
    return;
  }
  serveStatic(req, res);
});

server.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EADDRINUSE") fail(`${listenAddr} is already in use (SUPAPLANE_CONSOLE_ADDR)`);
  fail(`cannot listen on ${listenAddr}: ${e.message}`);
});
server.listen(listen.port, listen.host, () => {
  log(
    `listening on http://${listenAddr}; api ${apiAddr}${tls ? " (TLS)" : ""}` +
      (billingAddr ? `; billing ${billingAddr}` : "; billing off") +
      (trustedProxies.size ? `; ${trustedProxies.size} trusted proxy entries` : ""),
  );
});

function shutdown(sig: string) {
  log(`${sig}: stopping`);
  server.close();
  server.closeAllConnections();
  apiClient.close();
  setTimeout(() => process.exit(0), 100).unref();
}
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));
