import { describe, it } from "node:test";
import { expect } from "./expect.js";
import { Code, ConnectError } from "@connectrpc/connect";
import { describeError } from "../../src/errors.js";
import { clearSession, loadSession, saveSession } from "../../src/session.js";

describe("describeError", () => {
  it("puts an INVALID_ARGUMENT message at the field it names", () => {
    const d = describeError(new ConnectError("name: must be 1..64 characters", Code.InvalidArgument));
    expect(d.field).toBe("name");
    expect(d.message).toBe("name: must be 1..64 characters");
  });
  it("keeps other messages whole and classifies the code", () => {
    const d = describeError(new ConnectError("tenant is suspended: payment overdue", Code.FailedPrecondition));
    expect(d.field).toBeNull();
    expect(d.message).toBe("tenant is suspended: payment overdue");
    expect(describeError(new ConnectError("x", Code.NotFound)).notFound).toBe(true);
    expect(describeError(new ConnectError("x", Code.Unauthenticated)).unauthenticated).toBe(true);
  });
  it("reports an unreachable API without its raw text", () => {
    const d = describeError(new ConnectError("No connection established", Code.Unavailable));
    expect(d.unavailable).toBe(true);
    expect(d.message).toMatch(/cannot be reached/);
    expect(describeError(new TypeError("Failed to fetch")).unavailable).toBe(true);
  });
});

class MemStorage implements Storage {
  private m = new Map<string, string>();
  get length() {
    return this.m.size;
  }
  clear() {
    this.m.clear();
  }
  getItem(k: string) {
    return this.m.get(k) ?? null;
  }
  key(i: number) {
    return [...this.m.keys()][i] ?? null;
  }
  removeItem(k: string) {
    this.m.delete(k);
  }
  setItem(k: string, v: string) {
    this.m.set(k, v);
  }
}

describe("session storage", () => {
  const s = { token: "t.o.k", expiresAtMs: 2000, accountId: "acct_1", email: "a@b.c", role: "customer" };
  it("round-trips and drops an expired or corrupt session", () => {
    const st = new MemStorage();
    saveSession(st, s);
    expect(loadSession(st, 1000)).toEqual(s);
    expect(loadSession(st, 2000)).toBeNull();
    expect(st.length).toBe(0);
    st.setItem("supaplane.session", "{not json");
    expect(loadSession(st, 0)).toBeNull();
    saveSession(st, s);
    clearSession(st);
    expect(loadSession(st, 0)).toBeNull();
  });
});
