import Type, { type Static } from 'typebox'

// The `dhcp6` section: rackboot's DHCPv6 server for IPv6 netboot (src/dhcp6). Off by default. Boot files are the
// DHCPv4 ones (dhcp.bootFiles, dhcp.archBootFiles): one loader table for both protocols.

const IPv6 = Type.String({ format: 'ipv6' })

export const Dhcp6SettingsSchema = Type.Object(
  {
    enabled: Type.Boolean({ default: false }),
    /**
     * The directly attached provisioning interface: the server joins ff02::1:2 (All_DHCP_Relay_Agents_and_Servers)
     * on it, answers link-local clients through it, and takes serverAddress and the DUID's MAC from it. Without it,
     * only relayed clients are served.
     */
    interface: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_.:@-]{1,15}$' })),
    /** This server's global address on the provisioning network, in tftp://[...]/ boot-file URLs (option 59). */
    serverAddress: Type.Optional(IPv6),
    listen: Type.String({ default: '::' }),
    port: Type.Integer({ minimum: 0, maximum: 65535, default: 547 }),
    /** The on-link prefix, e.g. 2001:db8:1::/64: CONFIRM and REBIND check addresses against it; relays are served when their link-address is in it. */
    prefix: Type.Optional(Type.String({ pattern: '^[0-9a-fA-F:.]+/\\d{1,3}$' })),
    /** First and last address handed out (inclusive, inside `prefix`). */
    rangeStart: Type.Optional(IPv6),
    rangeEnd: Type.Optional(IPv6),
    /** IAADDR preferred and valid lifetimes, seconds (T1 and T2 are 0.5 and 0.8 of preferred). */
    preferredLifetimeSeconds: Type.Integer({ minimum: 60, default: 3600 }),
    validLifetimeSeconds: Type.Integer({ minimum: 60, default: 7200 }),
    /** How long an address in an ADVERTISE stays held for the client that was offered it. */
    offerSeconds: Type.Integer({ minimum: 1, maximum: 3600, default: 30 }),
    /** How long an address a client declined (in use on the link) stays out of the pool. */
    declineSeconds: Type.Integer({ minimum: 0, default: 3600 }),
    /** Answer SOLICITs that ask for Rapid Commit with a REPLY at once (two messages instead of four). */
    rapidCommit: Type.Boolean({ default: true }),
    /**
     * rackboot's router advertisements let hosts form their own address in the prefix too (the A flag, SLAAC):
     * the discovery agent and Talos have no DHCPv6 client early in boot, so on an IPv6-only segment this is how
     * they report and fetch their config. Off: DHCPv6 addresses only (the agent then reports from its link-local
     * address, which works on a directly attached segment only).
     */
    slaac: Type.Boolean({ default: true }),
    /** Option 7 in ADVERTISE: 255 makes clients take this offer at once instead of collecting others for a second. */
    preference: Type.Integer({ minimum: 0, maximum: 255, default: 255 }),
    /** Option 23. */
    dnsServers: Type.Array(IPv6, { default: [] }),
    /** Most bindings held in memory (an IPv6 range is far larger than memory); beyond it new clients get NoAddrsAvail. */
    maxLeases: Type.Integer({ minimum: 1, maximum: 10_000_000, default: 65_536 }),
    /** Most IA_NAs (addresses) one client DUID holds at once; further IAs get NoAddrsAvail. */
    maxIasPerClient: Type.Integer({ minimum: 1, maximum: 64, default: 4 }),
    /** Datagrams longer than this are dropped unread. */
    maxPacketBytes: Type.Integer({ minimum: 512, maximum: 65535, default: 4096 }),
    /** Options read per message or relay envelope before the datagram is dropped. */
    maxOptions: Type.Integer({ minimum: 8, maximum: 1024, default: 64 }),
    /** Relay envelopes read before the datagram is dropped (RFC 8415 HOP_COUNT_LIMIT is 8). */
    maxRelayDepth: Type.Integer({ minimum: 1, maximum: 32, default: 8 }),
    /**
     * Router advertisements with `prefix` (on-link, not autonomous) and the M and O flags, so hosts on the segment
     * ask DHCPv6 for addresses, through radvd on `interface`. auto: when rackboot owns the segment (dhcp.mode full);
     * on: always; off: a router on the segment advertises the M flag.
     */
    routerAdverts: Type.Union([Type.Literal('auto'), Type.Literal('on'), Type.Literal('off')], { default: 'auto' }),
  },
  { additionalProperties: false, default: {} },
)

export type Dhcp6SettingsInput = Static<typeof Dhcp6SettingsSchema>
export type Dhcp6Settings = Readonly<Dhcp6SettingsInput>
