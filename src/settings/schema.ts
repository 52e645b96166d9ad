import Type, { type Static } from 'typebox'
import { Dhcp6SettingsSchema } from './dhcp6-schema.js'

// rackboot's own settings. Every key has a default that lets `rackboot serve` start on a plain machine;
// DHCP stays off until a mode and subnets are given.

const Port = Type.Integer({ minimum: 0, maximum: 65535 })
const IPv4 = Type.String({ format: 'ipv4' })

export const DhcpSubnetSchema = Type.Object(
  {
    /** CIDR of the subnet, e.g. 10.20.0.0/24. */
    subnet: Type.String({ pattern: '^\\d{1,3}(\\.\\d{1,3}){3}/\\d{1,2}$' }),
    /** First and last address handed out from the pool (inclusive). */
    rangeStart: IPv4,
    rangeEnd: IPv4,
    /** DHCP option 3. */
    routers: Type.Array(IPv4, { default: [] }),
    /** DHCP option 6. */
    dnsServers: Type.Array(IPv4, { default: [] }),
    /** DHCP option 15. */
    domainName: Type.Optional(Type.String()),
    /** DHCP option 51, seconds. */
    leaseSeconds: Type.Integer({ minimum: 60, default: 3600 }),
  },
  { additionalProperties: false },
)

