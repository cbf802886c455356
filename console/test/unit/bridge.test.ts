import { describe, it } from "node:test";
import { expect } from "./expect.js";
import { Client, credentials } from "@grpc/grpc-js";
import { AccountService, BillingService, TenantService } from "../../src/gen/supaplane/v1/api_pb.js";
import {
  addRoutes,
  dataFrame,
  encodeGrpcMessage,
  parseGrpcTimeout,
  parseRequestBody,
  trailerFrame,
  type RouteTable,
} from "../../server/bridge.js";

describe("route table", () => {
  it("holds exactly the methods of the given services, with their kind", () => {
    const c = new Client("127.0.0.1:1", credentials.createInsecure());
    const t: RouteTable = new Map();
    addRoutes(t, [AccountService, TenantService], c);
    expect(t.get("/supaplane.v1.TenantService/WatchTenants")?.kind).toBe("server_streaming");
    expect(t.get("/supaplane.v1.AccountService/Login")?.kind).toBe("unary");
    expect(t.has("/supaplane.v1.BillingService/CreateCheckoutSession")).toBe(false);
    expect(t.has("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")).toBe(false);
    expect(t.has("/grpc.health.v1.Health/Check")).toBe(false);
    expect(t.size).toBe(AccountService.methods.length + TenantService.methods.length);
    addRoutes(t, [BillingService], c);
    expect(t.has("/supaplane.v1.BillingService/CreateCheckoutSession")).toBe(true);
    c.close();
  });
});

describe("gRPC-Web framing", () => {
  it("frames a message and reads it back", () => {
    const msg = Buffer.from([1, 2, 3]);
    const f = dataFrame(msg);
    expect([...f.subarray(0, 5)]).toEqual([0, 0, 0, 0, 3]);
    expect(parseRequestBody(f)).toEqual(msg);
  });
  it("refuses bodies that are not exactly one uncompressed frame", () => {
    expect(parseRequestBody(Buffer.from([0, 0]))).toMatch(/not a gRPC-Web frame/);
    expect(parseRequestBody(Buffer.from([1, 0, 0, 0, 0]))).toMatch(/compressed/);
    expect(parseRequestBody(Buffer.concat([dataFrame(Buffer.from([1])), dataFrame(Buffer.from([2]))]))).toMatch(
      /exactly one/,
    );
  });
  it("writes the trailer frame with a percent-encoded message", () => {
    const f = trailerFrame(9, "tenant is suspended: 100% überfällig");
    expect(f[0]).toBe(0x80);
    expect(f.readUInt32BE(1)).toBe(f.length - 5);
    expect(f.subarray(5).toString("latin1")).toBe(
      "grpc-status: 9\r\ngrpc-message: tenant is suspended: 100%25 %C3%BCberf%C3%A4llig\r\n",
    );
    expect(decodeURIComponent(encodeGrpcMessage("a\r\nb"))).toBe("a\r\nb");
  });
  it("reads grpc-timeout", () => {
    expect(parseGrpcTimeout("10S")).toBe(10000);
    expect(parseGrpcTimeout("250m")).toBe(250);
    expect(parseGrpcTimeout("1H")).toBe(3600000);
    expect(parseGrpcTimeout("soon")).toBeUndefined();
    expect(parseGrpcTimeout(undefined)).toBeUndefined();
  });
});
