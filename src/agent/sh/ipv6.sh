# Sourced by the agent's and the Talos stand-in's /init. An image booted over IPv6 (its URL names an IPv6 literal)
# waits for the kernel to form a global address from the router advertisements (SLAAC: neither image has a DHCPv6
# client, and Talos has none early in boot either) instead of asking DHCPv4 first: an IPv6-only segment has no DHCPv4
# server, and udhcpc would spend 16 s finding that out.

# ipv6_url URL: true when URL's host is an IPv6 literal (http://[...]).
ipv6_url() {
  case "$1" in http://\[*) return 0 ;; esac
  return 1
}

# ipv6_lease SECONDS LINK...: prints "ipv6 iface=<link> address=<addr/len>" for the first link with a global IPv6
# address within SECONDS, else nothing.
ipv6_lease() {
  _limit=$(($1 * 2))
  shift
  _t=0
  while [ $_t -lt $_limit ]; do
    for _i in "$@"; do
      _a=$(ip -6 addr show dev "$_i" scope global 2>/dev/null | sed -n 's/.*inet6 \([0-9a-f:]*\/[0-9]*\).*/\1/p' | head -n 1)
      if [ -n "$_a" ]; then
        echo "ipv6 iface=$_i address=$_a"
        return 0
      fi
    done
    sleep 0.5
    _t=$((_t + 1))
  done
  return 1
}
