#!/bin/sh
# rackboot discovery agent: /init of the agent initramfs. Loads the NIC and disk drivers, takes a DHCP lease,
# collects the hardware report (/bin/rackboot-collect), POSTs it to rackboot.report= and then powers off, waits or
# reboots (rackboot.after=). With rackboot.wipe=1 it first wipes every disk (sh/wipe.sh) and lists them in the
# report ("wiped"). Every step prints a "rackboot-agent:" line on the console, which tests watch.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
umask 022

say() { echo "rackboot-agent: $*"; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /tmp /run
mount -t devpts devpts /dev/pts 2>/dev/null

REPORT_URL= TOKEN= MACHINE= AFTER=poweroff AFTER_FAILURE= BOOTIF= DEBUG= MODULES_ALL= WIPE=
set -f # no globbing of kernel arguments
for arg in $(cat /proc/cmdline); do
  case $arg in
    rackboot.report=*) REPORT_URL=${arg#*=} ;;
    rackboot.token=*) TOKEN=${arg#*=} ;;
    rackboot.machine=*) MACHINE=${arg#*=} ;;
    rackboot.after=*) AFTER=${arg#*=} ;;
    rackboot.after_failure=*) AFTER_FAILURE=${arg#*=} ;;
    rackboot.debug=*|rackboot.debug) DEBUG=1 ;;
    rackboot.modules=all) MODULES_ALL=1 ;;
    rackboot.wipe=*) WIPE=${arg#*=} ;;
    BOOTIF=*) BOOTIF=${arg#*=} ;;
  esac
done
set +f
[ -n "$AFTER_FAILURE" ] || AFTER_FAILURE=$AFTER
# Keep the console readable for the markers: warnings and worse only, unless debugging.
[ -n "$DEBUG" ] || echo 4 > /proc/sys/kernel/printk

say "start agentVersion=$(cat /etc/rackboot/version) kernel=$(uname -r) machine=${MACHINE:-unknown}"

finish() { # $1 = poweroff|wait|reboot
  case $1 in
    wait)
      say "waiting"
      while :; do sleep 3600; done
      ;;
    reboot)
      say "rebooting"
      sync
      reboot -f
      ;;
    *)
      say "powering off"
      sync
      poweroff -f
      ;;
  esac
  # Never let /init return: the kernel would panic.
  while :; do sleep 3600; done
}

# Drivers for the devices present (sh/modules.sh), dependencies first.
. /etc/rackboot/modules.sh
t0=$(cut -d ' ' -f 1 /proc/uptime)
load_modules
say "modules loaded count=$MODULES_LOADED uptime=$t0-$(cut -d ' ' -f 1 /proc/uptime)s"

# Physical links (those with a device behind them), sorted by name.
nics() {
  for d in /sys/class/net/*; do
    [ -e "$d/device" ] && echo "${d##*/}"
  done
}

for i in $(nics); do ip link set dev "$i" up 2>/dev/null; done

# Wait up to 15 s for a carrier (real NICs take a few seconds to negotiate).
t=0
while [ $t -lt 30 ]; do
  up=
  for i in $(nics); do
    [ "$(cat /sys/class/net/$i/carrier 2>/dev/null)" = 1 ] && up="$up $i"
  done
  [ -n "$up" ] && break
  sleep 0.5
  t=$((t + 1))
done

# The interface iPXE booted from (BOOTIF=01-aa-bb-..) first, then the others with a carrier.
order=$up
if [ -n "$BOOTIF" ]; then
  want=$(echo "${BOOTIF#01-}" | tr 'A-F-' 'a-f:')
  for i in $up; do
    if [ "$(cat /sys/class/net/$i/address)" = "$want" ]; then
      order="$i $(echo "$up" | tr ' ' '\n' | grep -vx "$i" | tr '\n' ' ')"
    fi
  done
fi

