import { test } from 'node:test'
import assert from 'node:assert/strict'
import YAML from 'yaml'
import {
  applyJsonPatch,
  applyPatches,
  loadPatch,
  parseConfigDocuments,
  parsePointer,
  stringifyConfigDocuments,
  JSON6902_MULTIDOC_MESSAGE,
  type ConfigDocument,
} from '../../src/talos/index.js'
import { isRackbootError } from '../../src/errors.js'

const docs = (text: string): ConfigDocument[] => parseConfigDocuments(text)
const patch = (base: string, ...patches: string[]): ConfigDocument[] => applyPatches(base, patches)

function isValidation(pattern?: RegExp) {
  return (e: unknown): boolean => isRackbootError(e, 'RB_ERR_VALIDATION') && (!pattern || pattern.test((e as Error).message))
}

// --- Examples from Talos's patching documentation (v1.10 and v1.13 "Configuration Patches") ---

test('docs: $patch: delete on a field of a named document', () => {
  const out = patch(
    'apiVersion: v1alpha1\nkind: LinkConfig\nname: enp0s3\nmtu: 9000\nup: true\n',
    'apiVersion: v1alpha1\nkind: LinkConfig\nname: enp0s3\nmtu:\n  $patch: delete\n',
  )
  assert.deepEqual(out, docs('apiVersion: v1alpha1\nkind: LinkConfig\nname: enp0s3\nup: true\n'))
})

test('docs: $patch: delete removes whole documents, never v1alpha1; a delete for an absent document is skipped', () => {
  const base = `version: v1alpha1
machine: {type: worker}
---
apiVersion: v1alpha1
kind: SideroLinkConfig
apiUrl: https://198.18.0.1/?jointoken=x
---
apiVersion: v1alpha1
kind: ExtensionServiceConfig
name: foo
environment: [FOO=BAR]
---
apiVersion: v1alpha1
kind: ExtensionServiceConfig
name: bar
environment: [BAR=BAZ]
`
  const out = patch(base, `apiVersion: v1alpha1
kind: SideroLinkConfig
$patch: delete
---
apiVersion: v1alpha1
kind: ExtensionServiceConfig
name: foo
$patch: delete
---
apiVersion: v1alpha1
kind: EventSinkConfig
$patch: delete
`)
  assert.deepEqual(out.map((d) => d.kind ?? 'v1alpha1'), ['v1alpha1', 'ExtensionServiceConfig'])
  assert.equal(out[1]!.name, 'bar')
  assert.throws(() => patch(base, 'version: v1alpha1\n$patch: delete\n'), isValidation(/apiVersion/))
})

test('docs: delete an interface by its key, merge another, keep the rest', () => {
  const base = 'machine:\n  network:\n    interfaces:\n      - interface: eth0\n        addresses: [10.0.0.2/24]\n    hostname: worker1\n'
  const out = patch(base, 'machine:\n  network:\n    interfaces:\n    - interface: eth0\n      $patch: delete\n    hostname: worker1\n')
  // The emptied list is left out, as Talos's encoder (omitempty) leaves it out.
  assert.deepEqual(out, docs('machine:\n  network:\n    hostname: worker1\n'))
})

const MACHINE_NETWORK_BASE = `machine:
  network:
    interfaces:
      - interface: eth0
        dhcp: false
        addresses:
          - 192.168.10.3/24
`
const MACHINE_NETWORK_EXPECTED = docs(`machine:
  network:
    interfaces:
      - interface: eth0
        dhcp: false
        addresses:
          - 192.168.10.3/24
        vip:
          ip: 192.168.10.50
      - interface: eth1
        dhcp: true
`)

test('docs: machine network, strategic merge (interfaces merged by name)', () => {
  const out = patch(MACHINE_NETWORK_BASE, `machine:
  network:
    interfaces:
      - interface: eth0
        vip:
          ip: 192.168.10.50
      - interface: eth1
        dhcp: true
`)
  assert.deepEqual(out, MACHINE_NETWORK_EXPECTED)
})

