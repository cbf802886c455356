import { describe, it, before, after } from "node:test";
import { expect } from "./expect.js";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { connect } from "node:net";
import { Client, credentials } from "@grpc/grpc-js";
import { AccountService } from "../../src/gen/supaplane/v1/api_pb.js";
import { createConsoleServer } from "../../server/app.js";
import { addRoutes, dataFrame, type RouteTable } from "../../server/bridge.js";
import { parseTrustedProxies, type TrustedProxies } from "../../server/client_address.js";
import { ConsoleMetrics } from "../../server/metrics.js";

/** The value of one sample of the text format (labels in any order), or undefined. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got: Record<string, string> = {};
    for (const kv of (m[2] ?? "").matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)) got[kv[1]] = kv[2];
    if (Object.keys(labels).length === Object.keys(got).length && Object.entries(labels).every(([k, v]) => got[k] === v))
      return Number(m[3]);
  }
  return undefined;
}

function listen(s: Server): Promise<number> {
  return new Promise((resolve) => s.listen(0, "127.0.0.1", () => resolve((s.address() as AddressInfo).port)));
}

/** Waits (bounded) for a condition that an event after the response sets. */
async function eventually(cond: () => Promise<boolean>, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("the console's /metrics", () => {
  const maxRequestBytes = 1024;
  let dir: string;
  let api: Client;
  let server: Server;
  let metricsServer: Server;
  let base: string;
  let metricsUrl: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "console-metrics-"));
    writeFileSync(join(dir, "index.html"), "<!doctype html><title>t</title>");
    // No api listens on port 1: a forwarded call ends UNAVAILABLE at once.
    api = new Client("127.0.0.1:1", credentials.createInsecure());
    const routes: RouteTable = new Map();
    addRoutes(routes, [AccountService], api);
    const metrics = new ConsoleMetrics();
    server = createConsoleServer({
      routes,
      publicDir: dir,
      indexHtml: "<!doctype html><title>t</title>",
      maxRequestBytes,
      trustedProxies: parseTrustedProxies("") as TrustedProxies,
      apiAddr: "127.0.0.1:1",
      apiReachable: async () => false,
      log: () => {},
      metrics,
    });
    metricsServer = metrics.createServer();
    base = `http://127.0.0.1:${await listen(server)}`;
    metricsUrl = `http://127.0.0.1:${await listen(metricsServer)}/metrics`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
    metricsServer.closeAllConnections();
    metricsServer.close();
    api.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const scrape = async () => {
    const r = await fetch(metricsUrl);
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type") ?? "").toMatch(/^text\/plain; version=0\.0\.4/);
    return r.text();
  };
  const grpcWeb = (path: string, body: Buffer, type = "application/grpc-web+proto") =>
    fetch(base + path, { method: "POST", headers: { "content-type": type }, body: new Uint8Array(body) });

  it("starts with every refusal reason at 0, and process metrics", async () => {
    const text = await scrape();
    for (const reason of ["body_too_large", "unknown_method", "content_type", "bad_frame", "header_timeout"])
      expect(sample(text, "supaplane_console_refused_requests_total", { reason })).toBe(0);
    expect(sample(text, "process_cpu_user_seconds_total", {}) !== undefined).toBe(true);
    expect(sample(text, "process_resident_memory_bytes", {}) !== undefined).toBe(true);
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds /m);
  });

  it("counts a body over the limit, an unknown method and a bad frame as refusals, and their statuses", async () => {
    const big = await grpcWeb("/supaplane.v1.AccountService/Login", dataFrame(Buffer.alloc(maxRequestBytes + 100)));
    expect(big.status).toBe(413);
    await big.arrayBuffer();
    const unknown = await grpcWeb("/supaplane.v1.AdminService/Nope", dataFrame(Buffer.alloc(1)));
    expect(unknown.status).toBe(404);
    await unknown.arrayBuffer();
    const bad = await grpcWeb("/supaplane.v1.AccountService/Login", Buffer.from([1, 0, 0, 0, 0]));
    expect(bad.status).toBe(400);
    await bad.arrayBuffer();

    const text = await scrape();
    expect(sample(text, "supaplane_console_refused_requests_total", { reason: "body_too_large" })).toBe(1);
    expect(sample(text, "supaplane_console_refused_requests_total", { reason: "unknown_method" })).toBe(1);
    expect(sample(text, "supaplane_console_refused_requests_total", { reason: "bad_frame" })).toBe(1);
    // Nothing refused was forwarded.
    expect(text.includes("supaplane_console_bridge_calls_total{")).toBe(false);
    // The request counter moves when each answer is complete.
    expect(
      await eventually(async () => {
        const t = await scrape();
        return (
          sample(t, "supaplane_console_http_requests_total", { route: "bridge", code: "413" }) === 1 &&
          sample(t, "supaplane_console_http_requests_total", { route: "bridge", code: "404" }) === 1 &&
          sample(t, "supaplane_console_http_requests_total", { route: "bridge", code: "400" }) === 1
        );
      }),
    ).toBe(true);
  });

  it("counts a forwarded call by method and gRPC status", async () => {
    const r = await grpcWeb("/supaplane.v1.AccountService/Login", dataFrame(Buffer.alloc(0)));
    expect(r.status).toBe(200);
    expect(r.headers.get("grpc-status")).toBe("14");
    await r.arrayBuffer();
    const text = await scrape();
    expect(
      sample(text, "supaplane_console_bridge_calls_total", {
        method: "/supaplane.v1.AccountService/Login",
        code: "UNAVAILABLE",
      }),
    ).toBe(1);
  });

  it("counts pages, health checks and what Node refuses before a request exists", async () => {
    expect((await fetch(base + "/healthz")).status).toBe(200);
    expect((await fetch(base + "/projects", { method: "DELETE" })).status).toBe(405);
    // Not HTTP at all: Node answers 400 and the refusal is counted.
    const answer = await new Promise<string>((resolve, reject) => {
      const s = connect(Number(new URL(base).port), "127.0.0.1", () => s.write("NONSENSE\r\n\r\n"));
      let got = "";
      s.on("data", (d) => (got += d.toString("latin1")));
      s.on("end", () => resolve(got));
      s.on("error", reject);
    });
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    const text = await scrape();
    expect(sample(text, "supaplane_console_refused_requests_total", { reason: "method_not_allowed" })).toBe(1);
    expect(sample(text, "supaplane_console_refused_requests_total", { reason: "bad_http" })).toBe(1);
    expect(
      await eventually(async () => {
        const t = await scrape();
        return (
          sample(t, "supaplane_console_http_requests_total", { route: "healthz", code: "200" }) === 1 &&
          sample(t, "supaplane_console_http_requests_total", { route: "page", code: "405" }) === 1
        );
      }),
    ).toBe(true);
  });

  it("answers only GET /metrics on its own port", async () => {
    const r = await fetch(metricsUrl.replace("/metrics", "/"));
    expect(r.status).toBe(404);
    await r.text();
    const post = await fetch(metricsUrl, { method: "POST", body: "x" });
    expect(post.status).toBe(404);
    await post.text();
    // And the browsers' port does not serve it: /metrics there is a page of the app.
    const page = await fetch(base + "/metrics");
    expect(await page.text()).toBe("<!doctype html><title>t</title>");
  });
});
