import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import {
  DEFAULT_KUBERNETES_VERSIONS,
  VANILLA_SCHEMATIC,
  createConfigLinter,
  decodePem,
  defaultInstallerImage,
  generateConfig,
  generateSecretsBundle,
  parseConfigDocuments,
  type ConfigDocument,
  type GenerateConfigOptions,
  type SecretsBundle,
} from '../../src/talos/index.js'
import { isRackbootError } from '../../src/errors.js'

let secrets: SecretsBundle
before(async () => {
  secrets = await generateSecretsBundle({ talosVersion: 'v1.13.9', rsaBits: 2048 })
})

const linter = createConfigLinter()
const SCHEMA_VERSIONS = ['v1.12.11', 'v1.13.9', 'v1.14.0-rc.1'] as const
const ROLES = ['controlplane', 'worker'] as const

function gen(talosVersion: string, role: 'controlplane' | 'worker', extra: Partial<GenerateConfigOptions> = {}): ConfigDocument[] {
  return generateConfig({ secrets, clusterName: 'lab', endpoint: 'https://198.18.0.5:6443', talosVersion, role, ...extra }).documents
}

const kinds = (docs: ConfigDocument[]): string[] => docs.map((d) => (d.kind as string | undefined) ?? 'v1alpha1')
const main = (docs: ConfigDocument[]): Record<string, any> => docs[0] as Record<string, any>
const find = (docs: ConfigDocument[], kind: string, name?: string): Record<string, any> =>
  docs.find((d) => d.kind === kind && (name === undefined || d.name === name)) as Record<string, any>

for (const version of SCHEMA_VERSIONS) {
  for (const role of ROLES) {
    test(`generated ${role} config for ${version} lints clean against the ${version} schema`, () => {
      const rendered = generateConfig({ secrets, clusterName: 'lab', endpoint: 'https://198.18.0.5:6443', talosVersion: version, role })
      // The YAML is the documents, written as one valid multi-document stream.
      assert.deepEqual(parseConfigDocuments(rendered.yaml), rendered.documents)
      const result = linter.lint(rendered.yaml, { talosVersion: version })
      assert.equal(result.schemaVersion, version)
      assert.deepEqual(result.errors, [])
      assert.equal(result.ok, true)
      // The only allowance a fresh config needs is talosctl's own `persist: true`.
      assert.deepEqual(result.warnings.map((w) => w.path), ['/persist'])
    })
    test(`${role} config for ${version} with every option still lints clean`, () => {
      const docs = gen(version, role, {
        hostname: 'node-01',
        kubeSpan: true,
        additionalSans: ['api.lab.example'],
        registryMirrors: { 'docker.io': ['https://198.18.0.9:5000'], 'ghcr.io': ['https://198.18.0.9:5001'] },
        sysctls: { 'net.core.somaxconn': '65535' },
        installExtraKernelArgs: ['console=ttyS0'],
        allowSchedulingOnControlPlanes: true,
        localApiServerPort: 7443,
        customCniUrl: 'https://198.18.0.9/cni.yaml',
        dnsDomain: 'lab.local',
        discovery: false,
        schematic: 'a'.repeat(64),
      })
      const result = linter.lint(docs, { talosVersion: version })
      assert.deepEqual(result.errors, [])
    })
  }
}

test('1.12 layout: legacy v1alpha1 document, empty machine.network, HostnameConfig', () => {
  const cp = gen('v1.12.11', 'controlplane')
  assert.deepEqual(kinds(cp), ['v1alpha1', 'HostnameConfig'])
  const m = main(cp)
  assert.deepEqual(Object.keys(m), ['version', 'debug', 'persist', 'machine', 'cluster'])
  assert.deepEqual(m.machine.network, {})
  assert.deepEqual(m.machine.install, { disk: '/dev/sda', image: 'ghcr.io/siderolabs/installer:v1.12.11', wipe: false, grubUseUKICmdline: true })
  assert.deepEqual(m.machine.features, { diskQuotaSupport: true, kubePrism: { enabled: true, port: 7445 }, hostDNS: { enabled: true, forwardKubeDNSToHost: true } })
  assert.equal(m.machine.kubelet.image, `ghcr.io/siderolabs/kubelet:v${DEFAULT_KUBERNETES_VERSIONS['1.12']}`)
  assert.deepEqual(cp[1], { apiVersion: 'v1alpha1', kind: 'HostnameConfig', auto: 'stable' })
  // From contract 1.12 the API server SANs no longer include the endpoint host.
  assert.equal(m.cluster.apiServer.certSANs, undefined)
})

test('1.13 layout: no machine.network; KubeSpan as its own document', () => {
  const w = gen('v1.13.9', 'worker', { kubeSpan: true })
  assert.deepEqual(kinds(w), ['v1alpha1', 'HostnameConfig', 'KubeSpanConfig'])
  assert.equal(main(w).machine.network, undefined)
  assert.deepEqual(find(w, 'KubeSpanConfig'), { apiVersion: 'v1alpha1', kind: 'KubeSpanConfig', enabled: true })
  const w12 = gen('v1.12.11', 'worker', { kubeSpan: true })
  assert.deepEqual(main(w12).machine.network, { kubespan: { enabled: true } })
})

