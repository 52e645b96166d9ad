# Sourced by /init: loads the drivers for the devices present. Every device's modalias is matched against the
# aliases of the modules in the image: most aliases are a literal prefix (a hash lookup), the rest are regexes
# made from modinfo's globs at build time, indexed by their literal start so each is tried only on devices that
# can match. The matches and their dependencies are loaded in
# modules.dep order (dependencies first). Repeats while new modules bring new devices: virtio_pci creates the
# virtio devices that virtio_net and virtio_blk drive. One awk per pass and one insmod per module: process
# starts are what costs time under TCG.
# Tables: /etc/rackboot/modules.{dep,alias.exact,alias,always}. MODULES_ALL=1 loads every module instead.
# MODULES_SYSFS, MODULES_ETC and MODULES_TMP move /sys, /etc/rackboot and /tmp (for tests).
MODDIR=/lib/modules/$(uname -r)
MSYS=${MODULES_SYSFS:-/sys}
METC=${MODULES_ETC:-/etc/rackboot}
MTMP=${MODULES_TMP:-/tmp}
MODULES_TRIED=" "
MODULES_LOADED=0

# Prints "name path" for each module to load now, in load order.
modules_to_load() {
  cat "$MSYS"/bus/*/devices/*/modalias 2>/dev/null | sort -u > "$MTMP/modaliases"
  awk -v tried="$MODULES_TRIED" -v all="${MODULES_ALL:-0}" '
    function need(m,    ds, k, c) {
      if (m in needed || !(m in path)) return
      needed[m] = 1
      c = split(deps[m], ds, ",")
      for (k = 1; k <= c; k++) if (ds[k] != "-") need(ds[k])
    }
    FILENAME == ARGV[1] {
      for (k = 1; k <= 14 && k <= length($0); k++) { p = substr($0, 1, k); idx[p] = idx[p] "\n" $0 }
      devall = devall "\n" $0
      dev[$0] = 1
      next
    }
    FILENAME == ARGV[2] { path[$1] = $2; deps[$1] = $3; order[++n] = $1; next }
    FILENAME == ARGV[3] { want[$1] = 1; next }
    FILENAME == ARGV[4] {
      L = length($1)
      if (!(L in lens)) { lens[L] = 1; for (d in dev) at[substr(d, 1, L)] = 1 }
      if ($1 in at) want[$2] = 1
      next
    }
    {
      if (NF == 3) { list = idx[$1]; re = $2; name = $3 } else { list = devall; re = $1; name = $2 }
      if (list == "" || name in want) next
      c = split(substr(list, 2), devs, "\n")
      for (i = 1; i <= c; i++) if (devs[i] ~ re) { want[name] = 1; break }
    }
    END {
      c = split(tried, t, " ")
      for (i = 1; i <= c; i++) done[t[i]] = 1
      for (i = 1; i <= n; i++) if (all == 1 || order[i] in want) need(order[i])
      for (i = 1; i <= n; i++) if ((order[i] in needed) && !(order[i] in done)) print order[i], path[order[i]]
    }' "$MTMP/modaliases" "$METC/modules.dep" "$METC/modules.always" "$METC/modules.alias.exact" "$METC/modules.alias"
}

load_modules() {
  local pass name path list
  pass=0
  while [ $pass -lt 6 ]; do
    pass=$((pass + 1))
    list=$(modules_to_load)
    [ -n "$list" ] || break
    while read -r name path; do
      MODULES_TRIED="$MODULES_TRIED$name "
      insmod "$MODDIR/$path" 2>/dev/null && MODULES_LOADED=$((MODULES_LOADED + 1))
    done <<EOF_LIST
$list
EOF_LIST
  done
  return 0
}