test('docs: machine network, JSON patch gives the same result', () => {
  const out = patch(MACHINE_NETWORK_BASE, `- op: add
  path: /machine/network/interfaces/0/vip
  value:
    ip: 192.168.10.50
- op: add
  path: /machine/network/interfaces/-
  value:
    interface: eth1
    dhcp: true
`)
  assert.deepEqual(out, MACHINE_NETWORK_EXPECTED)
})

const CLUSTER_NETWORK_BASE = `cluster:
  network:
    dnsDomain: cluster.local
    podSubnets:
      - 10.244.0.0/16
    serviceSubnets:
      - 10.96.0.0/12
`
const CLUSTER_NETWORK_EXPECTED = docs(`cluster:
  network:
    dnsDomain: cluster.local
    podSubnets:
      - 192.168.0.0/16
    serviceSubnets:
      - 192.0.0.0/12
    cni:
      name: none
`)

test('docs: cluster network, pod/service subnets are replaced, not appended', () => {
  const out = patch(CLUSTER_NETWORK_BASE, `cluster:
  network:
    podSubnets:
      - 192.168.0.0/16
    serviceSubnets:
      - 192.0.0.0/12
    cni:
      name: none
`)
  assert.deepEqual(out, CLUSTER_NETWORK_EXPECTED)
})

test('docs: cluster network, JSON patch in JSON syntax', () => {
  const out = patch(
    CLUSTER_NETWORK_BASE,
    '[{"op":"replace","path":"/cluster/network/podSubnets","value":["192.168.0.0/16"]},' +
      '{"op":"replace","path":"/cluster/network/serviceSubnets","value":["192.0.0.0/12"]},' +
      '{"op":"add","path":"/cluster/network/cni","value":{"name":"none"}}]',
  )
  assert.deepEqual(out, CLUSTER_NETWORK_EXPECTED)
})

test('docs: kubelet nodeIP into an empty kubelet section', () => {
  const expected = docs('machine:\n  kubelet:\n    nodeIP:\n      validSubnets:\n        - 192.168.10.0/24\n')
  assert.deepEqual(patch('machine:\n  kubelet: {}\n', 'machine:\n  kubelet:\n    nodeIP:\n      validSubnets:\n        - 192.168.10.0/24\n'), expected)
  assert.deepEqual(
    patch('machine:\n  kubelet: {}\n', '- op: add\n  path: /machine/kubelet/nodeIP\n  value:\n    validSubnets:\n      - 192.168.10.0/24\n'),
    expected,
  )
})

const ADMISSION_BASE = `cluster:
  apiServer:
    admissionControl:
      - name: PodSecurity
        configuration:
          apiVersion: pod-security.admission.config.k8s.io/v1alpha1
          defaults:
            audit: restricted
            enforce: baseline
          exemptions:
            namespaces:
              - kube-system
            runtimeClasses: []
            usernames: []
          kind: PodSecurityConfiguration
`

test('docs: admission control plugins merge by name; lists inside them append', () => {
  const expected = docs(ADMISSION_BASE.replace('              - kube-system\n', '              - kube-system\n              - rook-ceph\n'))
  const smp = patch(ADMISSION_BASE, `cluster:
  apiServer:
    admissionControl:
      - name: PodSecurity
        configuration:
          exemptions:
            namespaces:
              - rook-ceph
`)
  assert.deepEqual(smp, expected)
  const json = patch(ADMISSION_BASE, '- op: add\n  path: /cluster/apiServer/admissionControl/0/configuration/exemptions/namespaces/-\n  value: rook-ceph\n')
  assert.deepEqual(json, expected)
})

test('docs: multi-document patch appends documents the config lacks', () => {
  const out = patch(
    'apiVersion: v1alpha1\nkind: LinkConfig\nname: eth0\nup: true\n',
    'apiVersion: v1alpha1\nkind: DHCPv4Config\nname: eth1\n---\napiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: 192.168.10.50\nlink: eth0\n',
  )
  assert.deepEqual(out.map((d) => `${String(d.kind)}/${String(d.name)}`), ['LinkConfig/eth0', 'DHCPv4Config/eth1', 'Layer2VIPConfig/192.168.10.50'])
  assert.equal(out[2]!.link, 'eth0')
})