test('1.14 layout: multi-document Kubernetes config, raw PEM, unattended install', () => {
  const cp = gen('v1.14.0-rc.1', 'controlplane')
  assert.deepEqual(kinds(cp), [
    'v1alpha1', 'DiscoveryServiceConfig', 'DiscoveryIdentityConfig', 'UnattendedInstallConfig', 'ResolverConfig', 'VolumeConfig',
    'FilesystemTrimConfig', 'SecurityProfileConfig', 'HostnameConfig', 'KubeClusterConfig', 'KubeNodeConfig', 'KubeletConfig',
    'KubeNetworkConfig', 'KubeAPIServerCAConfig', 'KubePrismConfig', 'KubeAggregatorCAConfig', 'KubeAdmissionControlConfig',
    'KubeAuditPolicyConfig', 'KubeAuthenticationConfig', 'KubeAuthorizerConfig', 'KubeAuthorizerConfig', 'KubeEtcdEncryptionConfig',
    'KubeServiceAccountConfig', 'KubeAPIServerConfig', 'KubeControllerManagerConfig', 'KubeSchedulerConfig', 'KubeProxyConfig',
    'KubeFlannelCNIConfig', 'KubeCoreDNSConfig',
  ])
  const m = main(cp)
  assert.deepEqual(Object.keys(m.machine), ['type', 'token', 'ca', 'certSANs', 'features'])
  assert.deepEqual(Object.keys(m.cluster), ['token', 'etcd'])
  assert.deepEqual(find(cp, 'UnattendedInstallConfig'), {
    apiVersion: 'v1alpha1',
    kind: 'UnattendedInstallConfig',
    installer: { image: `factory.talos.dev/metal-installer/${VANILLA_SCHEMATIC}:v1.14.0-rc.1` },
    provisioning: { diskSelector: { match: 'disk.dev_path == "/dev/sda"' }, wipe: false },
  })
  const ca = find(cp, 'KubeAPIServerCAConfig')
  assert.equal(ca.issuingCA.cert, decodePem(secrets.certs.k8s.crt))
  assert.match(ca.issuingCA.key, /^-----BEGIN EC PRIVATE KEY-----\n/)
  assert.match(find(cp, 'KubeServiceAccountConfig').issuer.privateKey, /^-----BEGIN RSA PRIVATE KEY-----\n/)
  assert.equal(find(cp, 'KubeServiceAccountConfig').issuer.issuerURL, 'https://198.18.0.5:6443')
  assert.deepEqual(find(cp, 'DiscoveryIdentityConfig'), { apiVersion: 'v1alpha1', kind: 'DiscoveryIdentityConfig', clusterID: secrets.cluster.id, clusterSecret: secrets.cluster.secret })
  assert.deepEqual(find(cp, 'KubeEtcdEncryptionConfig').config.resources[0].providers, [{ secretbox: { keys: [{ name: 'key2', secret: secrets.secrets.secretboxencryptionsecret }] } }])
  assert.deepEqual(find(cp, 'KubeNodeConfig').taints, { 'node-role.kubernetes.io/control-plane': 'NoSchedule' })

  const w = gen('v1.14.0-rc.1', 'worker', { installDisk: null })
  assert.ok(!kinds(w).includes('UnattendedInstallConfig'))
  assert.ok(!kinds(w).includes('KubeServiceAccountConfig'))
  assert.deepEqual(find(w, 'KubeAPIServerCAConfig').acceptedCAs, [decodePem(secrets.certs.k8s.crt)])
  assert.deepEqual(find(w, 'KubeNodeConfig'), { apiVersion: 'v1alpha1', kind: 'KubeNodeConfig', nodeIP: {} })
})

