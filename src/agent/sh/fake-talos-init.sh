#!/bin/sh
# A stand-in for Talos in tests (Talos itself cannot be downloaded there). It does what Talos's metal platform does
# with talos.config= (talos.md §1.4, §2): checks the KSPP kernel args Talos enforces, waits for the network (DHCP),
# substitutes ${uuid} ${serial} ${mac} ${hostname} ${code} in the URL's query values, fetches it with Talos's
# retry schedule (0, 1, 3, 7, 15 ... s; any status but 200 is retried; 204 or an empty body is an error), gunzips a
# gzip body, and reports. Console markers start with "fake-talos:". Optional args: fake-talos.report=URL (POST a
# JSON summary there), fake-talos.timeout=SECONDS (give up; default 120), fake-talos.kspp=0 (skip the KSPP check),
# fake-talos.after=poweroff|wait|reboot, fake-talos.fail=install (once the config is fetched, fail the install the
# way Talos does: "[talos] task install (1/1): failed to run installer: ..." in its kernel log, sent as JSON lines
# to talos.logging.kernel=tcp://HOST:PORT/ with busybox nc; marker "fake-talos: install failed ... reported ...").
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
umask 022

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /tmp /run

# Talos images use console=tty0 (no serial console from 1.8): mirror the markers to the serial port whenever
# /dev/console is not it, so a test reading the serial log still sees them. The port is ttyS0 on a PC and ttyAMA0
# (PL011) on arm64, where the ttyS* nodes exist without hardware behind them and stty on them fails.
MIRROR=
for _tty in ttyS0 ttyAMA0; do
  [ -c /dev/$_tty ] || continue
  grep -q "^$_tty .*(.*C" /proc/consoles 2>/dev/null && break
  if stty -F /dev/$_tty 115200 2>/dev/null; then MIRROR=/dev/$_tty; break; fi
done
say() {
  echo "fake-talos: $*"
  [ -n "$MIRROR" ] && echo "fake-talos: $*" > "$MIRROR" 2>/dev/null
  return 0
}

CONFIG= REPORT= TIMEOUT=120 KSPP=1 AFTER=poweroff PLATFORM= SLAB= PTI= LOGK= FAIL=
set -f
for arg in $(cat /proc/cmdline); do
  case $arg in
    talos.config=*) CONFIG=${arg#*=} ;;
    talos.platform=*) PLATFORM=${arg#*=} ;;
    talos.logging.kernel=*) LOGK=${arg#*=} ;;
    slab_nomerge) SLAB=1 ;;
    pti=on) PTI=1 ;;
    fake-talos.report=*) REPORT=${arg#*=} ;;
    fake-talos.timeout=*) TIMEOUT=${arg#*=} ;;
    fake-talos.kspp=*) KSPP=${arg#*=} ;;
    fake-talos.after=*) AFTER=${arg#*=} ;;
    fake-talos.fail=*) FAIL=${arg#*=} ;;
  esac
done
set +f
echo 4 > /proc/sys/kernel/printk

say "start kernel=$(uname -r) platform=${PLATFORM:-none}"

finish() {
  case $AFTER in
    wait) say "waiting"; while :; do sleep 3600; done ;;
    reboot) say "rebooting"; sync; reboot -f ;;
    *) say "powering off"; sync; poweroff -f ;;
  esac
  while :; do sleep 3600; done
}

js() {
  printf '%s' "$1" | awk '
    BEGIN { for (i = 1; i < 32; i++) ctl[sprintf("%c", i)] = sprintf("\\u%04x", i)
            ctl["\t"] = "\\t"; ctl["\r"] = "\\r"; ctl["\b"] = "\\b"; ctl["\f"] = "\\f"; printf "\"" }
    { if (NR > 1) printf "\\n"; s = $0; n = length(s); o = ""
      for (i = 1; i <= n; i++) { c = substr(s, i, 1)
        if (c == "\\") o = o "\\\\"; else if (c == "\"") o = o "\\\""; else if (c in ctl) o = o ctl[c]; else o = o c }
      printf "%s", o }
    END { printf "\"" }'
}

