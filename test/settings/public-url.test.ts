// The URL machines are told before any HTTP request: a host they can reach, IPv6 literals bracketed.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { loadSettings } from '../../src/settings/index.js'
import { publicBaseUrl } from '../../src/settings/public-url.js'

const url = (...set: string[]) => publicBaseUrl(loadSettings({ overrides: set, env: {} }))

test('publicBaseUrl: publicUrl, else the DHCP server address, else the listen address, else loopback', () => {
  assert.equal(url('http.publicUrl=http://192.0.2.5:8080/'), 'http://192.0.2.5:8080')
  assert.equal(url('dhcp.serverAddress=192.0.2.7', 'http.port=8081'), 'http://192.0.2.7:8081')
  assert.equal(url('http.listen=192.0.2.9'), 'http://192.0.2.9:8080')
  assert.equal(url('http.listen=0.0.0.0'), 'http://127.0.0.1:8080')
  assert.equal(url('http.listen="::"'), 'http://127.0.0.1:8080')
  assert.equal(url('http.listen="2001:db8::5"'), 'http://[2001:db8::5]:8080')
})