test('docs: HostnameConfig patch overrides auto with a fixed hostname', () => {
  const out = patch(
    'version: v1alpha1\nmachine: {type: worker}\n---\napiVersion: v1alpha1\nkind: HostnameConfig\nauto: stable\n',
    'apiVersion: v1alpha1\nkind: HostnameConfig\nhostname: worker-33\nauto: off\n',
  )
  assert.deepEqual(out[1], { apiVersion: 'v1alpha1', kind: 'HostnameConfig', auto: 'off', hostname: 'worker-33' })
})

// --- Talos's merge rules beyond the docs (merge.go, custom mergers, delete.go) ---

test('multi-document deletes: list items by their first key, map keys, and merges after deletes', () => {
  const base = `version: v1alpha1
machine:
  network:
    hostname: hostname1
    interfaces:
      - interface: eth0
        dhcp: true
      - interface: eth1
        addresses: [10.3.5.4/32]
---
apiVersion: v1alpha1
kind: ExtensionServiceConfig
name: foo
configFiles:
  - content: hello
    mountPath: /etc/foo
environment: [FOO=BAR]
`
  const out = patch(base, `apiVersion: v1alpha1
kind: ExtensionServiceConfig
name: foo
configFiles:
  - content: hello
    $patch: delete
  - content: hello2
    mountPath: /etc/foo2
---
version: v1alpha1
machine:
  network:
    hostname:
      $patch: delete
    interfaces:
      - interface: eth0
        $patch: delete
      - interface: eth1
        addresses: [10.3.5.5/32]
      - interface: eth0
        dummy: true
`)
  assert.deepEqual((out[0]!.machine as any).network, {
    interfaces: [
      { interface: 'eth1', addresses: ['10.3.5.4/32', '10.3.5.5/32'] },
      { interface: 'eth0', dummy: true },
    ],
  })
  assert.deepEqual(out[1]!.configFiles, [{ content: 'hello2', mountPath: '/etc/foo2' }])
  assert.deepEqual(out[1]!.environment, ['FOO=BAR'])
})

test('deleting what is not there fails like Talos ("lookup failed")', () => {
  assert.throws(
    () => patch('version: v1alpha1\nmachine: {}\n', 'machine:\n  network:\n    hostname:\n      $patch: delete\n'),
    isValidation(/path 'machine\.network\.hostname' in document '\/v1alpha1': lookup failed/),
  )
  assert.throws(
    () => patch('machine:\n  network:\n    interfaces: [{interface: eth0}]\n', 'machine:\n  network:\n    interfaces:\n      - interface: eth9\n        $patch: delete\n'),
    isValidation(/lookup failed/),
  )
  assert.throws(
    () => patch('machine:\n  network:\n    interfaces: [{interface: eth0, vlans: [{vlanId: 1}]}]\n', 'machine:\n  network:\n    interfaces:\n      - interface: eth0\n        vlans:\n          $patch: delete\n'),
    isValidation(/cannot delete an inner key/),
  )
})

test('zero values do not override; booleans always do; null changes nothing', () => {
  const out = patch(
    'machine:\n  install: {disk: /dev/sda, wipe: true}\n  network: {mtu: 1500}\n',
    'machine:\n  install: {disk: "", wipe: false, image: null}\n  network: {mtu: 0}\n',
  )
  assert.deepEqual(out[0]!.machine, { install: { disk: '/dev/sda', wipe: false }, network: { mtu: 1500 } })
})

test('lists append unless Talos replaces them; empty patch lists change nothing', () => {
  const out = patch(
    'machine:\n  certSANs: [a]\ncluster:\n  apiServer:\n    certSANs: [x]\n    auditPolicy: {kind: Policy, rules: [{level: Metadata}]}\n',
    'machine:\n  certSANs: [b]\ncluster:\n  apiServer:\n    certSANs: []\n    auditPolicy: {apiVersion: audit.k8s.io/v1, rules: [{level: None}]}\n',
  )
  assert.deepEqual((out[0]!.machine as any).certSANs, ['a', 'b'])
  assert.deepEqual((out[0]!.cluster as any).apiServer.certSANs, ['x'])
  assert.deepEqual((out[0]!.cluster as any).apiServer.auditPolicy, { apiVersion: 'audit.k8s.io/v1', rules: [{ level: 'None' }] })
  const kube = patch(
    'apiVersion: v1alpha1\nkind: KubeNetworkConfig\npodSubnets: [10.244.0.0/16]\nserviceSubnets: [10.96.0.0/12]\n',
    'apiVersion: v1alpha1\nkind: KubeNetworkConfig\npodSubnets: [10.42.0.0/16]\n',
  )
  assert.deepEqual(kube[0]!.podSubnets, ['10.42.0.0/16'])
  assert.deepEqual(kube[0]!.serviceSubnets, ['10.96.0.0/12'])
})

