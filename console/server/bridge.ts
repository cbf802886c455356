// The gRPC-Web → gRPC bridge of supaplane-console. Generic: it knows the
// allowed methods only from the service descriptors generated from proto/
// (path and unary / server-streaming), and passes the request and response
// messages through as opaque bytes. Nothing but those methods is forwarded.
import * as grpc from "@grpc/grpc-js";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { DescService } from "@bufbuild/protobuf";
import { clientAddress, type TrustedProxies } from "./client_address.js";
import type { RefusalReason } from "./metrics.js";

export type MethodKind = "unary" | "server_streaming";

export interface Route {
  kind: MethodKind;
  client: grpc.Client;
}

/** Path ("/supaplane.v1.TenantService/GetTenant") → how to forward it. */
export type RouteTable = Map<string, Route>;

/**
 * Every method of the given services, bound to one client. Client and
 * bidirectional streaming methods are left out: gRPC-Web cannot carry them.
 */
export function addRoutes(table: RouteTable, services: DescService[], client: grpc.Client): void {
  for (const s of services) {
    for (const m of s.methods) {
      if (m.methodKind !== "unary" && m.methodKind !== "server_streaming") continue;
      table.set(`/${s.typeName}/${m.name}`, { kind: m.methodKind, client });
    }
  }
}

export interface BridgeOptions {
  maxRequestBytes: number;
  /** Upper bound on a unary call when the browser sends no grpc-timeout. */
  defaultUnaryTimeoutMs: number;
  /** Peers whose X-Forwarded-For names the browser (a reverse proxy in front). */
  trustedProxies: TrustedProxies;
  log: (line: string) => void;
  /** Counts forwarded calls and refusals (ConsoleMetrics). */
  metrics?: {
    call(method: string, code: string): void;
    refused(reason: RefusalReason): void;
  };
}

