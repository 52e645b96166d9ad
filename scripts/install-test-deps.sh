#!/usr/bin/env bash
# Debian packages the tests drive as real peers (DHCP and TFTP clients and servers, BMC simulators, QEMU and
# firmware). Run as root; the tests that need one of these skip, saying why, when it is missing.
set -euo pipefail
packages=(
  iproute2 nftables procps psmisc curl openssl
  isc-dhcp-client kea-admin kea-dhcp4-server dnsmasq-base
  tftp-hpa atftp tftpd-hpa
  openipmi ipmitool python3-pyghmi redfishtool
  qemu-system-x86 qemu-utils ipxe-qemu ipxe ovmf grub-efi-amd64-bin busybox-static cpio kmod xz-utils dash
  qemu-system-arm qemu-efi-aarch64
  chromium fonts-liberation
  radvd ndisc6 libcap2-bin tcpdump
  python3-flask python3-requests python3-tenacity python3-bcrypt python3-webob
  xorriso mtools isolinux syslinux-common
  postgresql
  # python3-*: sushy-emulator (../shared/harness/sushy-tools), the Redfish peer; xorriso, mtools, isolinux: the
  # virtual media ISO rackboot builds
  # postgresql: the shared inventory backend; tests start their own clusters (initdb + pg_ctl), never the service
  # radvd: rackboot's router advertisements; ndisc6 (rdisc6) asks for them as iPXE does; tcpdump counts the ones
  # sent unasked (and is the boot bench's wire clock)
  # dnsmasq-base also is the DHCP relay (--dhcp-relay) of the relayed segment in test/e2e/matrix.test.ts, radvd its router
  # chromium: the web UI tests drive Debian's browser through playwright-core
  # qemu-system-arm, qemu-efi-aarch64: the arm64 guests (qemu-system-aarch64 -M virt, AAVMF) of test/e2e/arm64.test.ts
  # busybox-static also provides udhcpc and the other applets the DHCP tests use (it conflicts with busybox)
)
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
# The Debian packages start their daemons; the tests run their own on private ports.
for svc in tftpd-hpa kea-dhcp4-server isc-kea-dhcp4-server radvd postgresql; do
  (command -v systemctl >/dev/null && systemctl stop "$svc" 2>/dev/null) || (service "$svc" stop 2>/dev/null) || true
done
pkill -x in.tftpd 2>/dev/null || true
pkill -x kea-dhcp4 2>/dev/null || true
pkill -x radvd 2>/dev/null || true
echo "test dependencies installed: ${packages[*]}"
