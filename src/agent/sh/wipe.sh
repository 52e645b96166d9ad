# Sourced by /init when rackboot.wipe=1 (a released machine going back to the pool): a quick wipe of every disk,
# enough that the next installer finds no old partition table, filesystem, RAID, LVM or ZFS label: discard the
# whole device where it supports it, zero the first and last MiB of every partition, then the first and last
# 16 MiB of the disk (GPT keeps a backup table in its last sectors, md/ZFS keep labels near the end). Not a
# secure erase: data between those regions stays on disks that cannot discard.
# Sets WIPED and WIPE_FAILED (space-separated disk names).
WIPED=
WIPE_FAILED=

# zero_range DEVICE OFFSET_BYTES LENGTH_BYTES
zero_range() {
  [ "$3" -gt 0 ] || return 0
  dd if=/dev/zero of="$1" bs=1M count="$3" seek="$2" iflag=count_bytes oflag=seek_bytes conv=notrunc,fsync status=none
}

# zero_ends DEVICE OFFSET_BYTES SIZE_BYTES EDGE_BYTES: the first and last EDGE bytes of a region (all of a small one).
zero_ends() {
  if [ "$3" -le $(($4 * 2)) ]; then
    zero_range "$1" "$2" "$3"
  else
    zero_range "$1" "$2" "$4" && zero_range "$1" $(($2 + $3 - $4)) "$4"
  fi
}

wipe_disk() {
  local name dev sectors part pstart psize
  name=$1
  dev=/dev/$name
  [ -b "$dev" ] || return 1
  [ "$(cat /sys/block/$name/ro 2>/dev/null)" = 0 ] || return 1
  sectors=$(cat /sys/block/$name/size)
  for part in /sys/block/$name/$name*; do
    [ -f "$part/start" ] || continue
    pstart=$(cat "$part/start")
    psize=$(cat "$part/size")
    zero_ends "$dev" $((pstart * 512)) $((psize * 512)) 1048576 || return 1
  done
  blkdiscard "$dev" 2>/dev/null
  zero_ends "$dev" 0 $((sectors * 512)) 16777216 || return 1
  blockdev --rereadpt "$dev" 2>/dev/null
  return 0
}

wipe_disks() {
  local d n
  for d in /sys/block/*; do
    n=${d##*/}
    case $n in
      loop*|ram*|zram*|sr*|fd*|dm-*|md*|nbd*|nvme*c*n*) continue ;;
    esac
    if wipe_disk "$n"; then
      WIPED="$WIPED $n"
      say "wiped $n"
    else
      WIPE_FAILED="$WIPE_FAILED $n"
      say "wipe failed $n"
    fi
  done
  sync
}
