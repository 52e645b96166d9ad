// The Talos stand-in rewrites talos.config= URLs the way Talos does (talos.md §2.2): variables only in query
// values, case-insensitive, the legacy empty uuid=, keys sorted and values escaped as Go's url.Values.Encode,
// and the path re-escaped as Go's URL.String (a "${uuid}" in the path is not substituted).
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { test } from 'node:test'
import { talosUrlAwkPath } from '../../src/agent/index.js'
import { which } from '../support/netns.js'

const busybox = which('busybox')

interface Vars {
  uuid?: string
  serial?: string
  mac?: string
  hostname?: string
  code?: string
}

function rewrite(url: string, vars: Vars): { url: string; missing: string[] } {
  const args = ['awk']
  for (const k of ['uuid', 'serial', 'mac', 'hostname', 'code'] as const) args.push('-v', `${k}=${vars[k] ?? ''}`)
  args.push('-f', talosUrlAwkPath())
  const out = execFileSync(busybox!, args, { input: `${url}\n`, encoding: 'utf8' }).trim().split('\n')
  return { url: out[0] ?? '', missing: out.slice(1).map((l) => l.replace(/^missing /, '')).sort() }
}

const skip = busybox ? false : 'needs busybox'

test("Talos's own example (url_test.go): keys sorted, ':' escaped", { skip }, () => {
  assert.deepEqual(
    rewrite('https://example.com?uuid=${uuid}&mac=${mac}&hostname=${hostname}&code=${code}', {
      uuid: '0000-0000',
      mac: '12:34:56:78:90:ab',
      hostname: 'example-node',
      code: 'top-secret',
    }),
    { url: 'https://example.com?code=top-secret&hostname=example-node&mac=12%3A34%3A56%3A78%3A90%3Aab&uuid=0000-0000', missing: [] },
  )
})

test('variables are case-insensitive, only in query values, and the legacy empty uuid= is filled', { skip }, () => {
  const r = rewrite('http://198.18.0.1:8080/talos/${uuid}/config?t=tok&u=${UUID}&uuid=&s=${Serial}', { uuid: 'abc', serial: 'S 1' })
  assert.equal(r.url, 'http://198.18.0.1:8080/talos/$%7Buuid%7D/config?s=S+1&t=tok&u=abc&uuid=abc')
  assert.deepEqual(r.missing, [])
})

test('a variable without a value goes out as its literal placeholder and is reported', { skip }, () => {
  const r = rewrite('http://h/c?s=${serial}&c=x${code}y', { uuid: 'u' })
  assert.equal(r.url, 'http://h/c?c=x%24%7Bcode%7Dy&s=%24%7Bserial%7D')
  assert.deepEqual(r.missing, ['code', 'serial'])
})

test('query values are decoded then re-encoded; repeated keys keep their order', { skip }, () => {
  assert.equal(rewrite('http://h/p?b=2&a=x%2Fy&a=1+2&a=%7e', {}).url, 'http://h/p?a=x%2Fy&a=1+2&a=~&b=2')
  assert.equal(rewrite('http://h/plain/path', {}).url, 'http://h/plain/path')
  assert.equal(rewrite('http://h/p?x=1#frag', {}).url, 'http://h/p?x=1')
})