export const SettingsSchema = Type.Object(
  {
    /** Where the SQLite database, the secrets key and other state live. */
    dataDir: Type.String({ minLength: 1, default: './data' }),
    /** Boot assets: iPXE binaries, kernels, initramfs images. */
    assetsDir: Type.String({ minLength: 1, default: './assets' }),
    /** Where `rackboot assets fetch` downloads from; point these at a local mirror for sites without internet. */
    assetSources: Type.Object(
      {
        talosReleases: Type.String({ default: 'https://github.com/siderolabs/talos/releases/download' }),
        imageFactory: Type.String({ default: 'https://factory.talos.dev' }),
        /** Where Debian's ipxe package puts its binaries. */
        ipxeDir: Type.String({ default: '/usr/lib/ipxe' }),
      },
      { additionalProperties: false, default: {} },
    ),
    /** How CLI commands that need the running server reach it (e.g. `machines logs`). */
    cli: Type.Object(
      {
        /** The server's base URL; derived from http.listen and http.port when empty. */
        server: Type.String({ default: '' }),
        /** An API token (read scope is enough): set RACKBOOT_TOKEN rather than writing it in a file. */
        token: Type.String({ default: '' }),
      },
      { additionalProperties: false, default: {} },
    ),
    log: Type.Object(
      {
        level: Type.Union(
          ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
          { default: 'info' },
        ),
        /** auto: readable lines on a terminal, JSON lines anywhere else (pipes, files, containers); json or pretty force one. */
        format: Type.Union([Type.Literal('auto'), Type.Literal('json'), Type.Literal('pretty')], { default: 'auto' }),
      },
      { additionalProperties: false, default: {} },
    ),
    http: Type.Object(
      {
        listen: Type.String({ default: '0.0.0.0' }),
        port: Type.Integer({ minimum: 0, maximum: 65535, default: 8080 }),
        /** The base URL machines use to reach this server (iPXE scripts, config URLs). Derived when empty. */
        publicUrl: Type.String({ default: '' }),
        /**
         * Where machines download kernels and initramfs images instead of <publicUrl>/assets (a mirror, or an nginx in
         * front serving the assets directory): <assetBaseUrl>/talos/v1.13.9/amd64/vmlinuz. Scripts and configs are
         * still rackboot's. GRUB takes it only when it is http:// (GRUB has no HTTPS).
         */
        assetBaseUrl: Type.Optional(Type.String({ pattern: '^https?://[^\\s/?#]+(/[^\\s?#]*)?$' })),
        /** Machines downloading kernels/initramfs at once; the rest are told to wait and retry. */
        maxConcurrentDownloads: Type.Integer({ minimum: 1, default: 100 }),
        /** Open connections one client address may hold; past it new ones are closed at once (counted). */
        maxConnectionsPerAddress: Type.Integer({ minimum: 1, default: 64 }),
        /** Open connections in all; past it new ones are closed at once (counted), so file descriptors stay for TFTP and DHCP. */
        maxConnections: Type.Integer({ minimum: 1, default: 8192 }),
        /** A client must have sent its whole request head within this time (slow-header trickling is cut off). */
        headersTimeoutMs: Type.Integer({ minimum: 1000, default: 10_000 }),
        /** Event streams (/api/v1/events) one API token may hold open at once. */
        maxEventStreamsPerToken: Type.Integer({ minimum: 1, default: 8 }),
      },
      { additionalProperties: false, default: {} },
    ),
    tftp: Type.Object(
      {
        enabled: Type.Boolean({ default: true }),
        listen: Type.String({ default: '0.0.0.0' }),
        /** 69 when running as root, else 6969 (chosen at load time). */
        port: Type.Optional(Port),
        /** Largest blksize granted; also capped by the path MTU below. */
        maxBlockSize: Type.Integer({ minimum: 8, maximum: 65464, default: 1468 }),
        /** MTU of the provisioning path: blksize never exceeds MTU - 32 (IP + UDP + TFTP headers). */
        mtu: Type.Integer({ minimum: 68, maximum: 65535, default: 1500 }),
        maxWindowSize: Type.Integer({ minimum: 1, maximum: 65535, default: 64 }),
        maxTransfers: Type.Integer({ minimum: 1, default: 500 }),
        /** Transfers one client address may have open at once; further requests get an error (counted). */
        maxTransfersPerClient: Type.Integer({ minimum: 1, default: 4 }),
        /**
         * Retransmissions a transfer gets before its first ACK: a client that never acknowledges anything is dropped
         * after this many (a real firmware ACKs block 1 or the OACK within a second).
         */
        unackedRetries: Type.Integer({ minimum: 0, default: 1 }),
        /** First retransmission timeout; doubles per retry. */
        retransmitMs: Type.Integer({ minimum: 50, default: 1000 }),
        maxRetries: Type.Integer({ minimum: 1, default: 5 }),
        /** After each DATA, keep the event loop polling this long for the ACK (lock-step round trips); 0: off. */
        busyPollMicros: Type.Integer({ minimum: 0, maximum: 100000, default: 1000 }),
        /** Memory for boot files kept as ready DATA packets and shared by transfers (MiB; 0: off). */
        cacheMiB: Type.Integer({ minimum: 0, default: 128 }),
        /**
         * SO_RCVBUF of the server-port sockets (bytes; 0: the kernel default, ~208 KiB). The kernel caps it at
         * net.core.rmem_max (a warning says so); what overflows is counted as reason="kernel" drops.
         */
        receiveBufferBytes: Type.Integer({ minimum: 0, maximum: 1073741824, default: 8388608 }),
      },
      { additionalProperties: false, default: {} },
    ),
    /** DHCPv6 for IPv6 netboot (src/dhcp6): off by default; boot files are dhcp.bootFiles'. */
    dhcp6: Dhcp6SettingsSchema,
    dhcp: Type.Object(
      {
        mode: Type.Union([Type.Literal('off'), Type.Literal('full'), Type.Literal('proxy')], { default: 'off' }),
        /**
         * The directly attached provisioning interface. Node cannot bind a socket to one interface, so this names
         * where serverAddress comes from when it is not given; broadcasts from any interface reach the server.
         */
        interface: Type.Optional(Type.String()),
        /** This server's address on the provisioning network: option 54 and next-server. */
        serverAddress: Type.Optional(IPv4),
        listen: Type.String({ default: '0.0.0.0' }),
        port: Type.Integer({ minimum: 0, maximum: 65535, default: 67 }),
        /** ProxyDHCP boot-server port (PXE). */
        proxyPort: Type.Integer({ minimum: 0, maximum: 65535, default: 4011 }),
        subnets: Type.Array(DhcpSubnetSchema, { default: [] }),
        /**
         * IPv6 router advertisements (no prefix, router lifetime 0) on `interface`, through radvd, so iPXE does not
         * wait ~16 s for IPv6 autoconfiguration. auto: in full mode only (rackboot owns the segment); on: also in
         * proxy mode; off: a router on the segment advertises.
         */
        routerAdverts: Type.Union([Type.Literal('auto'), Type.Literal('on'), Type.Literal('off')], { default: 'auto' }),
        /** Send iPXE option 175.176 = 1 so iPXE does not wait ~3 s for ProxyDHCP offers. */
        ipxeNoPxedhcp: Type.Boolean({ default: true }),
        /** siaddr (the TFTP server) in boot replies; serverAddress when unset. */
        nextServer: Type.Optional(IPv4),
        /**
         * TFTP loaders by firmware family (option 93). A family without a name, or named `none`, is not network-booted
         * (proxy DHCP stays silent to it, full DHCP gives it an address without boot options, and no loader for it is
         * checked). arm64 boots Debian's signed GRUB netboot image
         * (`rackboot assets fetch grub`): Debian ships no arm64 iPXE.
         */
        bootFiles: Type.Object(
          {
            bios: Type.String({ minLength: 1, default: 'undionly.kpxe' }),
            /** ipxe.efi, or snponly.efi to use the firmware's own NIC driver. */
            uefiX64: Type.String({ minLength: 1, default: 'ipxe.efi' }),
            uefiArm64: Type.String({ minLength: 1, default: 'grubnetaa64.efi' }),
            uefiIa32: Type.Optional(Type.String({ minLength: 1 })),
            uefiArm32: Type.Optional(Type.String({ minLength: 1 })),
            uefiRiscv32: Type.Optional(Type.String({ minLength: 1 })),
            uefiRiscv64: Type.Optional(Type.String({ minLength: 1 })),
            uefiLoongarch64: Type.Optional(Type.String({ minLength: 1 })),
          },
          { additionalProperties: false, default: {} },
        ),
        /** Boot file by exact option 93 value, before the families above, e.g. { "7": "snponly.efi" }. */
        archBootFiles: Type.Record(Type.String({ pattern: '^\\d{1,5}$' }), Type.String({ minLength: 1 }), { default: {} }),
        /** How long an offered address stays held for the client that was offered it. */
        offerSeconds: Type.Integer({ minimum: 1, maximum: 3600, default: 30 }),
        /** How long an address a client declined (found in use) stays out of the pool. */
        declineSeconds: Type.Integer({ minimum: 0, default: 3600 }),
        /** NAK requests for addresses this server does not know (RFC 2131 authoritative server). */
        authoritative: Type.Boolean({ default: true }),
        /** How often reservations are reloaded from the inventory. */
        reservationRefreshSeconds: Type.Integer({ minimum: 1, default: 30 }),
        /** How long a reply waits for the lifecycle's per-machine advice before going out without it. */
        bootPortTimeoutMs: Type.Integer({ minimum: 1, default: 500 }),
        /**
         * SO_RCVBUF of the DHCP sockets (bytes; 0: the kernel default, ~208 KiB): what a boot storm's datagrams can fill
         * while the server is busy. The kernel caps it at net.core.rmem_max (a warning says so, with the sysctl);
         * what overflows is counted as rackboot_dhcp_dropped_total{reason="kernel"}.
         */
        receiveBufferBytes: Type.Integer({ minimum: 0, maximum: 1073741824, default: 8388608 }),
      },
      { additionalProperties: false, default: {} },
    ),
    boot: Type.Object(
      {
        /** What a discovered or ready machine does while it waits: an iPXE retry loop, or boot its own disk. */
        holdMode: Type.Union([Type.Literal('retry'), Type.Literal('exit')], { default: 'retry' }),
        /** Accept newly discovered machines into the pool without a tech. */
        autoAccept: Type.Boolean({ default: false }),
        /** Seconds a waiting machine sleeps before asking again (doubles up to holdMaxSeconds). */
        holdSeconds: Type.Integer({ minimum: 1, default: 30 }),
        holdMaxSeconds: Type.Integer({ minimum: 1, default: 300 }),
        /** What the discovery agent does after reporting: reboot (back into the hold loop), poweroff, or wait. */
        agentAfter: Type.Union([Type.Literal('reboot'), Type.Literal('poweroff'), Type.Literal('wait')], { default: 'reboot' }),
        /**
         * An installed machine that network-boots again: boot its disk (for boot orders with the network first, where
         * every boot asks), reinstall it, or mark it failed (for boot orders with the disk first, where a network boot
         * means its disk or boot entry is gone).
         */
        installedReturns: Type.Union([Type.Literal('disk'), Type.Literal('reinstall'), Type.Literal('fail')], { default: 'disk' }),
        /** Extra kernel args for the discovery agent (e.g. its console). */
        agentKernelArgs: Type.Array(Type.String(), { default: ['console=tty0', 'console=ttyS0,115200n8'] }),
        /** The same for arm64 agents: the PL011 UART (ttyAMA0) is the serial console of arm64 servers and QEMU's virt. */
        agentKernelArgsArm64: Type.Array(Type.String(), { default: ['console=tty0', 'console=ttyAMA0,115200'] }),
      },
      { additionalProperties: false, default: {} },
    ),
    talos: Type.Object(
      {
        /**
         * Directory of Talos's config JSON schemas (talos-config.<version>.schema.json) used to lint every config
         * before it is served. Empty: the schemas shipped in talos-schemas/ (talos/lint DEFAULT_SCHEMAS_DIR).
         */
        schemasDir: Type.String({ default: '' }),
        /** Talos's event sink (plaintext gRPC): machines report install stages here (talos.events.sink=). 0 turns it off. */
        eventsSinkPort: Type.Integer({ minimum: 0, maximum: 65535, default: 4002 }),
        /** Talos's kernel log as JSON lines over TCP and UDP (talos.logging.kernel=). 0 turns it off. */
        kernelLogPort: Type.Integer({ minimum: 0, maximum: 65535, default: 4001 }),
        /** Kernel log lines kept per machine, in memory. */
        kernelLogLines: Type.Integer({ minimum: 10, default: 2000 }),
        /** Total memory of the kernel-log store, all machines together (MiB); the least recently written peer goes first. */
        kernelLogMaxMiB: Type.Integer({ minimum: 1, default: 64 }),
        /** Kernel log lines one peer address may send per second (a burst of twice this): UDP lines past it are dropped and counted, a TCP connection is read more slowly. */
        kernelLogLinesPerSecond: Type.Integer({ minimum: 1, default: 500 }),
      },
      { additionalProperties: false, default: {} },
    ),
    /** Failure as routine: deadlines per boot phase, the repair ladder, and how many machines provision at once. */
    repair: Type.Object(
      {
        /** Watch provisioning machines, repair and quarantine them. */
        enabled: Type.Boolean({ default: true }),
        /** Seconds allowed per phase (a profile's `deadlines` overrides them). POST alone can take 2-3 minutes. */
        deadlines: Type.Object(
          {
            /** Allocation or power cycle → its boot script (firmware, DHCP, iPXE). */
            boot: Type.Integer({ minimum: 10, default: 600 }),
            /** Boot script → kernel and initramfs downloaded. */
            download: Type.Integer({ minimum: 10, default: 900 }),
            /** Downloads → Talos config fetched. */
            config: Type.Integer({ minimum: 10, default: 600 }),
            /** Config → Talos installing. */
            installing: Type.Integer({ minimum: 10, default: 900 }),
            /** Installing → installed. */
            installed: Type.Integer({ minimum: 10, default: 1800 }),
          },
          { additionalProperties: false, default: {} },
        ),
        /** Failures in one phase that quarantine a machine in state `failed`. */
        maxPhaseFailures: Type.Integer({ minimum: 1, default: 2 }),
        /** Failures in all that quarantine it. */
        maxFailures: Type.Integer({ minimum: 1, default: 3 }),
        /** Wait before a repair (next boot PXE, power cycle): doubles per failure up to the max, with jitter. */
        backoffSeconds: Type.Integer({ minimum: 0, default: 30 }),
        backoffMaxSeconds: Type.Integer({ minimum: 0, default: 600 }),
        /** Repairs running at once. */
        maxConcurrentRepairs: Type.Integer({ minimum: 1, default: 20 }),
        /** Install boot scripts in one attempt without a config fetch: a boot loop. */
        bootLoopScripts: Type.Integer({ minimum: 2, default: 5 }),
      },
      { additionalProperties: false, default: {} },
    ),
    /** How many machines install at once; the rest wait in order with a hold script (the web UI shows the line). */
    provisioning: Type.Object(
      {
        /** Machines installing at once in all (0: no bound). */
        maxConcurrent: Type.Integer({ minimum: 0, default: 0 }),
        /** Machines installing at once per rack (the machine's rack, else its `rack` label; 0: no bound). */
        maxPerRack: Type.Integer({ minimum: 0, default: 0 }),
      },
      { additionalProperties: false, default: {} },
    ),
    /** What rackboot believes on the provisioning network, and what it lets unauthenticated clients cost it. */
    security: Type.Object(
      {
        /**
         * Believe the MAC, serial or uuid a client claims in /boot.ipxe when neither a lease rackboot granted nor the
         * kernel's neighbour table vouches for the address. Anyone on the segment can then impersonate any machine and
         * fetch its Talos config: only for a segment where every host is trusted (README "Security model").
         */
        trustClaimedIdentity: Type.Boolean({ default: false }),
        /** How long a discovery agent's token stays valid (one report, from the machine it was issued to). */
        agentTokenTtlSeconds: Type.Integer({ minimum: 60, default: 1800 }),
        /** How long a Talos config token stays valid while its machine provisions (Talos retries a failed fetch). */
        configTokenTtlSeconds: Type.Integer({ minimum: 60, default: 3600 }),
        /** Configs served per token: one per boot, a few more for a Talos that lost the answer. */
        configTokenMaxFetches: Type.Integer({ minimum: 1, default: 5 }),
        /** New machines one client address may create through /boot.ipxe per minute. */
        newMachinesPerAddressPerMinute: Type.Integer({ minimum: 1, default: 5 }),
        /** New machines all clients together may create through /boot.ipxe per minute. */
        newMachinesPerMinute: Type.Integer({ minimum: 1, default: 600 }),
      },
      { additionalProperties: false, default: {} },
    ),
    inventory: Type.Object(
      {
        /** A declarative inventory directory imported at start-up (create and update only, never prune). */
        importOnStart: Type.Optional(Type.String()),
      },
      { additionalProperties: false, default: {} },
    ),
    /** The database: the embedded SQLite (dataDir/rackboot.db), or a PostgreSQL several instances share (`url`). */
    database: Type.Object(
      {
        /**
         * postgres://user@host:port/dbname (or postgresql://; `?host=/run/postgresql` for a Unix socket): keep the
         * inventory, leases and events in PostgreSQL, shared by every rackboot instance given the same URL. Absent:
         * SQLite in the data directory. A password may be in the URL, in PGPASSWORD or in ~/.pgpass; it is never
         * logged. Each instance still needs the same secrets key file (dataDir/secret.key) to open sealed secrets.
         */
        url: Type.Optional(Type.String({ pattern: '^postgres(ql)?://' })),
        /** PostgreSQL connections this instance keeps open at most. */
        poolSize: Type.Integer({ minimum: 1, maximum: 200, default: 10 }),
        /**
         * How long start-up waits for PostgreSQL to accept connections (ms), saying so while it waits; 0 waits for
         * ever (an instance started before its database, as systemd or Compose may).
         */
        connectTimeoutMs: Type.Integer({ minimum: 0, default: 0 }),
        /**
         * When a commit is on disk. normal: a committed write (a lease before its ACK, an allocation) survives a crash
         * of rackboot, but the last second or so of commits may be lost on power loss or a kernel crash (the database
         * stays consistent, it just ends earlier). full: commits survive power loss too, at the cost of an fsync of
         * the write-ahead log per commit (measured in `npm run bench -- sqlite`); for sites without a UPS or with
         * disks that honour flushes and leases that must never be handed out twice after an outage.
         */
        synchronous: Type.Union([Type.Literal('normal'), Type.Literal('full')], { default: 'normal' }),
        // (SQLite only, as are walLimitMiB and busyTimeoutMs: PostgreSQL keeps its own settings.)
        /**
         * Size of the write-ahead log (MiB) past which `serve` restarts it with a brief checkpoint (queries wait a few
         * tens of milliseconds; the event loop does not). The file stays near this size under any write rate, unless
         * another process keeps a read transaction open for long.
         */
        walLimitMiB: Type.Integer({ minimum: 1, maximum: 4096, default: 16 }),
        /**
         * How long a query waits for a write lock another process holds (a CLI command writing while `serve` runs, a
         * backup) before it fails with a storage error (ms). The wait is asynchronous: the server keeps answering.
         */
        busyTimeoutMs: Type.Integer({ minimum: 0, maximum: 600_000, default: 10_000 }),
      },
      { additionalProperties: false, default: {} },
    ),
    power: Type.Object(
      {
        /** Budget of one BMC operation attempt, session set-up included; a BMC silent this long is not asked again at once. */
        timeoutMs: Type.Integer({ minimum: 100, default: 20_000 }),
        /** Attempts per operation (first included); reboots are retried only when they surely did not run. */
        attempts: Type.Integer({ minimum: 1, maximum: 10, default: 3 }),
        /** Retry backoff: base doubles per attempt up to the max, with jitter (half to all of it). */
        backoffBaseMs: Type.Integer({ minimum: 0, default: 1_000 }),
        backoffMaxMs: Type.Integer({ minimum: 0, default: 30_000 }),
        /** Minimum time between two reboots (cycle, reset, PXE boot now) of one machine. */
        minRebootIntervalMs: Type.Integer({ minimum: 0, default: 120_000 }),
        /** After a power action, how long the BMC has to report its result (BMCs apply changes seconds late). */
        verifyTimeoutMs: Type.Integer({ minimum: 0, default: 60_000 }),
        /** How often the BMC is read while waiting for that. */
        verifyIntervalMs: Type.Integer({ minimum: 100, default: 2_000 }),
        /** A soft-off (ACPI shutdown) still on after this long is powered off hard ('hard-off') or reported ('none'). */
        softOffTimeoutMs: Type.Integer({ minimum: 1_000, default: 180_000 }),
        softOffFallback: Type.Union([Type.Literal('hard-off'), Type.Literal('none')], { default: 'hard-off' }),
        /** `serve` polls every BMC's power state (the power column, the gauge, the timeline's "power is off"). */
        poll: Type.Boolean({ default: true }),
        /** Power state polling: each machine once per interval at its own phase, ± jitter (a fraction). */
        pollIntervalMs: Type.Integer({ minimum: 1_000, default: 60_000 }),
        pollJitter: Type.Number({ minimum: 0, maximum: 0.5, default: 0.1 }),
        /** Polls in flight at once across all BMCs. */
        pollConcurrency: Type.Integer({ minimum: 1, default: 32 }),
        /** A BMC session is kept this long after an operation for the next one (0: log out after each). */
        sessionIdleMs: Type.Integer({ minimum: 0, maximum: 25_000, default: 20_000 }),
        /** IPMI cipher suites in the order tried (17 = HMAC-SHA256, 3 = HMAC-SHA1). */
        ipmiCipherSuites: Type.Array(Type.Union([Type.Literal(17), Type.Literal(3)]), { minItems: 1, default: [17, 3] }),
        /**
         * How a boot override set over IPMI is checked on read-back: 'strict' (valid flag, device, mode and
         * persistence) or 'device' (the device only, for BMCs that drop the other bits, like ipmi_sim).
         */
        ipmiBootVerify: Type.Union([Type.Literal('strict'), Type.Literal('device')], { default: 'strict' }),
      },
      { additionalProperties: false, default: {} },
    ),
    /** Virtual media boot (Redfish VirtualMedia): an ISO a BMC inserts as a CD; it runs iPXE and chains to /boot.ipxe. */
    virtualMedia: Type.Object(
      {
        /**
         * An ISO of your own, served as is at /media/rackboot.iso. Empty: rackboot builds one from Debian's iPXE
         * (packages xorriso mtools isolinux syslinux-common ipxe), which chains to the boot script at http.publicUrl.
         */
        iso: Type.String({ default: '' }),
        /** The ISO's URL as BMCs reach it (their network may not be the machines'). Empty: <publicUrl>/media/rackboot.iso. */
        imageUrl: Type.String({ default: '' }),
      },
      { additionalProperties: false, default: {} },
    ),
  },
  { additionalProperties: false },
)

export type SettingsInput = Static<typeof SettingsSchema>
export type DhcpSubnetSettings = Static<typeof DhcpSubnetSchema>

/** Settings after loading: every default applied, paths absolute, the TFTP port chosen. */
export type Settings = Readonly<
  Omit<SettingsInput, 'tftp'> & {
    tftp: Omit<SettingsInput['tftp'], 'port'> & { port: number }
    /** Absolute path of the settings file read, or null when running on defaults. */
    source: string | null
  }
>