test('extraArgs are replaced key by key', () => {
  const out = patch(
    'cluster:\n  apiServer:\n    extraArgs: {feature-gates: A=true, v: "2"}\n---\napiVersion: v1alpha1\nkind: KubeletConfig\nextraArgs: {node-labels: [a, b]}\n',
    'cluster:\n  apiServer:\n    extraArgs: {feature-gates: B=true}\n---\napiVersion: v1alpha1\nkind: KubeletConfig\nextraArgs: {node-labels: [c]}\n',
  )
  assert.deepEqual((out[0]!.cluster as any).apiServer.extraArgs, { 'feature-gates': 'B=true', v: '2' })
  assert.deepEqual(out[1]!.extraArgs, { 'node-labels': ['c'] })
})

test('vlans merge by vlanId; device selectors match when equal, never when they set physical', () => {
  const base = `machine:
  network:
    interfaces:
      - interface: bond0
        vlans: [{vlanId: 100, mtu: 1500}, {vlanId: 200}]
      - deviceSelector: {hardwareAddr: "aa:bb:*"}
        dhcp: true
      - deviceSelector: {physical: true}
        mtu: 9000
`
  const out = patch(base, `machine:
  network:
    interfaces:
      - interface: bond0
        vlans: [{vlanId: 100, mtu: 9000}, {vlanId: 300}]
      - deviceSelector: {hardwareAddr: "aa:bb:*"}
        dhcp: false
      - deviceSelector: {physical: true}
        mtu: 1400
`)
  const ifaces = (out[0]!.machine as any).network.interfaces
  assert.deepEqual(ifaces[0].vlans, [{ vlanId: 100, mtu: 9000 }, { vlanId: 200 }, { vlanId: 300 }])
  assert.equal(ifaces[1].dhcp, false)
  // Go compares *bool by pointer: the `physical` selector is appended, not merged.
  assert.equal(ifaces.length, 4)
  assert.equal(ifaces[3].mtu, 1400)
})

test('config files merge by mountPath; image verification rules are replaced by pattern', () => {
  const out = patch(
    'apiVersion: v1alpha1\nkind: ExtensionServiceConfig\nname: foo\nconfigFiles: [{content: a, mountPath: /etc/a}]\n---\napiVersion: v1alpha1\nkind: ImageVerificationConfig\nrules: [{imagePattern: "ghcr.io/*", keyless: {issuer: x}}]\n',
    'apiVersion: v1alpha1\nkind: ExtensionServiceConfig\nname: foo\nconfigFiles: [{content: b, mountPath: /etc/a}, {content: c, mountPath: /etc/c}]\n---\napiVersion: v1alpha1\nkind: ImageVerificationConfig\nrules: [{imagePattern: "ghcr.io/*", skip: true}]\n',
  )
  assert.deepEqual(out[0]!.configFiles, [{ content: 'b', mountPath: '/etc/a' }, { content: 'c', mountPath: '/etc/c' }])
  assert.deepEqual(out[1]!.rules, [{ imagePattern: 'ghcr.io/*', skip: true }])
})

