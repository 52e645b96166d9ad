#!/bin/sh
# rackboot discovery agent: hardware collector. Prints one JSON document (the agent report) on stdout.
# POSIX sh plus busybox-level tools (awk, sed, tr, dd, readlink). The sysfs and procfs roots can be moved with
# RACKBOOT_SYSFS / RACKBOOT_PROCFS so tests can run it against a fake tree; RACKBOOT_MACHINE is the machine id.
# After a wipe run (RACKBOOT_WIPE=1) the report lists RACKBOOT_WIPED ("wiped") and RACKBOOT_WIPE_FAILED
# ("wipeFailed", only when not empty), space-separated disk names.
SYS=${RACKBOOT_SYSFS:-/sys}
PROC=${RACKBOOT_PROCFS:-/proc}
AGENT_VERSION=1

# Shell built-ins only on the common paths (rd, js without special characters): under TCG every process start
# costs tens of milliseconds.

# First line of a file, surrounding whitespace trimmed; empty when missing or unreadable (sysfs read errors too).
rd() {
  _l=
  [ -r "$1" ] || return 0
  { IFS= read -r _l || [ -n "$_l" ]; } < "$1" 2>/dev/null || _l=
  _l=${_l#"${_l%%[![:space:]]*}"}
  _l=${_l%"${_l##*[![:space:]]}"}
  printf '%s' "$_l"
}

# The JSON string literal (quotes included) for $1: escapes quote, backslash and every control character.
js() {
  case $1 in
    *[\"\\]*|*[[:cntrl:]]*) ;;
    *) printf '"%s"' "$1"; return ;;
  esac
  printf '%s' "$1" | awk '
    BEGIN { for (i = 1; i < 32; i++) ctl[sprintf("%c", i)] = sprintf("\\u%04x", i)
            ctl["\t"] = "\\t"; ctl["\r"] = "\\r"; ctl["\b"] = "\\b"; ctl["\f"] = "\\f"; printf "\"" }
    { if (NR > 1) printf "\\n"; s = $0; n = length(s); o = ""
      for (i = 1; i <= n; i++) { c = substr(s, i, 1)
        if (c == "\\") o = o "\\\\"; else if (c == "\"") o = o "\\\""; else if (c in ctl) o = o ctl[c]; else o = o c }
      printf "%s", o }
    END { printf "\"" }'
}

# $1 when it is a non-negative decimal integer, else $2 (a JSON literal such as 0 or null).
num() {
  case $1 in
    ''|*[!0-9]*) printf '%s' "$2" ;;
    *) printf '%s' "$1" ;;
  esac
}

bool() {
  if [ "$1" = 1 ]; then printf true; else printf false; fi
}

# Printable ASCII only (binary sysfs attributes such as VPD pages; busybox tr has no working -c '[:print:]').
printable() {
  tr -d '\000-\037\177-\377' | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//'
}

dmi="$SYS/class/dmi/id"
smbios_json() {
  printf '{"uuid":%s,"serial":%s,"manufacturer":%s,"product":%s,"boardSerial":%s,"chassisSerial":%s}' \
    "$(js "$(rd "$dmi/product_uuid")")" "$(js "$(rd "$dmi/product_serial")")" "$(js "$(rd "$dmi/sys_vendor")")" \
    "$(js "$(rd "$dmi/product_name")")" "$(js "$(rd "$dmi/board_serial")")" "$(js "$(rd "$dmi/chassis_serial")")"
}

