// The live set of tenants: what ListTenants returned, kept current by
// WatchTenants changes. Pure: unit tested.
import { Phase, Plan } from "./gen/supaplane/v1/types_pb.js";
import type { Tenant } from "./gen/supaplane/v1/api_pb.js";

export type TenantMap = ReadonlyMap<string, Tenant>;

/**
 * `t` as of stream sequence `seq` replaces what we hold only if it is newer:
 * a change that was already folded into a listing (or arrives twice after a
 * reconnect) never moves a tenant back.
 */
export function applyTenant(map: TenantMap, t: Tenant, seq: bigint = t.version): TenantMap {
  const cur = map.get(t.ref);
  if (cur && cur.version > seq) return map;
  if (cur && cur.version === seq && cur.version === t.version && cur.phase === t.phase) return map;
  const next = new Map(map);
  next.set(t.ref, t);
  return next;
}

/** A whole listing at once: one copy of the map, not one per tenant. */
export function applyAll(map: TenantMap, ts: Tenant[]): TenantMap {
  const next = new Map(map);
  for (const t of ts) {
    const cur = next.get(t.ref);
    if (!cur || cur.version <= t.version) next.set(t.ref, t);
  }
  return next;
}

/**
 * A listing with the live changes laid over it: a tenant from `live` wins
 * when it is newer (a higher version) or not listed at all.
 */
export function mergeNewer(listing: TenantMap, live: TenantMap): TenantMap {
  let out: Map<string, Tenant> | null = null;
  for (const [ref, t] of live) {
    const cur = listing.get(ref);
    if (cur && cur.version >= t.version) continue;
    out ??= new Map(listing);
    out.set(ref, t);
  }
  return out ?? listing;
}

export function phaseName(p: Phase): string {
  return p === Phase.UNSPECIFIED ? "UNKNOWN" : Phase[p];
}

export function planName(p: Plan): string {
  return p === Plan.UNSPECIFIED ? "free" : Plan[p].toLowerCase();
}

export interface Filter {
  phase?: Phase; // undefined or UNSPECIFIED = any
  query?: string; // substring of ref or name, case-insensitive
  ownerAccountId?: string;
  includeDeleted?: boolean;
}

export function filterTenants(map: TenantMap, f: Filter): Tenant[] {
  const q = (f.query ?? "").trim().toLowerCase();
  const out: Tenant[] = [];
  for (const t of map.values()) {
    const anyPhase = f.phase === undefined || f.phase === Phase.UNSPECIFIED;
    if (!anyPhase && t.phase !== f.phase) continue;
    if (!f.includeDeleted && anyPhase && t.phase === Phase.DELETED) continue;
    if (f.ownerAccountId !== undefined && t.ownerAccountId !== f.ownerAccountId) continue;
    if (q && !t.ref.includes(q) && !t.name.toLowerCase().includes(q)) continue;
    out.push(t);
  }
  // Newest first, then by ref for a stable order.
  out.sort((a, b) => {
    const ca = a.createdAt ? Number(a.createdAt.seconds) : 0;
    const cb = b.createdAt ? Number(b.createdAt.seconds) : 0;
    return cb - ca || (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0);
  });
  return out;
}

/** What the owner may ask for in this phase (the API decides; this only hides buttons that cannot work). */
export function actionsFor(t: Tenant): { pause: boolean; resume: boolean; remove: boolean; rotate: boolean } {
  const p = t.phase;
  const gone = p === Phase.DELETING || p === Phase.DELETED;
  return {
    pause: !gone && p !== Phase.PAUSED && p !== Phase.PAUSING,
    // Shown for a suspended tenant too: the API's refusal says why.
    resume: !gone && (p === Phase.PAUSED || p === Phase.PAUSING || p === Phase.SUSPENDED || p === Phase.FAILED),
    remove: !gone,
    rotate: !gone && p === Phase.ACTIVE,
  };
}
