import { describe, it } from "node:test";
import { expect } from "./expect.js";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import {
  Client,
  Server,
  ServerCredentials,
  credentials,
  type sendUnaryData,
  type ServerUnaryCall,
} from "@grpc/grpc-js";
import { dataFrame, handleGrpcWeb, type RouteTable } from "../../server/bridge.js";
import { clientAddress, parseTrustedProxies, type TrustedProxies } from "../../server/client_address.js";

function trusted(spec: string): TrustedProxies {
  const t = parseTrustedProxies(spec);
  if (typeof t === "string") throw new Error(t);
  return t;
}

describe("SUPAPLANE_CONSOLE_TRUSTED_PROXIES", () => {
  it("takes addresses and CIDR networks of both families, IPv4-mapped peers included", () => {
    const t = trusted(" 10.0.0.0/8, fd00::/8 ,127.0.0.1,");
    expect(t.size).toBe(3);
    expect(t.has("10.1.2.3")).toBe(true);
    expect(t.has("::ffff:10.1.2.3")).toBe(true);
    expect(t.has("fd12::1")).toBe(true);
    expect(t.has("127.0.0.1")).toBe(true);
    expect(t.has("127.0.0.2")).toBe(false);
    expect(t.has("11.0.0.1")).toBe(false);
    expect(t.has("not-an-address")).toBe(false);
  });
  it("is empty by default", () => {
    expect(trusted("").size).toBe(0);
    expect(trusted(" , ").size).toBe(0);
  });
  it("refuses an entry that is not an address or network, naming it", () => {
    expect(parseTrustedProxies("10.0.0.0/8,traefik")).toMatch(/'traefik' is not an address/);
    expect(parseTrustedProxies("10.0.0.0/33")).toMatch(/'10.0.0.0\/33' has a prefix length outside 0..32/);
    expect(parseTrustedProxies("fd00::/129")).toMatch(/outside 0..128/);
    expect(parseTrustedProxies("10.0.0.0/x")).toMatch(/prefix length/);
  });
});

describe("the client address the bridge forwards", () => {
  const traefik = "10.0.5.7";
  it("is the socket's peer when no proxy is trusted, whatever the request claims", () => {
    expect(clientAddress(traefik, "203.0.113.9", trusted(""))).toBe(traefik);
    expect(clientAddress("::ffff:10.0.5.7", "203.0.113.9", trusted(""))).toBe(traefik);
  });
  it("is the socket's peer when that peer is not trusted (X-Forwarded-For is anyone's to write)", () => {
    expect(clientAddress("192.0.2.1", "203.0.113.9", trusted("10.0.0.0/8"))).toBe("192.0.2.1");
  });
  it("is the address a trusted proxy (Traefik) got the request from", () => {
    expect(clientAddress(traefik, "203.0.113.9", trusted("10.0.0.0/8"))).toBe("203.0.113.9");
    expect(clientAddress("::ffff:10.0.5.7", "203.0.113.9", trusted("10.0.0.0/8"))).toBe("203.0.113.9");
    expect(clientAddress(traefik, "2001:db8::1", trusted("10.0.0.0/8"))).toBe("2001:db8::1");
  });
  it("is the rightmost untrusted hop: what the browser wrote itself on the left is ignored", () => {
    const t = trusted("10.0.0.0/8");
    expect(clientAddress(traefik, "198.51.100.1, 203.0.113.9", t)).toBe("203.0.113.9");
    expect(clientAddress(traefik, "198.51.100.1, 203.0.113.9, 10.0.9.9", t)).toBe("203.0.113.9");
    // Two X-Forwarded-For headers are one list.
    expect(clientAddress(traefik, ["198.51.100.1", "203.0.113.9"], t)).toBe("203.0.113.9");
  });
  it("stops at the last good hop when an entry is not an address", () => {
    const t = trusted("10.0.0.0/8");
    expect(clientAddress(traefik, "203.0.113.9, garbage", t)).toBe(traefik);
    expect(clientAddress(traefik, "garbage, 10.0.9.9", t)).toBe("10.0.9.9");
    expect(clientAddress(traefik, "", t)).toBe(traefik);
  });
  it("is the trusted peer itself when it sends no X-Forwarded-For, or when every hop is trusted", () => {
    const t = trusted("10.0.0.0/8");
    expect(clientAddress(traefik, undefined, t)).toBe(traefik);
    expect(clientAddress(traefik, "10.0.9.9", t)).toBe("10.0.9.9");
  });
  it("is nothing when the socket has no peer address", () => {
    expect(clientAddress(undefined, "203.0.113.9", trusted("10.0.0.0/8"))).toBeUndefined();
  });
});

describe("the bridge's x-forwarded-for to the api", () => {
  // A real gRPC server (grpc-js) standing in for the api's Login, and a real
  // HTTP server running the bridge: what reaches the api is the metadata.
  async function forwarded(spec: string, header: string | undefined): Promise<string[]> {
    const seen: string[] = [];
    const path = "/supaplane.v1.AccountService/Login";
    const server = new Server();
    const id = (b: Buffer) => b;
    server.addService(
      {
        Login: {
          path,
          requestStream: false,
          responseStream: false,
          requestSerialize: id,
          requestDeserialize: id,
          responseSerialize: id,
          responseDeserialize: id,
        },
      },
      {
        Login: (call: ServerUnaryCall<Buffer, Buffer>, cb: sendUnaryData<Buffer>) => {
          seen.push(...call.metadata.get("x-forwarded-for").map(String));
          cb(null, Buffer.alloc(0));
        },
      },
    );
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    const client = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
    const routes: RouteTable = new Map([[path, { kind: "unary", client }]]);
    const http = createServer((req, res) => {
      void handleGrpcWeb(req, res, routes, {
        maxRequestBytes: 1024,
        defaultUnaryTimeoutMs: 5000,
        trustedProxies: trusted(spec),
        log: () => {},
      });
    });
    await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
    const { port: httpPort } = http.address() as AddressInfo;
    try {
      const headers: Record<string, string> = { "content-type": "application/grpc-web+proto" };
      if (header !== undefined) headers["x-forwarded-for"] = header;
      const res = await fetch(`http://127.0.0.1:${httpPort}${path}`, {
        method: "POST",
        headers,
        body: new Uint8Array(dataFrame(Buffer.alloc(0))),
      });
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    } finally {
      http.close();
      client.close();
      server.forceShutdown();
    }
    return seen;
  }

  it("is the socket's peer by default, even when the caller sends its own X-Forwarded-For", async () => {
    expect(await forwarded("", "203.0.113.9")).toEqual(["127.0.0.1"]);
  });
  it("is the address a trusted proxy names", async () => {
    expect(await forwarded("127.0.0.1", "198.51.100.1, 203.0.113.9")).toEqual(["203.0.113.9"]);
    expect(await forwarded("127.0.0.0/8", undefined)).toEqual(["127.0.0.1"]);
  });
});
