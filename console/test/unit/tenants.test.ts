import { describe, it } from "node:test";
import { expect } from "./expect.js";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { TenantSchema, type Tenant } from "../../src/gen/supaplane/v1/api_pb.js";
import { Phase, Plan } from "../../src/gen/supaplane/v1/types_pb.js";
import { actionsFor, applyAll, applyTenant, filterTenants, mergeNewer, phaseName, planName } from "../../src/tenants.js";

function t(ref: string, version: number, phase: Phase, extra: MessageInitShape<typeof TenantSchema> = {}): Tenant {
  return create(TenantSchema, { ref, name: ref.slice(0, 4), version: BigInt(version), phase, ...extra });
}

describe("applyTenant", () => {
  it("takes newer versions and ignores older or repeated ones", () => {
    let m = applyTenant(new Map(), t("aaaaaaaaaaaaaaaaaaaa", 5, Phase.PROVISIONING));
    m = applyTenant(m, t("aaaaaaaaaaaaaaaaaaaa", 7, Phase.ACTIVE));
    expect(m.get("aaaaaaaaaaaaaaaaaaaa")?.phase).toBe(Phase.ACTIVE);
    const before = m;
    m = applyTenant(m, t("aaaaaaaaaaaaaaaaaaaa", 6, Phase.PAUSING)); // late change
    expect(m).toBe(before);
    m = applyTenant(m, t("aaaaaaaaaaaaaaaaaaaa", 7, Phase.ACTIVE)); // the same again
    expect(m).toBe(before);
  });
  it("a listing folded after a change does not undo it", () => {
    let m = applyTenant(new Map(), t("bbbbbbbbbbbbbbbbbbbb", 9, Phase.PAUSED), 9n);
    m = applyAll(m, [t("bbbbbbbbbbbbbbbbbbbb", 8, Phase.PAUSING), t("cccccccccccccccccccc", 3, Phase.ACTIVE)]);
    expect(m.get("bbbbbbbbbbbbbbbbbbbb")?.phase).toBe(Phase.PAUSED);
    expect(m.size).toBe(2);
  });
});

describe("mergeNewer", () => {
  it("lays newer live changes over a listing, never older ones", () => {
    const listing = applyAll(new Map(), [t("aaaaaaaaaaaaaaaaaaaa", 5, Phase.ACTIVE), t("bbbbbbbbbbbbbbbbbbbb", 9, Phase.PAUSED)]);
    const live = applyAll(new Map(), [
      t("aaaaaaaaaaaaaaaaaaaa", 6, Phase.PAUSING), // newer than listed
      t("bbbbbbbbbbbbbbbbbbbb", 8, Phase.PAUSING), // older than listed
      t("cccccccccccccccccccc", 1, Phase.PROVISIONING), // not listed (yet)
    ]);
    const m = mergeNewer(listing, live);
    expect(m.get("aaaaaaaaaaaaaaaaaaaa")?.phase).toBe(Phase.PAUSING);
    expect(m.get("bbbbbbbbbbbbbbbbbbbb")?.phase).toBe(Phase.PAUSED);
    expect(m.get("cccccccccccccccccccc")?.phase).toBe(Phase.PROVISIONING);
    expect(listing.size).toBe(2); // the listing itself is not changed
  });
  it("returns the listing itself when nothing live is newer", () => {
    const listing = applyAll(new Map(), [t("aaaaaaaaaaaaaaaaaaaa", 5, Phase.ACTIVE)]);
    expect(mergeNewer(listing, applyAll(new Map(), [t("aaaaaaaaaaaaaaaaaaaa", 5, Phase.ACTIVE)]))).toBe(listing);
  });
});

describe("filterTenants", () => {
  const m = applyAll(new Map(), [
    t("shopshopshopshopshop", 1, Phase.ACTIVE, { name: "Shop", ownerAccountId: "a", createdAt: timestampFromMs(1000) }),
    t("blogblogblogblogblog", 2, Phase.PAUSED, { name: "Blog", ownerAccountId: "b", createdAt: timestampFromMs(2000) }),
    t("gonegonegonegonegone", 3, Phase.DELETED, { name: "Gone", ownerAccountId: "a", createdAt: timestampFromMs(3000) }),
  ]);
  it("hides deleted tenants unless asked for by phase; newest first", () => {
    expect(filterTenants(m, {}).map((x) => x.name)).toEqual(["Blog", "Shop"]);
    expect(filterTenants(m, { phase: Phase.DELETED }).map((x) => x.name)).toEqual(["Gone"]);
    expect(filterTenants(m, { includeDeleted: true }).length).toBe(3);
  });
  it("searches ref or name, case-insensitively, and filters by owner", () => {
    expect(filterTenants(m, { query: "SHO" }).map((x) => x.name)).toEqual(["Shop"]);
    expect(filterTenants(m, { query: "blogblog" }).map((x) => x.name)).toEqual(["Blog"]);
    expect(filterTenants(m, { query: "  " }).length).toBe(2);
    expect(filterTenants(m, { ownerAccountId: "b" }).map((x) => x.name)).toEqual(["Blog"]);
    expect(filterTenants(m, { phase: Phase.ACTIVE, query: "blog" })).toEqual([]);
  });
});

describe("labels and actions", () => {
  it("names phases and plans", () => {
    expect(phaseName(Phase.SUSPENDED)).toBe("SUSPENDED");
    expect(phaseName(Phase.UNSPECIFIED)).toBe("UNKNOWN");
    expect(planName(Plan.PRO)).toBe("pro");
    expect(planName(Plan.UNSPECIFIED)).toBe("free");
  });
  it("offers only actions that can apply", () => {
    expect(actionsFor(t("x", 1, Phase.ACTIVE))).toEqual({ pause: true, resume: false, remove: true, rotate: true });
    expect(actionsFor(t("x", 1, Phase.PAUSED))).toEqual({ pause: false, resume: true, remove: true, rotate: false });
    // Suspended: resume stays so that the API's refusal can be shown.
    expect(actionsFor(t("x", 1, Phase.SUSPENDED)).resume).toBe(true);
    expect(actionsFor(t("x", 1, Phase.DELETED))).toEqual({ pause: false, resume: false, remove: false, rotate: false });
  });
});