# sockets = distinct physical ids, cores = distinct (physical id, core id) pairs, threads = logical processors.
# arm64's cpuinfo has no model name, only "CPU implementer"/"CPU part" codes (arch/arm64/kernel/cpuinfo.c): the
# model is named from them ("ARM Neoverse-N1"), or given as the codes when not in this short table.
cpu_json() {
  _cpu=$(awk -F ':' '
    function v(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
    function armname(i, p,   n) {
      n["0x41"] = "ARM"; n["0x42"] = "Broadcom"; n["0x43"] = "Cavium"; n["0x46"] = "Fujitsu"; n["0x48"] = "HiSilicon"
      n["0x4e"] = "NVIDIA"; n["0x50"] = "APM"; n["0x51"] = "Qualcomm"; n["0x61"] = "Apple"; n["0xc0"] = "Ampere"
      c["0x41/0xd03"] = "Cortex-A53"; c["0x41/0xd07"] = "Cortex-A57"; c["0x41/0xd08"] = "Cortex-A72"; c["0x41/0xd0c"] = "Neoverse-N1"
      c["0x41/0xd40"] = "Neoverse-V1"; c["0x41/0xd49"] = "Neoverse-N2"; c["0x41/0xd4f"] = "Neoverse-V2"; c["0x43/0x0af"] = "ThunderX2"
      c["0x48/0xd01"] = "Kunpeng-920"; c["0xc0/0xac3"] = "AmpereOne"; c["0x51/0xc00"] = "Falkor"; c["0x46/0x001"] = "A64FX"
      if ((i "/" p) in c) return ((i in n) ? n[i] " " : "") c[i "/" p]
      return ((i in n) ? n[i] : "implementer " i) " part " p
    }
    /^processor[ \t]*:/ { threads++ }
    /^(model name|cpu model|Processor)[ \t]*:/ { if (model == "") model = v($2) }
    /^CPU implementer[ \t]*:/ { if (impl == "") impl = tolower(v($2)) }
    /^CPU part[ \t]*:/ { if (part == "") part = tolower(v($2)) }
    /^physical id[ \t]*:/ { phys = v($2); if (!(phys in socket)) { socket[phys] = 1; sockets++ } }
    /^core id[ \t]*:/ { k = phys "/" v($2); if (!(k in core)) { core[k] = 1; cores++ } }
    /^cpu cores[ \t]*:/ { percore = v($2) }
    END {
      if (model == "" && impl != "") model = armname(impl, part)
      if (threads == 0) threads = 1
      if (sockets == 0) sockets = 1
      if (cores == 0) cores = (percore > 0) ? percore * sockets : threads
      printf "%d\n%d\n%d\n%s\n", sockets, cores, threads, model
    }' "$PROC/cpuinfo" 2>/dev/null)
  { read -r _s; read -r _c; read -r _t; IFS= read -r _m; } <<CPU
$_cpu
CPU
  printf '{"model":%s,"sockets":%s,"cores":%s,"threads":%s}' "$(js "$_m")" "$(num "$_s" 1)" "$(num "$_c" 1)" "$(num "$_t" 1)"
}

memory_json() {
  _kb=$(awk '/^MemTotal:/ { print $2; exit }' "$PROC/meminfo" 2>/dev/null)
  case $_kb in ''|*[!0-9]*) _kb=0 ;; esac
  printf '{"totalBytes":%s}' "$((_kb * 1024))"
}

disk_serial() {
  _d=$SYS/block/$1
  for _f in "$_d/device/serial" "$_d/serial"; do
    _v=$(rd "$_f")
    [ -n "$_v" ] && { printf '%s' "$_v"; return; }
  done
  # SCSI/ATA: unit serial number VPD page (0x80), a 4-byte header and then the serial.
  if [ -r "$_d/device/vpd_pg80" ]; then
    dd if="$_d/device/vpd_pg80" bs=1 skip=4 2>/dev/null | printable
  fi
}

disk_wwn() {
  _d=$SYS/block/$1
  for _f in "$_d/wwid" "$_d/device/wwid"; do
    _v=$(rd "$_f")
    case $_v in
      naa.*|eui.*|wwn-*|0x*) printf '%s' "$_v"; return ;;
    esac
  done
}

