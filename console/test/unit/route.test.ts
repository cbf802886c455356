import { describe, it } from "node:test";
import { expect } from "./expect.js";
import { parseRoute, refFromHost } from "../../src/route.js";

const ref = "abcdefghijklmnopqrst";

describe("parseRoute", () => {
  it("maps the console's paths", () => {
    expect(parseRoute("/", "console.example.com")).toEqual({ page: "projects" });
    expect(parseRoute("/login", "localhost")).toEqual({ page: "login" });
    expect(parseRoute("/signup/", "localhost")).toEqual({ page: "signup" });
    expect(parseRoute("/admin", "localhost")).toEqual({ page: "admin" });
    expect(parseRoute(`/projects/${ref}`, "localhost")).toEqual({ page: "project", ref });
  });
  it("opens a tenant's page on <ref>.<base-domain>/", () => {
    expect(parseRoute("/", `${ref}.supabase.example.com`)).toEqual({ page: "project", ref });
    expect(refFromHost(`${ref}.localhost`)).toBe(ref);
    expect(refFromHost("supabase.example.com")).toBeNull();
    expect(refFromHost(ref)).toBeNull(); // a bare label is not a tenant host
  });
  it("sends malformed refs and unknown paths to not-found", () => {
    expect(parseRoute("/projects/ABCDEFGHIJKLMNOPQRST", "localhost")).toEqual({ page: "notfound" });
    expect(parseRoute("/projects/short", "localhost")).toEqual({ page: "notfound" });
    expect(parseRoute(`/projects/${ref}/x`, "localhost")).toEqual({ page: "notfound" });
    expect(parseRoute("/nope", "localhost")).toEqual({ page: "notfound" });
  });
});
