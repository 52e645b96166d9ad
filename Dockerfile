# rackboot edge appliance: one process, embedded SQLite, boot files that work without internet.
# Build: docker compose build (or docker build -t rackboot .)   Run: docker compose up -d (host networking: DHCP and
# TFTP need it). The build needs internet (npm, Debian packages); the image does not.
#
# Stages: build (npm ci + compiled JavaScript in dist/), seed (the boot files baked in: Debian's iPXE loaders and a
# prebuilt discovery agent, laid out as an assets directory), and the runtime image, which runs as the non-root user
# rackboot and copies the seed into an empty assets volume at first start (src/assets/seed.ts).

# Node 22 LTS (Node 20 is supported too, but past its end of life in April 2026).
FROM node:22-bookworm-slim AS build
WORKDIR /opt/rackboot
# better-sqlite3 compiles from source when no prebuilt binary can be fetched.
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
COPY bin/freshness.mjs ./bin/freshness.mjs
COPY scripts/build.mjs ./scripts/build.mjs
# Production dependencies only: the build needs none of the dev ones, its compiler (esbuild) comes with tsx, a
# runtime dependency. `prepare` finds no src/ yet (this layer is cached while package-lock.json is unchanged).
RUN npm ci --omit=dev
COPY src ./src
RUN npm run build

FROM build AS seed
# What an offline site needs to PXE-boot and discover machines, built once here:
#  - ipxe/: Debian's iPXE loaders, as `rackboot assets fetch ipxe` imports them (with their manifest entries);
#  - agent/: the discovery agent, Debian's kernel and a static busybox (`rackboot assets build agent`; x86-64 targets,
#    so build on amd64). The kernel .deb is downloaded here, at build time.
#  - grub/ and agent/arm64/: arm64 (Debian has no arm64 iPXE): GRUB netboot images built by grub-mkimage, and the
#    arm64 agent, from Debian's arm64 packages through a private apt configuration (nothing arm64 is installed).
ENV RACKBOOT_ASSETS_DIR=/opt/rackboot/assets-seed
RUN apt-get update && apt-get install -y --no-install-recommends ipxe busybox-static kmod cpio grub-common \
  && node bin/rackboot.mjs assets fetch ipxe \
  && node bin/rackboot.mjs assets build agent --cache-dir /tmp/agent-cache \
  && node bin/rackboot.mjs assets fetch grub --cache-dir /tmp/agent-cache \
  && node bin/rackboot.mjs assets build agent --arch arm64 --cache-dir /tmp/agent-cache \
  && rm -rf /tmp/agent-cache /var/lib/apt/lists/*

FROM node:22-bookworm-slim
WORKDIR /opt/rackboot
# ipxe: ipxe.lkrn and ipxe.efi for the virtual media ISO (and `rackboot assets fetch ipxe`); radvd for the router
# advertisements that spare iPXE its ~16 s IPv6 wait (dhcp.routerAdverts); iproute2 for the IPv6 neighbour table
# (`ip -6 neigh`, client identity in ProxyDHCP mode); xorriso, mtools, isolinux and syslinux-common to build the
# virtual media ISO BMCs mount; libcap2-bin for setcap.
#
# Capabilities, for a process that is not root: the node binary gets CAP_NET_BIND_SERVICE (DHCP on 67 and TFTP on
# 69 are below 1024; ProxyDHCP's 4011, HTTP, 4001 and 4002 are not), radvd gets CAP_NET_RAW (its raw ICMPv6
# socket). File capabilities, because Docker gives a non-root user's process none of its cap_add (no ambient
# capabilities) and because the server starts radvd, whose own file capability survives that exec while an ambient
# set would not survive node's. Nothing needs NET_ADMIN: Node's UDP sockets need no SO_BINDTODEVICE or raw socket,
# DHCP replies go by broadcast, radvd only advertises. A file capability works only when the container's bounding
# set holds it, and an executable whose capability is missing there does not start at all: docker-compose.yml adds
# exactly these two (Docker's default set has both; Podman's lacks NET_RAW) and must not set no-new-privileges.
RUN apt-get update && apt-get install -y --no-install-recommends ipxe radvd iproute2 xorriso mtools isolinux syslinux-common libcap2-bin \
  && rm -rf /var/lib/apt/lists/* \
  && setcap cap_net_bind_service+ep /usr/local/bin/node \
  && setcap cap_net_raw+ep /usr/sbin/radvd \
  && groupadd --system --gid 10001 rackboot \
  && useradd --system --uid 10001 --gid rackboot --home-dir /home/rackboot --create-home --shell /usr/sbin/nologin rackboot \
  && install -d -o rackboot -g rackboot -m 0700 /var/lib/rackboot \
  && install -d -o rackboot -g rackboot -m 0755 /var/lib/rackboot/assets \
  && ln -s /opt/rackboot/bin/rackboot.mjs /usr/local/bin/rackboot
COPY --from=build /opt/rackboot/node_modules ./node_modules
COPY --from=build /opt/rackboot/dist ./dist
COPY --from=seed /opt/rackboot/assets-seed ./assets-seed
COPY package.json ./
COPY bin ./bin
COPY talos-schemas ./talos-schemas
COPY inventory ./inventory.example
# RACKBOOT_TFTP_PORT: TFTP's default is 69 only for root (6969 otherwise); firmware asks on 69.
ENV NODE_ENV=production \
    RACKBOOT_DATA_DIR=/var/lib/rackboot \
    RACKBOOT_ASSETS_DIR=/var/lib/rackboot/assets \
    RACKBOOT_ASSETS_SEED=/opt/rackboot/assets-seed \
    RACKBOOT_TFTP_PORT=69
VOLUME ["/var/lib/rackboot", "/var/lib/rackboot/assets"]
USER rackboot
# HTTP; DHCP; TFTP; ProxyDHCP (PXE boot server); Talos's kernel log (JSON lines, TCP and UDP); Talos's event sink (gRPC).
EXPOSE 8080/tcp 67/udp 69/udp 4011/udp 4001/tcp 4001/udp 4002/tcp
# Address and port from the settings (RACKBOOT_CONFIG, RACKBOOT_HTTP_PORT, ...), as `serve` reads them.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["rackboot", "healthcheck"]
ENTRYPOINT ["node", "/opt/rackboot/bin/rackboot.mjs"]
CMD ["serve"]
