import { BlockList, isIP } from "node:net";

/** Normalises a request address: strips a port, brackets and an IPv4-mapped IPv6 prefix. */
export function normalizeIp(ip: string): string {
  let s = ip.trim();
  // Some proxies write `X-Forwarded-For` hops with a port: `203.0.113.7:5123`, `[2001:db8::1]:443`.
  const v4port = /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/.exec(s);
  if (v4port) s = v4port[1]!;
  const v6port = /^\[([^\]]+)\]:\d{1,5}$/.exec(s);
  if (v6port) s = v6port[1]!;
  if (s.startsWith("[") && s.endsWith("]")) s = s.slice(1, -1);
  if (s.toLowerCase().startsWith("::ffff:") && isIP(s.slice(7)) === 4) s = s.slice(7);
  return s;
}

function stripMapped(ip: string): string {
  return ip.toLowerCase().startsWith("::ffff:") && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip;
}

/** Parses one allowlist entry (an IP or a CIDR range); returns an error message when invalid. */
export function validateIpEntry(entry: string): string | null {
  const [addr, bits, ...rest] = entry.trim().split("/");
  if (!addr || rest.length > 0 || addr.includes("%")) return `invalid IP or CIDR: ${entry}`;
  // Entries are bare addresses: no brackets, no ports (normalizeIp would accept those).
  const family = isIP(stripMapped(addr));
  if (family === 0) return `invalid IP or CIDR: ${entry}`;
  if (bits !== undefined) {
    const n = Number(bits);
    if (!/^\d+$/.test(bits) || n > (family === 4 ? 32 : 128))
      return `invalid CIDR prefix: ${entry}`;
  }
  return null;
}

/** An allowlist of IPs and CIDR ranges (IPv4 and IPv6), built once and checked many times. */
export class IpAllowList {
  readonly #list = new BlockList();

  constructor(entries: readonly string[]) {
    for (const raw of entries) {
      const [addr, bits] = raw.trim().split("/");
      if (!addr || validateIpEntry(raw) !== null) continue;
      const ip = normalizeIp(addr);
      const family = isIP(ip) === 6 ? "ipv6" : "ipv4";
      if (bits === undefined) this.#list.addAddress(ip, family);
      else this.#list.addSubnet(ip, Number(bits), family);
    }
  }

  /** Whether the address is on the list. */
  allows(ip: string): boolean {
    const n = normalizeIp(ip);
    const family = isIP(n);
    if (family === 0) return false;
    return this.#list.check(n, family === 6 ? "ipv6" : "ipv4");
  }
}

/**
 * The address {@link resolveClientIp} answers when the chain of a trusted proxy cannot be read
 * (a malformed, empty, `unknown` or obfuscated hop). It is not loopback and no allowlist
 * matches it, so every check that depends on the address fails closed.
 */
export const UNKNOWN_CLIENT_IP = "";

/**
 * Whether an address is loopback (127.0.0.0/8, `::1`, `::ffff:127.x`). Ports, brackets and the
 * IPv4-mapped prefix are stripped first; anything that is not an address (e.g.
 * {@link UNKNOWN_CLIENT_IP}) is not loopback.
 */
export function isLoopback(ip: string): boolean {
  const n = normalizeIp(ip);
  const family = isIP(n);
  if (family === 4) return n.startsWith("127.");
  if (family === 6) {
    const lower = n.toLowerCase();
    return lower === "::1" || lower === "0:0:0:0:0:0:0:1" || /^::ffff:127\./.test(lower);
  }
  return false;
}

/**
 * The client address of a request: the direct peer, unless the peer is a trusted proxy, in
 * which case `X-Forwarded-For` is walked from the right past every trusted hop.
 *
 * It fails closed: a hop reached on that walk that is not an address (empty, `unknown`, an
 * RFC 7239 obfuscated identifier, garbage) makes the client {@link UNKNOWN_CLIENT_IP}, never
 * the proxy's own (often loopback) address, since the proxy vouches for a client it could not
 * name. Hops written with a port (`203.0.113.7:5123`, `[2001:db8::1]:443`) are read without it.
 */
export function resolveClientIp(
  remote: string,
  forwardedFor: string | undefined,
  trusted: IpAllowList | null,
): string {
  const peer = normalizeIp(remote);
  // An absent header is a request the trusted proxy made itself (or a direct client); a header
  // that is present but blank is a chain we cannot read.
  if (!trusted || forwardedFor === undefined || !trusted.allows(peer)) return peer;
  const hops = forwardedFor.split(",").map((s) => normalizeIp(s));
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i]!;
    if (isIP(hop) === 0) return UNKNOWN_CLIENT_IP;
    if (!trusted.allows(hop)) return hop;
  }
  // Every hop is a trusted proxy: the leftmost one is the earliest we know of.
  return hops[0] ?? UNKNOWN_CLIENT_IP;
}