disk_type() {
  case $1 in nvme*) printf nvme; return ;; esac
  _p=$(readlink -f "$SYS/block/$1/device" 2>/dev/null)
  _drv=$(readlink "$SYS/block/$1/device/driver" 2>/dev/null)
  case "$_p|${_drv##*/}" in
    */virtio[0-9]*|*virtio*|*/vbd-*|*/xen/*|*vmbus*) printf virtual; return ;;
  esac
  if [ "$2" = 1 ]; then printf hdd; else printf ssd; fi
}

disks_json() {
  printf '['
  _first=1
  for _dir in "$SYS"/block/*; do
    [ -e "$_dir" ] || continue
    _n=${_dir##*/}
    case $_n in
      loop*|ram*|zram*|sr*|fd*|dm-*|md*|nbd*) continue ;;
      nvme*c*n*) continue ;; # hidden per-path nodes of multipath NVMe
    esac
    _sectors=$(rd "$_dir/size")
    case $_sectors in ''|*[!0-9]*) _sectors=0 ;; esac
    _rot=$(rd "$_dir/queue/rotational")
    [ "$_rot" = 1 ] || _rot=0
    [ $_first = 1 ] || printf ','
    _first=0
    printf '{"name":%s,"model":%s,"serial":%s,"sizeBytes":%s,"rotational":%s,"type":"%s","wwn":%s}' \
      "$(js "$_n")" "$(js "$(rd "$_dir/device/model")")" "$(js "$(disk_serial "$_n")")" "$((_sectors * 512))" \
      "$(bool "$_rot")" "$(disk_type "$_n" "$_rot")" "$(js "$(disk_wwn "$_n")")"
  done
  printf ']'
}

nic_link() {
  _c=$(rd "$1/carrier")
  if [ "$_c" = 1 ]; then printf true; return; fi
  if [ -z "$_c" ] && [ "$(rd "$1/operstate")" = up ]; then printf true; return; fi
  printf false
}

nics_json() {
  printf '['
  _first=1
  for _dir in "$SYS"/class/net/*; do
    [ -e "$_dir" ] || continue
    _n=${_dir##*/}
    [ "$_n" = lo ] && continue
    # Only interfaces backed by a device: bridges, tunnels and other virtual links have none.
    [ -e "$_dir/device" ] || continue
    _drv=$(readlink "$_dir/device/driver" 2>/dev/null)
    _speed=$(rd "$_dir/speed")
    [ $_first = 1 ] || printf ','
    _first=0
    printf '{"name":%s,"mac":%s,"driver":%s,"link":%s' \
      "$(js "$_n")" "$(js "$(rd "$_dir/address")")" "$(js "${_drv##*/}")" "$(nic_link "$_dir")"
    # Speed only when the driver knows it (virtio and links without carrier report -1 or nothing).
    case $_speed in ''|*[!0-9]*|0) ;; *) printf ',"speedMbps":%s' "$_speed" ;; esac
    printf '}'
  done
  printf ']'
}

# The BMC's LAN address and MAC ("address mac"), when ipmitool and an IPMI device are present; empty otherwise.
bmc_lan() {
  command -v ipmitool >/dev/null 2>&1 || return 0
  ipmitool lan print 2>/dev/null | awk '
    function v(s) { sub(/^[^:]*:[ \t]*/, "", s); sub(/[ \t]+$/, "", s); return s }
    /^IP Address[ \t]*:/ { ip = v($0) }
    /^MAC Address[ \t]*:/ { mac = tolower(v($0)) }
    END { if (ip != "" && ip != "0.0.0.0") print ip, mac }'
}

_bmc=$(bmc_lan)
printf '{"agentVersion":"%s","machineId":%s,"smbios":%s,"cpu":%s,"memory":%s,"disks":%s,"nics":%s' \
  "$AGENT_VERSION" "$(js "${RACKBOOT_MACHINE:-}")" "$(smbios_json)" "$(cpu_json)" "$(memory_json)" "$(disks_json)" "$(nics_json)"
# JSON array of strings from a space-separated list.
str_array() {
  printf '['
  _first=1
  for _w in $1; do
    [ $_first = 1 ] || printf ','
    _first=0
    printf '%s' "$(js "$_w")"
  done
  printf ']'
}
if [ "${RACKBOOT_WIPE:-}" = 1 ]; then
  printf ',"wiped":%s' "$(str_array "${RACKBOOT_WIPED:-}")"
  [ -n "${RACKBOOT_WIPE_FAILED:-}" ] && printf ',"wipeFailed":%s' "$(str_array "$RACKBOOT_WIPE_FAILED")"
fi
if [ -n "$_bmc" ]; then
  printf ',"bmc":{"address":%s' "$(js "${_bmc%% *}")"
  case $_bmc in *" "?*) printf ',"mac":%s' "$(js "${_bmc#* }")" ;; esac
  printf '}'
fi
printf '}\n'