test('secrets go where Talos puts them; workers get no CA keys', () => {
  for (const version of ['v1.12.11', 'v1.13.9']) {
    const cp = main(gen(version, 'controlplane'))
    assert.deepEqual(cp.machine.ca, secrets.certs.os)
    assert.equal(cp.machine.token, secrets.trustdinfo.token)
    assert.equal(cp.cluster.id, secrets.cluster.id)
    assert.equal(cp.cluster.token, secrets.secrets.bootstraptoken)
    assert.equal(cp.cluster.secretboxEncryptionSecret, secrets.secrets.secretboxencryptionsecret)
    assert.deepEqual(cp.cluster.ca, secrets.certs.k8s)
    assert.deepEqual(cp.cluster.aggregatorCA, secrets.certs.k8saggregator)
    assert.deepEqual(cp.cluster.serviceAccount, secrets.certs.k8sserviceaccount)
    assert.deepEqual(cp.cluster.etcd.ca, secrets.certs.etcd)
    assert.deepEqual(cp.machine.nodeLabels, { 'node.kubernetes.io/exclude-from-external-load-balancers': '' })

    const w = main(gen(version, 'worker'))
    assert.deepEqual(w.machine.ca, { crt: secrets.certs.os.crt, key: '' })
    assert.deepEqual(w.cluster.ca, { crt: secrets.certs.k8s.crt, key: '' })
    for (const key of ['aggregatorCA', 'serviceAccount', 'etcd', 'secretboxEncryptionSecret', 'apiServer']) assert.equal(w.cluster[key], undefined, key)
    assert.equal(w.cluster.clusterName, 'lab')
    assert.equal(w.machine.nodeLabels, undefined)
  }
  const w14 = gen('v1.14.0-rc.1', 'worker')
  assert.deepEqual(main(w14).machine.ca, { crt: secrets.certs.os.crt, key: '' })
  assert.deepEqual(main(w14).cluster, { token: secrets.secrets.bootstraptoken })
  assert.ok(!JSON.stringify(w14).includes('PRIVATE KEY'))
})

test('options: hostname, mirrors, SANs, IPv6 endpoint, discovery, images', () => {
  const w13 = gen('v1.13.9', 'worker', { hostname: 'node-01', registryMirrors: { 'ghcr.io': ['https://198.18.0.9'], 'docker.io': ['https://198.18.0.9'] } })
  assert.deepEqual(find(w13, 'HostnameConfig'), { apiVersion: 'v1alpha1', kind: 'HostnameConfig', hostname: 'node-01', auto: 'off' })
  assert.deepEqual(w13.filter((d) => d.kind === 'RegistryMirrorConfig').map((d) => d.name), ['docker.io', 'ghcr.io'])
  const cp11 = main(gen('v1.11.6', 'controlplane', { hostname: 'node-01', additionalSans: ['api.lab'], registryMirrors: { 'ghcr.io': ['https://198.18.0.9'] } }))
  assert.equal(cp11.machine.network.hostname, 'node-01')
  assert.deepEqual(cp11.machine.registries, { mirrors: { 'ghcr.io': { endpoints: ['https://198.18.0.9'] } } })
  assert.deepEqual(cp11.cluster.apiServer.certSANs, ['198.18.0.5', 'api.lab'])
  assert.equal(cp11.cluster.apiServer.disablePodSecurityPolicy, true)
  assert.equal(cp11.machine.features.rbac, true)
  const cp13 = main(gen('v1.13.9', 'controlplane', { additionalSans: ['api.lab'] }))
  assert.deepEqual(cp13.cluster.apiServer.certSANs, ['api.lab'])
  assert.deepEqual(cp13.machine.certSANs, ['api.lab'])

  const v6 = main(gen('v1.13.9', 'worker', { endpoint: 'https://[fd00::5]:6443' }))
  assert.deepEqual(v6.cluster.network.podSubnets, ['fc00:db8:10::/56'])
  assert.deepEqual(v6.cluster.network.serviceSubnets, ['fc00:db8:20::/112'])
  assert.deepEqual(main(gen('v1.13.9', 'worker', { discovery: false })).cluster.discovery.enabled, false)
  assert.ok(!kinds(gen('v1.14.0-rc.1', 'worker', { discovery: false })).includes('DiscoveryServiceConfig'))

  assert.equal(defaultInstallerImage('v1.13.9'), 'ghcr.io/siderolabs/installer:v1.13.9')
  assert.equal(defaultInstallerImage('v1.13.9', 'abc'), 'factory.talos.dev/metal-installer/abc:v1.13.9')
  assert.equal(defaultInstallerImage('v1.9.5', 'abc'), 'factory.talos.dev/installer/abc:v1.9.5')
  assert.equal(defaultInstallerImage('v1.14.1'), `factory.talos.dev/metal-installer/${VANILLA_SCHEMATIC}:v1.14.1`)
  const noInstall = main(gen('v1.13.9', 'worker', { installDisk: null, installImage: null, kubernetesVersion: 'v1.33.1' }))
  assert.deepEqual(noInstall.machine.install, { wipe: false, grubUseUKICmdline: true })
  assert.equal(noInstall.machine.kubelet.image, 'ghcr.io/siderolabs/kubelet:v1.33.1')
})

test('generation refuses what talosctl refuses', () => {
  const bad: Array<Partial<GenerateConfigOptions>> = [
    { talosVersion: 'v1.9.5' },
    { endpoint: 'http://198.18.0.5:6443' },
    { endpoint: '198.18.0.5:6443' },
    { clusterName: '' },
    { role: 'init' as 'worker' },
  ]
  for (const o of bad) {
    assert.throws(
      () => generateConfig({ secrets, clusterName: 'lab', endpoint: 'https://198.18.0.5:6443', talosVersion: 'v1.13.9', role: 'worker', ...o }),
      (e: unknown) => isRackbootError(e, 'RB_ERR_VALIDATION'),
      JSON.stringify(o),
    )
  }
})
