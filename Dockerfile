# rackboot edge appliance: one process, embedded SQLite, cached boot assets.
# Build: docker build -t rackboot .   Run: docker compose up -d (host networking: DHCP and TFTP need it).
FROM node:20-bookworm-slim AS build
WORKDIR /opt/rackboot
# better-sqlite3 compiles from source when no prebuilt binary can be fetched.
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --omit=dev

FROM node:20-bookworm-slim
WORKDIR /opt/rackboot
# iPXE binaries from Debian, so an offline site can boot BIOS and UEFI machines out of the box; radvd for the
# router advertisements that spare iPXE its ~16 s IPv6 wait on a segment without a router (dhcp.routerAdverts);
# xorriso, mtools, isolinux and syslinux-common to build the virtual media ISO BMCs mount (bootMethod virtual-media).
RUN apt-get update && apt-get install -y --no-install-recommends ipxe radvd xorriso mtools isolinux syslinux-common \
  && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/rackboot/node_modules ./node_modules
COPY package.json tsconfig.json ./
COPY bin ./bin
COPY src ./src
COPY talos-schemas ./talos-schemas
COPY inventory ./inventory.example
ENV NODE_ENV=production \
    RACKBOOT_DATA_DIR=/var/lib/rackboot \
    RACKBOOT_ASSETS_DIR=/var/lib/rackboot/assets
VOLUME ["/var/lib/rackboot", "/var/lib/rackboot/assets"]
EXPOSE 8080/tcp 69/udp 67/udp 4011/udp
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.RACKBOOT_HTTP_PORT || 8080) + '/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "/opt/rackboot/bin/rackboot.mjs"]
CMD ["serve"]
