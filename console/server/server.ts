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
//   SUPAPLANE_CONSOLE_METRICS_ADDR       where GET /metrics (Prometheus) listens, apart from
//                            the browsers' port (default 127.0.0.1:9105)
import * as grpc from "@grpc/grpc-js";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { readFileSync, existsSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { AccountService, AdminService, TenantService, BillingService } from "../src/gen/supaplane/v1/api_pb.js";
import { createConsoleServer } from "./app.js";
import { addRoutes, type RouteTable } from "./bridge.js";
import { parseTrustedProxies } from "./client_address.js";
import { ConsoleMetrics } from "./metrics.js";

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
const metricsAddr = env.SUPAPLANE_CONSOLE_METRICS_ADDR || "127.0.0.1:9105";
const metricsListen = parseAddr(metricsAddr, "SUPAPLANE_CONSOLE_METRICS_ADDR");
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

function apiReachable(): Promise<boolean> {
  return new Promise((resolve) => {
    apiClient.waitForReady(Date.now() + 1000, (err) => resolve(!err));
  });
}

const metrics = new ConsoleMetrics();
const server = createConsoleServer({
  routes,
  publicDir,
  indexHtml,
  maxRequestBytes,
  trustedProxies,
  apiAddr,
  apiReachable,
  log,
  metrics,
});

function listenOn(srv: Server, at: { host: string; port: number }, addr: string, name: string, then: () => void) {
  srv.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EADDRINUSE") fail(`${addr} is already in use (${name})`);
    fail(`cannot listen on ${addr} (${name}): ${e.message}`);
  });
  srv.listen(at.port, at.host, then);
}

const metricsServer = metrics.createServer();
listenOn(server, listen, listenAddr, "SUPAPLANE_CONSOLE_ADDR", () => {
  log(
    `listening on http://${listenAddr}; api ${apiAddr}${tls ? " (TLS)" : ""}` +
      (billingAddr ? `; billing ${billingAddr}` : "; billing off") +
      (trustedProxies.size ? `; ${trustedProxies.size} trusted proxy entries` : ""),
  );
});
listenOn(metricsServer, metricsListen, metricsAddr, "SUPAPLANE_CONSOLE_METRICS_ADDR", () => {
  const a = metricsServer.address() as AddressInfo;
  log(`metrics on http://${a.family === "IPv6" ? `[${a.address}]` : a.address}:${a.port}/metrics`);
});

function shutdown(sig: string) {
  log(`${sig}: stopping`);
  server.close();
  server.closeAllConnections();
  metricsServer.close();
  metricsServer.closeAllConnections();
  apiClient.close();
  setTimeout(() => process.exit(0), 100).unref();
}
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));
