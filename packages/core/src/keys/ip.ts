import { BlockList, isIP } from "node:net";

/** Normalises an address: strips an IPv4-mapped IPv6 prefix and brackets. */
export function normalizeIp(ip: string): string {
  let s = ip.trim();
  if (s.startsWith("[") && s.endsWith("]")) s = s.slice(1, -1);
  if (s.toLowerCase().startsWith("::ffff:") && isIP(s.slice(7)) === 4) s = s.slice(7);
  return s;
}

/** Parses one allowlist entry (an IP or a CIDR range); returns an error message when invalid. */
export function validateIpEntry(entry: string): string | null {
  const [addr, bits, ...rest] = entry.trim().split("/");
  if (!addr || rest.length > 0) return `invalid IP or CIDR: ${entry}`;
  const family = isIP(normalizeIp(addr));
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
 * The client address of a request: the direct peer, unless the peer is a trusted proxy, in
 * which case `X-Forwarded-For` is walked from the right past every trusted hop.
 */
export function resolveClientIp(
  remote: string,
  forwardedFor: string | undefined,
  trusted: IpAllowList | null,
): string {
  const peer = normalizeIp(remote);
  if (!trusted || !forwardedFor || !trusted.allows(peer)) return peer;
  const hops = forwardedFor.split(",").map((s) => normalizeIp(s));
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i]!;
    if (isIP(hop) === 0) return peer;
    if (!trusted.allows(hop)) return hop;
  }
  return hops[0] ?? peer;
}
