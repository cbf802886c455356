// The browser's address as the console sees it, for the x-forwarded-for it
// sends the api. Behind a reverse proxy (Traefik) the socket's peer is the
// proxy, so the address comes from the proxy's X-Forwarded-For, but only
// when the peer is one of SUPAPLANE_CONSOLE_TRUSTED_PROXIES: anyone else can
// write that header.
import { BlockList, isIP } from "node:net";

/** The parsed SUPAPLANE_CONSOLE_TRUSTED_PROXIES: addresses and CIDR networks. */
export interface TrustedProxies {
  /** Whether `address` (IPv4, IPv6 or IPv4-mapped IPv6) is a trusted hop. */
  has(address: string): boolean;
  /** How many entries the list holds (0: trust no one, use the socket's peer). */
  readonly size: number;
}

/** "::ffff:10.0.0.1" → "10.0.0.1"; anything else unchanged. */
export function unmapAddress(address: string): string {
  const m = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  return m ? m[1] : address;
}

/**
 * A comma-separated list of addresses and CIDR networks ("10.0.0.0/8,
 * fd00::/8, 127.0.0.1"); empty means none. Returns an error text naming the
 * first bad entry.
 */
export function parseTrustedProxies(spec: string): TrustedProxies | string {
  const list = new BlockList();
  let size = 0;
  for (const raw of spec.split(",")) {
    const entry = raw.trim();
    if (!entry) continue;
    const slash = entry.indexOf("/");
    const addr = unmapAddress(slash < 0 ? entry : entry.slice(0, slash));
    const family = isIP(addr);
    if (family === 0) return `'${entry.slice(0, 64)}' is not an address or CIDR network`;
    const type = family === 4 ? "ipv4" : "ipv6";
    if (slash < 0) {
      list.addAddress(addr, type);
    } else {
      const bits = entry.slice(slash + 1);
      const max = family === 4 ? 32 : 128;
      if (!/^\d{1,3}$/.test(bits) || Number(bits) > max)
        return `'${entry.slice(0, 64)}' has a prefix length outside 0..${max}`;
      list.addSubnet(addr, Number(bits), type);
    }
    ++size;
  }
  return {
    size,
    has(address: string): boolean {
      const a = unmapAddress(address);
      const family = isIP(a);
      if (family === 0) return false;
      return list.check(a, family === 4 ? "ipv4" : "ipv6");
    },
  };
}

/**
 * The client's address: the socket's peer unless that peer is trusted; then
 * X-Forwarded-For read from the right (each trusted hop appends the address
 * it got the request from), skipping trusted hops, up to the first address
 * that is not one. An entry that is not an address ends the walk at the last
 * hop known to be good. A trusted peer that sends no X-Forwarded-For is the
 * client itself.
 */
export function clientAddress(
  peer: string | undefined,
  forwardedFor: string | string[] | undefined,
  trusted: TrustedProxies,
): string | undefined {
  if (!peer) return undefined;
  let client = unmapAddress(peer);
  if (trusted.size === 0 || !trusted.has(client) || forwardedFor === undefined) return client;
  // Several X-Forwarded-For headers are one list, in order (RFC 9110 5.3).
  const joined = Array.isArray(forwardedFor) ? forwardedFor.join(",") : forwardedFor;
  const hops = joined.split(",").map((h) => h.trim());
  for (let i = hops.length - 1; i >= 0; --i) {
    const hop = unmapAddress(hops[i]);
    if (isIP(hop) === 0) break;
    client = hop;
    if (!trusted.has(hop)) break;
  }
  return client;
}