/** Percent-encoding of grpc-message (gRPC HTTP/2 spec). */
export function encodeGrpcMessage(msg: string): string {
  const bytes = Buffer.from(msg, "utf8");
  let out = "";
  for (const b of bytes) {
    if (b >= 0x20 && b <= 0x7e && b !== 0x25) out += String.fromCharCode(b);
    else out += "%" + b.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

/** One gRPC-Web data frame: flag 0, big-endian length, the message. */
export function dataFrame(msg: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt8(0, 0);
  head.writeUInt32BE(msg.length, 1);
  return Buffer.concat([head, msg]);
}

/** The trailer frame (flag 0x80) carrying grpc-status and grpc-message. */
export function trailerFrame(code: number, message: string): Buffer {
  let text = `grpc-status: ${code}\r\n`;
  if (message) text += `grpc-message: ${encodeGrpcMessage(message)}\r\n`;
  const body = Buffer.from(text, "latin1");
  const head = Buffer.alloc(5);
  head.writeUInt8(0x80, 0);
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

/**
 * The single message of a gRPC-Web request body: exactly one uncompressed
 * data frame. Returns an error text for anything else.
 */
export function parseRequestBody(body: Buffer): Buffer | string {
  if (body.length < 5) return "request body is not a gRPC-Web frame";
  const flag = body.readUInt8(0);
  if (flag !== 0) return flag & 1 ? "compressed requests are not accepted" : "expected a data frame";
  const len = body.readUInt32BE(1);
  if (body.length !== 5 + len) return "request body must hold exactly one message";
  return body.subarray(5);
}

/** grpc-timeout header ("10S", "500m", ...) in milliseconds; undefined if absent or bad. */
export function parseGrpcTimeout(v: string | undefined): number | undefined {
  if (!v) return undefined;
  const m = /^(\d{1,8})([HMSmun])$/.exec(v);
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit: Record<string, number> = { H: 3600e3, M: 60e3, S: 1e3, m: 1, u: 1e-3, n: 1e-6 };
  return n * unit[m[2]];
}

function refuse(res: ServerResponse, code: grpc.status, message: string, http = 200): void {
  res.writeHead(http, {
    "content-type": "application/grpc-web+proto",
    "grpc-status": String(code),
    "grpc-message": encodeGrpcMessage(message),
  });
  res.end();
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        over = true;
        chunks.length = 0;
        return;
      }
      if (!over) chunks.push(c);
    });
    req.on("end", () => resolve(over ? null : Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

const identity = (b: Buffer): Buffer => b;

/** True when the request is one the bridge should answer (a gRPC-Web POST). */
export function isGrpcWeb(req: IncomingMessage): boolean {
  const ct = req.headers["content-type"] ?? "";
  return req.method === "POST" && ct.startsWith("application/grpc-web");
}

/**
 * Answers one gRPC-Web request: refuses anything not in the table, forwards the
 * rest with the caller's `authorization` metadata (never logged).
 */
export async function handleGrpcWeb(
  req: IncomingMessage,
  res: ServerResponse,
  routes: RouteTable,
  o: BridgeOptions,
): Promise<void> {
  const path = (req.url ?? "").split("?")[0];
  const t0 = Date.now();
  const codeName = (code: number) => grpc.status[code] ?? String(code);
  const log = (code: number) => o.log(`rpc ${path.slice(0, 200)} ${codeName(code)} ${Date.now() - t0}ms`);
  // A forwarded call ended (its method is in the route table: a bounded label).
  const done = (code: number) => {
    log(code);
    o.metrics?.call(path, codeName(code));
  };
  const refused = (reason: RefusalReason, code: number) => {
    log(code);
    o.metrics?.refused(reason);
  };
  const route = routes.get(path);
  if (!route) {
    req.resume();
    refuse(res, grpc.status.UNIMPLEMENTED, `the console does not forward ${path.slice(0, 200)}`, 404);
    refused("unknown_method", grpc.status.UNIMPLEMENTED);
    return;
  }
  const ct = req.headers["content-type"] ?? "";
  if (ct !== "application/grpc-web" && ct !== "application/grpc-web+proto") {
    req.resume();
    refuse(res, grpc.status.INVALID_ARGUMENT, "only binary application/grpc-web+proto is accepted", 415);
    refused("content_type", grpc.status.INVALID_ARGUMENT);
    return;
  }
  const body = await readBody(req, o.maxRequestBytes + 5);
  if (body === null) {
    refuse(res, grpc.status.RESOURCE_EXHAUSTED, `request larger than ${o.maxRequestBytes} bytes`, 413);
    refused("body_too_large", grpc.status.RESOURCE_EXHAUSTED);
    return;
  }
  const msg = parseRequestBody(body);
  if (typeof msg === "string") {
    refuse(res, grpc.status.INVALID_ARGUMENT, msg, 400);
    refused("bad_frame", grpc.status.INVALID_ARGUMENT);
    return;
  }

  const md = new grpc.Metadata();
  const auth = req.headers["authorization"];
  if (typeof auth === "string" && auth.length > 0 && auth.length < 8192) md.set("authorization", auth);
  // The browser's address, for the api's per-address sign-in limits (it
  // believes this header only from addresses in SUPAPLANE_API_TRUSTED_PROXIES):
  // the socket's peer, or what a proxy in SUPAPLANE_CONSOLE_TRUSTED_PROXIES
  // (Traefik) says it is.
  const remote = clientAddress(req.socket.remoteAddress, req.headers["x-forwarded-for"], o.trustedProxies);
  if (remote) md.set("x-forwarded-for", remote);
  const corr = req.headers["x-correlation-id"];
  if (typeof corr === "string" && /^[A-Za-z0-9_.:-]{1,64}$/.test(corr)) md.set("x-correlation-id", corr);
  const timeout = parseGrpcTimeout(req.headers["grpc-timeout"] as string | undefined);
  const callOptions: grpc.CallOptions = {};
  if (route.kind === "unary") {
    callOptions.deadline = Date.now() + Math.min(timeout ?? o.defaultUnaryTimeoutMs, o.defaultUnaryTimeoutMs);
  } else if (timeout !== undefined) {
    callOptions.deadline = Date.now() + timeout;
  }

  if (route.kind === "unary") {
    const call = route.client.makeUnaryRequest<Buffer, Buffer>(
      path, identity, identity, msg, md, callOptions,
      (err: grpc.ServiceError | null, value?: Buffer) => {
        if (err) {
          refuse(res, err.code, err.details ?? "");
          done(err.code);
          return;
        }
        res.writeHead(200, { "content-type": "application/grpc-web+proto" });
        res.write(dataFrame(value ?? Buffer.alloc(0)));
        res.end(trailerFrame(grpc.status.OK, ""));
        done(grpc.status.OK);
      },
    );
    res.on("close", () => {
      if (!res.writableFinished) call.cancel();
    });
    return;
  }

  const call = route.client.makeServerStreamRequest<Buffer, Buffer>(path, identity, identity, msg, md, callOptions);
  let started = false;
  const start = () => {
    if (started) return;
    started = true;
    res.writeHead(200, { "content-type": "application/grpc-web+proto", "cache-control": "no-store" });
    res.flushHeaders();
  };
  call.on("metadata", start);
  call.on("data", (m: Buffer) => {
    start();
    res.write(dataFrame(m));
  });
  call.on("error", () => {
    /* reported by 'status' */
  });
  call.on("status", (s: grpc.StatusObject) => {
    if (res.writableEnded) return;
    if (!started) {
      refuse(res, s.code, s.details ?? "");
    } else {
      res.end(trailerFrame(s.code, s.code === grpc.status.OK ? "" : s.details ?? ""));
    }
    done(s.code);
  });
  res.on("close", () => {
    if (!res.writableFinished) call.cancel();
  });
}