STATUS= REASON= URL= HTTP= BYTES=0 SHA= COMPLETE=false ATTEMPTS=0 GZIP=false
report() {
  [ -n "$REPORT" ] || return 0
  {
    printf '{"status":"%s","reason":%s,"url":%s,"httpStatus":%s,"attempts":%s,"bytes":%s,"sha256":%s,"gzip":%s,"complete":%s' \
      "$STATUS" "$(js "$REASON")" "$(js "$URL")" "${HTTP:-null}" "$ATTEMPTS" "$BYTES" "$(js "$SHA")" "$GZIP" "$COMPLETE"
    printf ',"uuid":%s,"serial":%s,"mac":%s,"hostname":%s,"configBase64":"' "$(js "$UUID")" "$(js "$SERIAL")" "$(js "$MAC")" "$(js "$HOSTNAME")"
    [ -s /tmp/config ] && base64 -w 0 /tmp/config
    printf '"}\n'
  } > /tmp/report.json
  n=0
  while [ $n -lt 5 ]; do
    n=$((n + 1))
    if timeout 20 wget -q -O /dev/null --header "Content-Type: application/json" --post-file /tmp/report.json "$REPORT" 2>/tmp/report.err; then
      say "report sent"
      return 0
    fi
    sleep $n
  done
  say "report failed $(tail -n 1 /tmp/report.err)"
}

fail() {
  STATUS=failed REASON=$1
  say "config failed $1"
  report
  finish
}

if [ "$KSPP" != 0 ]; then
  # Talos refuses to boot without these (pkg/kernel/kspp: "KSPP kernel parameter %s is required").
  [ -n "$SLAB" ] || fail "KSPP kernel parameter slab_nomerge is required"
  [ -n "$PTI" ] || fail "KSPP kernel parameter pti=on is required"
fi
case $CONFIG in
  '') fail "no talos.config= on the kernel command line (Talos would enter maintenance mode)" ;;
  none) fail "talos.config=none (Talos would enter maintenance mode)" ;;
  metal-iso) fail "talos.config=metal-iso is not imitated" ;;
esac

. /etc/rackboot/modules.sh
load_modules

nics() {
  for d in /sys/class/net/*; do
    [ -e "$d/device" ] && echo "${d##*/}"
  done
}
for i in $(nics); do ip link set dev "$i" up 2>/dev/null; done

# Talos's ${mac}: the first physical link by name, whatever its state.
first=$(nics | head -n 1)
MAC=$(cat "/sys/class/net/$first/address" 2>/dev/null)
UUID=$(cat /sys/class/dmi/id/product_uuid 2>/dev/null)
SERIAL=$(sed -e 's/[[:space:]]*$//' /sys/class/dmi/id/product_serial 2>/dev/null)

# Network: DHCP on the first link with a carrier (Talos waits for an address before fetching).
t=0
up=
while [ $t -lt 20 ] && [ -z "$up" ]; do
  for i in $(nics); do
    [ "$(cat /sys/class/net/$i/carrier 2>/dev/null)" = 1 ] && up="$up $i"
  done
  [ -n "$up" ] || { sleep 0.5; t=$((t + 1)); }
done
lease=
# Booted over IPv6, as Talos: the kernel's SLAAC address (sh/ipv6.sh), before DHCPv4.
. /etc/rackboot/ipv6.sh
ipv6_url "$CONFIG" && lease=$(ipv6_lease 10 $up)
for i in $up; do
  [ -n "$lease" ] && break
  if udhcpc -i "$i" -f -q -n -t 8 -T 2 -s /etc/rackboot/udhcpc.script >/tmp/udhcpc.log 2>&1; then
    lease=$(cat /run/dhcp-lease)
    break
  fi
done
[ -n "$lease" ] || fail "no DHCP lease (links with carrier:${up:- none})"
say "network up $lease"
HOSTNAME=$(echo "$lease" | sed -n 's/.*hostname=\([^ ]*\).*/\1/p')
# No DHCP hostname: Talos makes one up (talos-xxx-yyy); this stand-in derives it from the MAC.
[ -n "$HOSTNAME" ] || HOSTNAME="talos-$(echo "$MAC" | tr -d ':' | cut -c7-9)-$(echo "$MAC" | tr -d ':' | cut -c10-12)"

URL=$(echo "$CONFIG" | awk -v uuid="$UUID" -v serial="$SERIAL" -v mac="$MAC" -v hostname="$HOSTNAME" -v code= -f /etc/fake-talos/url.awk)
for v in $(echo "$URL" | sed -n 's/^missing //p'); do
  say "variable \${$v} has no value: sent as the literal placeholder (Talos waits 90 s first)"
done
URL=$(echo "$URL" | head -n 1)
say "config url $URL"

