// The IPv6 step both boot images share (src/agent/sh/ipv6.sh), run by busybox sh with a stand-in `ip`: an image
// booted over IPv6 takes the kernel's SLAAC address instead of waiting 16 s for a DHCPv4 server that is not there.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { ipv6Script } from '../../src/agent/scripts.js'
import { which } from '../support/netns.js'

const busybox = which('busybox')

test('ipv6.sh: an IPv6 URL waits for a global address on any of the links; with none, nothing after the wait', { skip: busybox ? false : 'needs busybox (apt-get install busybox-static)' }, (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rb-ipv6sh-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  // `ip -6 addr show dev X scope global`: eth1 has a global address from the 3rd call on (SLAAC takes a moment).
  // A shell function: busybox sh would run its own `ip` applet before any `ip` on PATH.
  writeFileSync(join(dir, 'ip.sh'), `ip() {
  n=$(cat ${dir}/calls 2>/dev/null || echo 0); n=$((n + 1)); echo $n > ${dir}/calls
  [ "$5" = eth1 ] && [ $n -ge 3 ] && echo "    inet6 2001:db8:7::5054:ff:fe00:1/64 scope global dynamic mngtmpaddr"
  return 0
}
`)
  writeFileSync(join(dir, 'ipv6.sh'), ipv6Script())
  const sh = (body: string) => execFileSync(busybox!, ['sh', '-c', `. ${dir}/ip.sh; . ${dir}/ipv6.sh; ${body}`], { encoding: 'utf8' }).trim()
  assert.equal(sh('ipv6_url "http://[2001:db8:7::1]:8080/api/v1/agent/report" && echo yes || echo no'), 'yes')
  assert.equal(sh('ipv6_url "http://198.18.0.1:8080/api/v1/agent/report" && echo yes || echo no'), 'no')
  assert.equal(sh('ipv6_lease 5 eth0 eth1'), 'ipv6 iface=eth1 address=2001:db8:7::5054:ff:fe00:1/64')
  writeFileSync(join(dir, 'calls'), '0')
  const started = Date.now()
  assert.equal(sh('ipv6_lease 1 eth0 || echo none'), 'none', 'no global address: nothing, after the wait')
  assert.ok(Date.now() - started >= 900, 'it waited the time it was given')
})