test('one patch may touch a document several times: steps apply in order (delete, then add, then set)', () => {
  const base = 'apiVersion: v1alpha1\nkind: RegistryMirrorConfig\nname: registry.k8s.io\nendpoints:\n  - url: http://198.18.0.1:5001\n'
  const out = patch(base, `apiVersion: v1alpha1
kind: RegistryMirrorConfig
name: registry.k8s.io
endpoints:
  $patch: delete
---
apiVersion: v1alpha1
kind: RegistryMirrorConfig
name: registry.k8s.io
endpoints:
  - url: http://198.18.0.251:50001
---
apiVersion: v1alpha1
kind: RegistryMirrorConfig
name: registry.k8s.io
skipFallback: true
`)
  assert.deepEqual(out, docs('apiVersion: v1alpha1\nkind: RegistryMirrorConfig\nname: registry.k8s.io\nendpoints:\n  - url: http://198.18.0.251:50001\nskipFallback: true\n'))
  // A later document may delete what an earlier one added.
  const later = patch('machine:\n  certSANs: [a]\n', 'machine:\n  nodeLabels: {x: "1", y: "2"}\n---\nmachine:\n  nodeLabels:\n    x:\n      $patch: delete\n')
  assert.deepEqual((later[0]!.machine as any).nodeLabels, { y: '2' })
})

test('a delete that empties a mapping or list removes it, as omitempty does', () => {
  const out = patch(
    'machine:\n  nodeLabels: {a: ""}\ncluster:\n  apiServer:\n    admissionControl: [{name: PodSecurity}]\n    image: x\n',
    'machine:\n  nodeLabels:\n    a:\n      $patch: delete\ncluster:\n  apiServer:\n    admissionControl:\n      - name: PodSecurity\n        $patch: delete\n',
  )
  assert.deepEqual(out, docs('machine: {}\ncluster:\n  apiServer:\n    image: x\n'))
})

test('YAML output round-trips awkward strings (leading spaces, blank lines, quotes, markers)', () => {
  // A fixed pseudo-random sequence, so a failure is reproducible.
  let seed = 42
  const rand = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n)
  const alphabet = [' ', ' ', 'a', '\n', '\n', '\t', '#', ':', '-', '"', "'", '|', '>', '\r', '\\', 'é', '0', '*', '&', '!', '%', '@', '{', '[', ',', '?']
  for (let i = 0; i < 3000; i++) {
    let s = ''
    for (let j = rand(12); j > 0; j--) s += alphabet[rand(alphabet.length)]
    const doc = { k: { nested: [s, { v: s }] }, [s || 'x']: s }
    const text = stringifyConfigDocuments([doc])
    assert.deepEqual(parseConfigDocuments(text), [doc], JSON.stringify(s))
  }
})

test('a patch document without a match for the v1alpha1 document adds it with its version', () => {
  const out = patch('apiVersion: v1alpha1\nkind: HostnameConfig\nauto: stable\n', 'machine:\n  type: worker\n')
  assert.deepEqual(out[1], { version: 'v1alpha1', machine: { type: 'worker' } })
})

test('bad patches are rejected with precise errors', () => {
  const base = 'machine:\n  certSANs: [a]\n'
  assert.throws(() => patch(base, 'machine:\n  certSANs: {a: 1}\n'), isValidation(/v1alpha1 machine\.certSANs: cannot merge a mapping into a list/))
  assert.throws(() => patch(base, 'foo: bar\n'), isValidation(/neither the v1alpha1 document/))
  assert.throws(() => patch(base, 'kind: HostnameConfig\n'), isValidation(/missing apiVersion/))
  assert.throws(() => patch(base, 'machine: [\n'), isValidation(/invalid YAML/))
  assert.throws(() => patch(base, '- op: frobnicate\n  path: /x\n'), isValidation(/'op' must be one of/))
  assert.throws(() => patch(base, '- op: add\n  path: x\n  value: 1\n'), isValidation(/must start with/))
  assert.throws(() => patch(base, 'just a string'), isValidation(/neither a config document nor a JSON patch/))
})

test('a JSON patch against a multi-document config is refused with Talos\'s message', () => {
  const base = 'version: v1alpha1\nmachine: {type: worker}\n---\napiVersion: v1alpha1\nkind: HostnameConfig\nauto: stable\n'
  assert.throws(
    () => patch(base, '- op: replace\n  path: /machine/type\n  value: controlplane\n'),
    (e: unknown) => isRackbootError(e, 'RB_ERR_VALIDATION') && (e as Error).message.includes(JSON6902_MULTIDOC_MESSAGE) && /2 documents/.test((e as Error).message),
  )
  // The same edit as a strategic merge patch works.
  assert.equal((patch(base, 'machine:\n  type: controlplane\n')[0]!.machine as any).type, 'controlplane')
})

