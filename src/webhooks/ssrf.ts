import ipaddr from 'ipaddr.js'

// Where a webhook may be delivered: public unicast addresses only, unless an
// operator allowlists private ranges (WEBHOOK_ALLOW_PRIVATE). Classified by
// ipaddr.js's range tables: loopback, private, link-local (169.254.0.0/16,
// fe80::/10), carrier-grade NAT, unique local, unspecified, broadcast,
// multicast, reserved, documentation and the IPv6 forms that carry an IPv4
// address (6to4, NAT64, Teredo) are all refused; an IPv4-mapped IPv6 address
// (::ffff:127.0.0.1) is judged as the IPv4 address it is.

/**
 * Cloud metadata services: refused even when an allowlisted range covers
 * them (AWS, GCP, Azure, OpenStack 169.254.169.254 and AWS's IPv6
 * fd00:ec2::254; Alibaba 100.100.100.200; Azure's host 168.63.129.16, a
 * public address).
 */
const METADATA = new Set(['169.254.169.254', 'fd00:ec2:0:0:0:0:0:254', '100.100.100.200', '168.63.129.16'])

type Range = [ipaddr.IPv4 | ipaddr.IPv6, number]

/** Parses WEBHOOK_ALLOW_PRIVATE's entries (CIDRs, or single addresses); throws on one that is neither. */
export function parseAllowlist (entries: readonly string[]): Range[] {
  return entries.map((e) => {
    if (e.includes('/')) return ipaddr.parseCIDR(e)
    const a = ipaddr.parse(e)
    return [a, a.kind() === 'ipv4' ? 32 : 128] as Range
  })
}

export class AddressPolicy {
  private readonly allow: Range[]

  constructor (allowlist: readonly string[] = []) {
    this.allow = parseAllowlist(allowlist)
  }

  /** null when `address` (an IP literal) may be delivered to; otherwise why not. */
  refusal (address: string): string | null {
    if (!ipaddr.isValid(address)) return `${address} is not an IP address`
    let a: ipaddr.IPv4 | ipaddr.IPv6 = ipaddr.parse(address)
    if (a.kind() === 'ipv6' && (a as ipaddr.IPv6).isIPv4MappedAddress()) a = (a as ipaddr.IPv6).toIPv4Address()
    const normal = a.kind() === 'ipv6' ? (a as ipaddr.IPv6).toNormalizedString() : a.toString()
    if (METADATA.has(normal)) return `${address} is a cloud metadata address`
    if (this.allow.some(([net, bits]) => net.kind() === a.kind() && a.match(net, bits))) return null
    const range = a.range()
    return range === 'unicast' ? null : `${address} is a ${range} address (allow it with WEBHOOK_ALLOW_PRIVATE)`
  }
}