lease=
# Booted over IPv6: the address the kernel forms from router advertisements (sh/ipv6.sh), before DHCPv4.
. /etc/rackboot/ipv6.sh
ipv6_url "$REPORT_URL" && lease=$(ipv6_lease 10 $order)
for i in $order; do
  [ -n "$lease" ] && break
  say "dhcp iface=$i mac=$(cat /sys/class/net/$i/address)"
  if udhcpc -i "$i" -f -q -n -t 8 -T 2 -V "rackboot-agent" -s /etc/rackboot/udhcpc.script >/tmp/udhcpc.log 2>&1; then
    lease=$(cat /run/dhcp-lease 2>/dev/null)
    break
  fi
done
if [ -n "$lease" ]; then
  say "network up $lease"
else
  say "network failed: no DHCP lease (nor IPv6 address) on any link (links with carrier:${up:- none})"
fi

# Devices found since (SCSI and SATA scans run asynchronously, and their disks need sd_mod): load their drivers too,
# then let disk probing settle: the count of block devices must hold for half a second.
load_modules
prev=-1
t=0
while [ $t -lt 20 ]; do
  cur=$(ls /sys/block | wc -l)
  [ "$cur" = "$prev" ] && break
  prev=$cur
  sleep 0.5
  t=$((t + 1))
done

WIPED= WIPE_FAILED=
if [ "$WIPE" = 1 ]; then
  . /etc/rackboot/wipe.sh
  wipe_disks
fi

RACKBOOT_MACHINE=$MACHINE RACKBOOT_WIPE=$WIPE RACKBOOT_WIPED=$WIPED RACKBOOT_WIPE_FAILED=$WIPE_FAILED \
  /bin/rackboot-collect > /tmp/report.json 2>/tmp/collect.err
if [ ! -s /tmp/report.json ]; then
  say "report failed: collector produced nothing: $(tail -n 1 /tmp/collect.err)"
  finish "$AFTER_FAILURE"
fi
say "collected bytes=$(wc -c < /tmp/report.json) disks=$(ls /sys/block | grep -cvE '^(loop|ram|zram|sr|fd|dm-|md|nbd)')"
[ -n "$DEBUG" ] && echo "rackboot-agent: report $(cat /tmp/report.json)"

if [ -z "$REPORT_URL" ]; then
  say "report failed: no rackboot.report= on the kernel command line"
  finish "$AFTER_FAILURE"
fi

# POST with backoff: about 60 s in all. Client errors that a retry cannot fix end it at once.
post() {
  rm -f /tmp/response /tmp/wget.err
  if [ -n "$TOKEN" ]; then
    timeout 20 wget -q -O /tmp/response --header "Authorization: Bearer $TOKEN" --header "Content-Type: application/json" \
      --post-file /tmp/report.json "$REPORT_URL" 2>/tmp/wget.err
  else
    timeout 20 wget -q -O /tmp/response --header "Content-Type: application/json" \
      --post-file /tmp/report.json "$REPORT_URL" 2>/tmp/wget.err
  fi
}
attempt=0
sent=
reason=
for delay in 1 2 4 8 15 15 15 0; do
  attempt=$((attempt + 1))
  if post; then
    sent=1
    break
  fi
  reason=$(tail -n 1 /tmp/wget.err 2>/dev/null | sed -e 's/^wget: //')
  [ -n "$reason" ] || reason="wget timed out or failed"
  case $reason in
    *" 400 "*|*" 401 "*|*" 403 "*|*" 413 "*|*" 422 "*) break ;;
  esac
  [ "$delay" = 0 ] && break
  say "report retry attempt=$attempt in=${delay}s: $reason"
  sleep "$delay"
done

if [ -z "$sent" ]; then
  say "report failed: $reason (after $attempt attempts)"
  finish "$AFTER_FAILURE"
fi
say "report sent attempt=$attempt"

# The server may say what to do next: {"after":"reboot"} in its answer overrides rackboot.after=.
next=$(grep -o '"after"[[:space:]]*:[[:space:]]*"[a-z]*"' /tmp/response 2>/dev/null | sed -e 's/.*"\([a-z]*\)"$/\1/')
case $next in poweroff|wait|reboot) AFTER=$next ;; esac
finish "$AFTER"