test('RFC 6902 operations, pointers and failures', () => {
  const doc = { a: { 'b/c': 1, 'd~e': [1, 2, 3] }, f: 'x' }
  assert.deepEqual(parsePointer('/a/b~1c'), ['a', 'b/c'])
  assert.deepEqual(parsePointer('/a/d~0e/1'), ['a', 'd~e', '1'])
  const out = applyJsonPatch(doc, [
    { op: 'test', path: '/a/d~0e/1', value: 2 },
    { op: 'replace', path: '/a/b~1c', value: 5 },
    { op: 'add', path: '/a/d~0e/0', value: 0 },
    { op: 'remove', path: '/a/d~0e/3' },
    { op: 'copy', from: '/f', path: '/g' },
    { op: 'move', from: '/a/d~0e', path: '/h' },
    { op: 'add', path: '/h/-', value: 9 },
  ])
  assert.deepEqual(out, { a: { 'b/c': 5 }, f: 'x', g: 'x', h: [0, 1, 2, 9] })
  assert.deepEqual(doc.a['d~e'], [1, 2, 3], 'input is not mutated')
  const fails: Array<[unknown[], RegExp]> = [
    [[{ op: 'test', path: '/f', value: 'y' }], /operation 0 \(test \/f\): test failed/],
    [[{ op: 'add', path: '/f', value: 1 }, { op: 'remove', path: '/nope' }], /operation 1 \(remove \/nope\): path does not exist/],
    [[{ op: 'replace', path: '/zzz', value: 1 }], /path does not exist/],
    [[{ op: 'add', path: '/a/d~0e/9', value: 1 }], /out of range/],
    [[{ op: 'add', path: '/x/y', value: 1 }], /path does not exist at 'x'/],
    [[{ op: 'move', from: '/a', path: '/a/b' }], /into itself/],
  ]
  for (const [ops, re] of fails) {
    assert.throws(() => applyPatches([doc], [ops]), isValidation(re), JSON.stringify(ops))
  }
})

test('patch detection: text, objects and lists', () => {
  assert.equal(loadPatch('[{"op":"add","path":"/a","value":1}]').type, 'json6902')
  assert.equal(loadPatch('- op: remove\n  path: /a\n').type, 'json6902')
  assert.equal(loadPatch([{ op: 'remove', path: '/a' }]).type, 'json6902')
  assert.equal(loadPatch({ machine: { type: 'worker' } }).type, 'strategic')
  const multi = loadPatch('machine: {}\n---\napiVersion: v1alpha1\nkind: HostnameConfig\n$patch: delete\n')
  assert.equal(multi.type, 'strategic')
  assert.deepEqual(multi.type === 'strategic' && multi.steps.map((st) => Object.keys(st)[0]), ['merge', 'delete'])
  // Patches are applied in order, each on the result of the one before.
  const out = applyPatches('machine:\n  type: worker\n', [{ machine: { certSANs: ['a'] } }, [{ op: 'add', path: '/machine/certSANs/-', value: 'b' }], 'machine:\n  certSANs: [c]\n'])
  assert.deepEqual((out[0]!.machine as any).certSANs, ['a', 'b', 'c'])
})

test('patched output is valid multi-document YAML that reads back the same', () => {
  const out = patch(
    'version: v1alpha1\nmachine:\n  type: worker\n  nodeLabels: {"a/b": ""}\n---\napiVersion: v1alpha1\nkind: HostnameConfig\nauto: stable\n',
    'machine:\n  sysctls: {"net.core.somaxconn": "65535", x: "0755"}\n---\napiVersion: v1alpha1\nkind: TrustedRootsConfig\nname: ca\ncertificates: |\n  -----BEGIN CERTIFICATE-----\n  MIIB\n  -----END CERTIFICATE-----\n',
  )
  const text = stringifyConfigDocuments(out)
  assert.deepEqual(parseConfigDocuments(text), out)
  assert.equal(YAML.parseAllDocuments(text).length, 3)
  assert.match(text, /x: "0755"/)
  assert.match(text, /certificates: \|/)
})