start=$(date +%s)
c=0
while :; do
  ATTEMPTS=$((ATTEMPTS + 1))
  rm -f /tmp/config /tmp/wget.err
  timeout 30 wget -S -O /tmp/config "$URL" 2>/tmp/wget.err
  rc=$?
  HTTP=$(grep -o 'HTTP/[0-9.]* [0-9][0-9][0-9]' /tmp/wget.err | tail -n 1 | sed 's/.* //')
  if [ "$HTTP" = 200 ] && [ $rc = 0 ]; then
    break
  fi
  if [ "$HTTP" = 204 ]; then
    rm -f /tmp/config
    fail "empty config (HTTP 204): Talos treats it as an error"
  fi
  err=$(grep -v '^ ' /tmp/wget.err | tail -n 1 | sed 's/^wget: //')
  c=$((c + 1))
  wait_s=$(( ((1 << c) - 1) / 2 ))
  now=$(date +%s)
  if [ $((now - start + wait_s)) -ge "$TIMEOUT" ]; then
    fail "gave up after $ATTEMPTS attempts (last: ${HTTP:+HTTP $HTTP }${err:-no answer})"
  fi
  say "config retry attempt=$ATTEMPTS status=${HTTP:-none} in=${wait_s}s ${err}"
  sleep "$wait_s"
done

BYTES=$(wc -c < /tmp/config)
SHA=$(sha256sum /tmp/config | cut -d ' ' -f 1)
[ "$BYTES" -gt 0 ] || fail "empty config (HTTP 200 with no body): Talos treats it as an error"
say "config fetched $BYTES bytes sha256=$SHA"
if [ "$(head -c 2 /tmp/config | od -An -tx1 | tr -d ' \n')" = 1f8b ]; then
  GZIP=true
  gunzip -c /tmp/config > /tmp/config.yaml 2>/dev/null || fail "gzip body does not decompress"
else
  cp /tmp/config /tmp/config.yaml
fi
# Complete = has the v1alpha1 document (a "version: v1alpha1" document without kind:); else Talos applies it and
# goes on to maintenance mode.
if grep -q '^version:[[:space:]]*v1alpha1' /tmp/config.yaml && grep -q '^machine:' /tmp/config.yaml; then
  COMPLETE=true
  say "config complete (v1alpha1 document present)"
else
  say "config incomplete (no v1alpha1 document): maintenance mode"
fi
STATUS=fetched
report

# Talos's kernel log as it streams it (kmsg_log.go, sender_jsonlines.go): one JSON object per line over TCP.
KSEQ=0
kline() { # kline PRIORITY TALOS-LEVEL MESSAGE
  KSEQ=$((KSEQ + 1))
  printf '{"clock":%s,"facility":"daemon","msg":%s,"priority":"%s","seq":%s,"talos-level":"%s","talos-time":"%s"}\n' \
    "$(awk '{ printf "%.0f", $1 * 1000000 }' /proc/uptime)" "$(js "$3")" "$1" "$KSEQ" "$2" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >> /tmp/kmsg.jsonl
}
send_klog() {
  case $LOGK in
    tcp://*) ;;
    '') say "kernel log not sent: no talos.logging.kernel= on the command line"; return 1 ;;
    *) say "kernel log not sent: $LOGK is not imitated (tcp:// only)"; return 1 ;;
  esac
  hp=${LOGK#tcp://}
  hp=${hp%%/*}
  host=${hp%:*} port=${hp##*:}
  host=${host#[}
  host=${host%]}
  n=0
  while [ $n -lt 5 ]; do
    n=$((n + 1))
    # busybox nc half-closes at the end of its input and exits when the receiver closes too.
    if timeout 15 nc -w 5 "$host" "$port" < /tmp/kmsg.jsonl 2>/tmp/nc.err; then
      return 0
    fi
    sleep $n
  done
  say "kernel log not sent to $LOGK: $(tail -n 1 /tmp/nc.err)"
  return 1
}

case $FAIL in
  '') ;;
  install)
    # What the install sequence's task logs when the installer fails (v1alpha1_sequencer_tasks.go, Install).
    msg="[talos] task install (1/1): failed to run installer: disk /dev/vda is in use"
    kline info info "[talos] task install (1/1): starting"
    kline err error "$msg"
    if send_klog; then say "install failed ($msg) reported to $LOGK"; else say "install failed ($msg), not reported"; fi
    ;;
  *) say "fake-talos.fail=$FAIL is not imitated (install only)" ;;
esac
finish
