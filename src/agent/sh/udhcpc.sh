#!/bin/sh
# udhcpc event script: applies the lease (address, default route, DNS) and records it for /init.
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface" 2>/dev/null
    ip link set dev "$interface" up
    ;;
  bound|renew)
    ip -4 addr flush dev "$interface" 2>/dev/null
    ip addr add "$ip/${mask:-24}" ${broadcast:+broadcast "$broadcast"} dev "$interface"
    ip link set dev "$interface" up
    for r in $router; do
      ip route replace default via "$r" dev "$interface"
      break
    done
    : > /etc/resolv.conf
    [ -n "$domain" ] && echo "search $domain" >> /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    echo "iface=$interface address=$ip/${mask:-24} router=${router%% *} server=${serverid:-} hostname=${hostname:-}" > /run/dhcp-lease
    ;;
esac
exit 0
