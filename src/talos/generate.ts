import { isIPv6 } from 'node:net'
import { RackbootError } from '../errors.js'
import { createHash } from 'node:crypto'
import { cloneValue, deepFreeze, stringifyConfigDocuments, type ConfigDocument } from './documents.js'
import { entryBytes, Lru, type RenderedEntry } from './render-cache.js'
import { decodePem, isFrozenBundle, type SecretsBundle } from './secrets.js'
import { contractGreater, formatTalosVersion, minorKey, parseTalosVersion, versionAtLeast, type TalosVersion } from './version.js'

// The documents `talosctl gen config` of a given Talos version writes (pkg/machinery/config/generate: init.go,
// worker.go, network.go, registry.go, block.go, kubernetes.go at v1.12.11, v1.13.9 and v1.14.0-rc.1), for its
// version contract: the legacy v1alpha1 document up to 1.13, and from 1.14 the multi-document layout
// (Kube*Config, DiscoveryIdentityConfig, UnattendedInstallConfig, ...) with PEM as raw strings. Keys come in
// the order of Talos's Go structs so the output reads like talosctl's. Checked against Talos's stability
// fixtures (types/v1alpha1/testdata/stability) field for field.

export type MachineRole = 'controlplane' | 'worker'

export interface GenerateConfigOptions {
  secrets: SecretsBundle
  clusterName: string
  /** Kubernetes API endpoint, https://host:port (talosctl's <cluster endpoint>). */
  endpoint: string
  talosVersion: string | TalosVersion
  role: MachineRole
  /** Without a leading v; defaults to the Kubernetes version that Talos release ships with. */
  kubernetesVersion?: string
  /** talosctl's --install-disk (default /dev/sda); null leaves the install disk out. */
  installDisk?: string | null
  /** Installer image; defaults to talosctl's default for the version (or the factory image of `schematic`). null: none. */
  installImage?: string | null
  /** Image Factory schematic ID of the installer when installImage is not given. */
  schematic?: string
  /** A fixed hostname instead of Talos's stable generated one. */
  hostname?: string
  /** talosctl --additional-sans: API server and machine certificate SANs. */
  additionalSans?: readonly string[]
  /** talosctl --dns-domain (default cluster.local). */
  dnsDomain?: string
  /** talosctl --with-cluster-discovery (default true). */
  discovery?: boolean
  /** talosctl --with-kubespan; left out of the config when undefined. */
  kubeSpan?: boolean
  allowSchedulingOnControlPlanes?: boolean
  /** talosctl --registry-mirror host=url, grouped by host. */
  registryMirrors?: Readonly<Record<string, readonly string[]>>
  /** machine.install.extraKernelArgs (ignored from 1.14, which has no such field in UnattendedInstallConfig). */
  installExtraKernelArgs?: readonly string[]
  sysctls?: Readonly<Record<string, string>>
  /** Port the API server listens on locally (cluster.controlPlane.localAPIServerPort / KubeAPIServerConfig apiPort). */
  localApiServerPort?: number
  /** A custom CNI manifest URL instead of Flannel. */
  customCniUrl?: string
}

export interface RenderedConfig {
  documents: ConfigDocument[]
  yaml: string
}

/** Oldest Talos version whose `gen config` output this module reproduces. */
export const MIN_GENERATE_VERSION = { major: 1, minor: 10 } as const

/** The vanilla Image Factory schematic (no customizations). */
export const VANILLA_SCHEMATIC = '376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba'

/** constants.DefaultKubernetesVersion of the newest release of each Talos minor (snapshot of August 2026). */
export const DEFAULT_KUBERNETES_VERSIONS: Readonly<Record<string, string>> = {
  '1.10': '1.33.6',
  '1.11': '1.34.1',
  '1.12': '1.35.4',
  '1.13': '1.36.3',
  '1.14': '1.37.0-rc.0',
}

const IMAGES = {
  kubelet: 'ghcr.io/siderolabs/kubelet',
  apiServer: 'registry.k8s.io/kube-apiserver',
  controllerManager: 'registry.k8s.io/kube-controller-manager',
  scheduler: 'registry.k8s.io/kube-scheduler',
  proxy: 'registry.k8s.io/kube-proxy',
} as const

const LABEL_CONTROL_PLANE = 'node-role.kubernetes.io/control-plane'
const LABEL_EXCLUDE_LB = 'node.kubernetes.io/exclude-from-external-load-balancers'
const DISCOVERY_ENDPOINT = 'https://discovery.talos.dev/'
const KUBEPRISM_PORT = 7445

function invalid(message: string, details?: unknown): RackbootError {
  return new RackbootError('RB_ERR_VALIDATION', message, { details })
}

/** talosctl's default installer image for a version, or the factory image of a schematic. */
export function defaultInstallerImage(talosVersion: string | TalosVersion, schematic?: string): string {
  const v = parseTalosVersion(talosVersion)
  const tag = formatTalosVersion(v)
  // 1.14 stopped publishing ghcr.io/siderolabs/installer; the unified metal installer exists from 1.10.
  if (schematic || versionAtLeast(v, 1, 14)) {
    const id = schematic ?? VANILLA_SCHEMATIC
    return versionAtLeast(v, 1, 10) ? `factory.talos.dev/metal-installer/${id}:${tag}` : `factory.talos.dev/installer/${id}:${tag}`
  }
  return `ghcr.io/siderolabs/installer:${tag}`
}

/** validateClusterEndpoint: an https:// URL; the port defaults to 6443 as in fixControlPlaneEndpoint. */
function checkEndpoint(endpoint: string): URL {
  let url: URL
  try {
    url = new URL(endpoint)
  } catch (cause) {
    throw new RackbootError('RB_ERR_VALIDATION', `cluster endpoint is not a URL: '${endpoint}' (try https://${endpoint}:6443)`, { cause })
  }
  if (url.protocol !== 'https:') throw invalid(`cluster endpoint must use https://, got '${endpoint}'`)
  return url
}

function endpointHostname(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1')
}

/** PEM text of a bundle certificate/key (Talos's multi-document types carry raw PEM). */
const pem = decodePem

interface Context {
  o: GenerateConfigOptions
  v: TalosVersion
  cp: boolean
  k8s: string
  endpoint: string
  url: URL
  podNet: string
  serviceNet: string
  sans: string[]
  discovery: boolean
  installDisk: string | null
  installImage: string | null
}

// Contract gates (pkg/machinery/config/contract.go), named as in Talos.
const multidocNetwork = (v: TalosVersion): boolean => contractGreater(v, 1, 11)
const hideRbacAndKeyUsage = multidocNetwork
const populateSansFromEndpoint = (v: TalosVersion): boolean => !contractGreater(v, 1, 11)
const grubUseUkiCmdline = (v: TalosVersion): boolean => contractGreater(v, 1, 11)
const kubeSpanMultidoc = (v: TalosVersion): boolean => contractGreater(v, 1, 12)
const multidocKubernetes = (v: TalosVersion): boolean => contractGreater(v, 1, 13)

function apiServerSans(c: Context): string[] {
  const sans = populateSansFromEndpoint(c.v) ? [endpointHostname(c.url)] : []
  return [...sans, ...c.sans]
}

function admissionControl(): Record<string, unknown> {
  // Go writes map[string]any with sorted keys.
  return {
    name: 'PodSecurity',
    configuration: {
      apiVersion: 'pod-security.admission.config.k8s.io/v1alpha1',
      defaults: {
        audit: 'restricted',
        'audit-version': 'latest',
        enforce: 'baseline',
        'enforce-version': 'latest',
        warn: 'restricted',
        'warn-version': 'latest',
      },
      exemptions: { namespaces: ['kube-system'], runtimeClasses: [], usernames: [] },
      kind: 'PodSecurityConfiguration',
    },
  }
}

const AUDIT_POLICY = { apiVersion: 'audit.k8s.io/v1', kind: 'Policy', rules: [{ level: 'Metadata' }] }

function machineFeatures(c: Context): Record<string, unknown> {
  const features: Record<string, unknown> = {}
  if (!hideRbacAndKeyUsage(c.v)) features.rbac = true
  if (!multidocNetwork(c.v)) features.stableHostname = true
  if (!hideRbacAndKeyUsage(c.v)) features.apidCheckExtKeyUsage = true
  features.diskQuotaSupport = true
  if (!multidocKubernetes(c.v)) {
    features.kubePrism = { enabled: true, port: KUBEPRISM_PORT }
    features.hostDNS = { enabled: true, forwardKubeDNSToHost: true }
  }
  return features
}

function legacyMachine(c: Context): Record<string, unknown> {
  const { o } = c
  const m: Record<string, unknown> = {
    type: c.cp ? 'controlplane' : 'worker',
    token: o.secrets.trustdinfo.token,
    ca: c.cp ? { crt: o.secrets.certs.os.crt, key: o.secrets.certs.os.key } : { crt: o.secrets.certs.os.crt, key: '' },
    certSANs: [...c.sans],
    kubelet: {
      image: `${IMAGES.kubelet}:v${c.k8s}`,
      defaultRuntimeSeccompProfileEnabled: true,
      disableManifestsDirectory: true,
    },
  }
  const network: Record<string, unknown> = {}
  if (!multidocNetwork(c.v) && o.hostname) network.hostname = o.hostname
  if (o.kubeSpan !== undefined && !kubeSpanMultidoc(c.v)) network.kubespan = { enabled: o.kubeSpan }
  if (!kubeSpanMultidoc(c.v) || Object.keys(network).length > 0) m.network = network

  const install: Record<string, unknown> = {}
  if (c.installDisk) install.disk = c.installDisk
  if (o.installExtraKernelArgs?.length) install.extraKernelArgs = [...o.installExtraKernelArgs]
  if (c.installImage) install.image = c.installImage
  install.wipe = false
  if (grubUseUkiCmdline(c.v)) install.grubUseUKICmdline = true
  m.install = install

  if (o.sysctls && Object.keys(o.sysctls).length > 0) m.sysctls = { ...o.sysctls }
  if (!multidocNetwork(c.v) && o.registryMirrors && Object.keys(o.registryMirrors).length > 0) {
    m.registries = {
      mirrors: Object.fromEntries(Object.entries(o.registryMirrors).map(([host, eps]) => [host, { endpoints: [...eps] }])),
    }
  }
  m.features = machineFeatures(c)
  if (c.cp) m.nodeLabels = { [LABEL_EXCLUDE_LB]: '' }
  return m
}

function discoveryLegacy(c: Context): Record<string, unknown> {
  return { enabled: c.discovery, registries: { kubernetes: { disabled: true }, service: {} } }
}

function legacyCluster(c: Context): Record<string, unknown> {
  const { o } = c
  const s = o.secrets
  const network = {
    ...(o.customCniUrl ? { cni: { name: 'custom', urls: [o.customCniUrl] } } : {}),
    dnsDomain: o.dnsDomain ?? 'cluster.local',
    podSubnets: [c.podNet],
    serviceSubnets: [c.serviceNet],
  }
  if (!c.cp) {
    return {
      id: s.cluster.id,
      secret: s.cluster.secret,
      controlPlane: { endpoint: c.endpoint },
      clusterName: o.clusterName,
      network,
      token: s.secrets.bootstraptoken,
      ca: { crt: s.certs.k8s.crt, key: '' },
      discovery: discoveryLegacy(c),
    }
  }
  const apiServer: Record<string, unknown> = { image: `${IMAGES.apiServer}:v${c.k8s}` }
  const sans = apiServerSans(c)
  if (sans.length > 0) apiServer.certSANs = sans
  if (!hideRbacAndKeyUsage(c.v)) apiServer.disablePodSecurityPolicy = true
  apiServer.admissionControl = [admissionControl()]
  apiServer.auditPolicy = structuredClone(AUDIT_POLICY)
  const cluster: Record<string, unknown> = {
    id: s.cluster.id,
    secret: s.cluster.secret,
    controlPlane: o.localApiServerPort ? { endpoint: c.endpoint, localAPIServerPort: o.localApiServerPort } : { endpoint: c.endpoint },
    clusterName: o.clusterName,
    network,
    token: s.secrets.bootstraptoken,
  }
  if (s.secrets.secretboxencryptionsecret) cluster.secretboxEncryptionSecret = s.secrets.secretboxencryptionsecret
  else if (s.secrets.aescbcencryptionsecret) cluster.aescbcEncryptionSecret = s.secrets.aescbcencryptionsecret
  Object.assign(cluster, {
    ca: { crt: s.certs.k8s.crt, key: s.certs.k8s.key },
    aggregatorCA: { crt: s.certs.k8saggregator.crt, key: s.certs.k8saggregator.key },
    serviceAccount: { key: s.certs.k8sserviceaccount.key },
    apiServer,
    controllerManager: { image: `${IMAGES.controllerManager}:v${c.k8s}` },
    proxy: { image: `${IMAGES.proxy}:v${c.k8s}` },
    scheduler: { image: `${IMAGES.scheduler}:v${c.k8s}` },
    discovery: discoveryLegacy(c),
    etcd: { ca: { crt: s.certs.etcd.crt, key: s.certs.etcd.key } },
  })
  if (o.allowSchedulingOnControlPlanes) cluster.allowSchedulingOnControlPlanes = true
  return cluster
}

function v1alpha1Document(c: Context): ConfigDocument {
  const { o } = c
  const s = o.secrets
  const doc: ConfigDocument = { version: 'v1alpha1', debug: false, persist: true }
  if (!multidocKubernetes(c.v)) {
    doc.machine = legacyMachine(c)
    doc.cluster = legacyCluster(c)
    return doc
  }
  doc.machine = {
    type: c.cp ? 'controlplane' : 'worker',
    token: s.trustdinfo.token,
    ca: c.cp ? { crt: s.certs.os.crt, key: s.certs.os.key } : { crt: s.certs.os.crt, key: '' },
    certSANs: [...c.sans],
    features: machineFeatures(c),
  }
  doc.cluster = c.cp
    ? { token: s.secrets.bootstraptoken, etcd: { ca: { crt: s.certs.etcd.crt, key: s.certs.etcd.key } } }
    : { token: s.secrets.bootstraptoken }
  return doc
}

const typed = (kind: string, fields: Record<string, unknown> = {}): ConfigDocument => ({ apiVersion: 'v1alpha1', kind, ...fields })

function registryDocuments(c: Context): ConfigDocument[] {
  if (!multidocNetwork(c.v) || !c.o.registryMirrors) return []
  return Object.entries(c.o.registryMirrors)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([host, eps]) => typed('RegistryMirrorConfig', { name: host, endpoints: eps.map((url) => ({ url })) }))
}

function networkDocuments(c: Context): ConfigDocument[] {
  const docs: ConfigDocument[] = []
  if (multidocNetwork(c.v)) {
    docs.push(c.o.hostname ? typed('HostnameConfig', { hostname: c.o.hostname, auto: 'off' }) : typed('HostnameConfig', { auto: 'stable' }))
  }
  if (c.o.kubeSpan !== undefined && kubeSpanMultidoc(c.v)) docs.push(typed('KubeSpanConfig', { enabled: c.o.kubeSpan }))
  return docs
}

function kubernetesUniversalDocuments(c: Context): ConfigDocument[] {
  const s = c.o.secrets
  const node: Record<string, unknown> = { nodeIP: {} }
  if (c.cp) node.labels = { [LABEL_CONTROL_PLANE]: '', [LABEL_EXCLUDE_LB]: '' }
  if (c.cp && !c.o.allowSchedulingOnControlPlanes) node.taints = { [LABEL_CONTROL_PLANE]: 'NoSchedule' }
  return [
    typed('KubeClusterConfig', { clusterName: c.o.clusterName, endpoint: c.endpoint }),
    typed('KubeNodeConfig', node),
    typed('KubeletConfig', { image: `${IMAGES.kubelet}:v${c.k8s}`, config: {}, defaultRuntimeSeccompProfileEnabled: true }),
    typed('KubeNetworkConfig', { dnsDomain: c.o.dnsDomain ?? 'cluster.local', podSubnets: [c.podNet], serviceSubnets: [c.serviceNet] }),
    c.cp
      ? typed('KubeAPIServerCAConfig', { issuingCA: { cert: pem(s.certs.k8s.crt), key: pem(s.certs.k8s.key) } })
      : typed('KubeAPIServerCAConfig', { acceptedCAs: [pem(s.certs.k8s.crt)] }),
    typed('KubePrismConfig', { port: KUBEPRISM_PORT }),
  ]
}

function kubernetesControlPlaneDocuments(c: Context): ConfigDocument[] {
  const s = c.o.secrets
  // Same provider names and order as the pre-1.14 kube-apiserver template, so old secrets still decrypt.
  const providers: unknown[] = []
  if (s.secrets.secretboxencryptionsecret) providers.push({ secretbox: { keys: [{ name: 'key2', secret: s.secrets.secretboxencryptionsecret }] } })
  if (s.secrets.aescbcencryptionsecret) providers.push({ secretbox: { keys: [{ name: 'key1', secret: s.secrets.aescbcencryptionsecret }] } })
  const apiServer: Record<string, unknown> = { image: `${IMAGES.apiServer}:v${c.k8s}` }
  if (c.o.localApiServerPort) apiServer.apiPort = c.o.localApiServerPort
  const sans = apiServerSans(c)
  if (sans.length > 0) apiServer.certExtraSANs = sans
  return [
    typed('KubeAggregatorCAConfig', { issuingCA: { cert: pem(s.certs.k8saggregator.crt), key: pem(s.certs.k8saggregator.key) } }),
    typed('KubeAdmissionControlConfig', admissionControl()),
    typed('KubeAuditPolicyConfig', { configuration: structuredClone(AUDIT_POLICY) }),
    typed('KubeAuthenticationConfig', {
      configuration: {
        anonymous: { conditions: [{ path: '/livez' }, { path: '/readyz' }, { path: '/healthz' }], enabled: true },
        jwt: [],
      },
    }),
    typed('KubeAuthorizerConfig', { name: 'node', type: 'Node' }),
    typed('KubeAuthorizerConfig', { name: 'rbac', type: 'RBAC' }),
    typed('KubeEtcdEncryptionConfig', { config: { resources: [{ providers, resources: ['secrets'] }] } }),
    typed('KubeServiceAccountConfig', { issuer: { privateKey: pem(s.certs.k8sserviceaccount.key), issuerURL: c.endpoint } }),
    typed('KubeAPIServerConfig', apiServer),
    typed('KubeControllerManagerConfig', { image: `${IMAGES.controllerManager}:v${c.k8s}` }),
    typed('KubeSchedulerConfig', { image: `${IMAGES.scheduler}:v${c.k8s}`, config: {} }),
    typed('KubeProxyConfig', { image: `${IMAGES.proxy}:v${c.k8s}`, config: {} }),
    ...(c.o.customCniUrl ? [] : [typed('KubeFlannelCNIConfig', { backendType: 'vxlan', backendPort: 4789 })]),
    typed('KubeCoreDNSConfig', { enabled: true }),
    ...(c.o.customCniUrl ? [typed('KubeExternalManifestConfig', { name: 'custom-cni', url: c.o.customCniUrl })] : []),
  ]
}

function multidocDocuments(c: Context): ConfigDocument[] {
  const s = c.o.secrets
  const docs: ConfigDocument[] = []
  if (c.discovery) docs.push(typed('DiscoveryServiceConfig', { name: 'default', endpoint: DISCOVERY_ENDPOINT }))
  docs.push(typed('DiscoveryIdentityConfig', { clusterID: s.cluster.id, clusterSecret: s.cluster.secret }))
  // Generated only with an install disk: the disk selector comes from it.
  if (c.installDisk) {
    docs.push(typed('UnattendedInstallConfig', {
      installer: c.installImage ? { image: c.installImage } : {},
      provisioning: { diskSelector: { match: `disk.dev_path == ${JSON.stringify(c.installDisk)}` }, wipe: false },
    }))
  }
  docs.push(typed('ResolverConfig', { hostDNS: { enabled: true, forwardKubeDNSToHost: true } }))
  if (c.o.sysctls && Object.keys(c.o.sysctls).length > 0) docs.push(typed('SysctlConfig', { params: { ...c.o.sysctls } }))
  docs.push(typed('VolumeConfig', { name: 'EPHEMERAL', mount: { secure: true } }))
  docs.push(typed('FilesystemTrimConfig', { interval: '168h0m0s' }))
  docs.push(typed('SecurityProfileConfig', { workloadIsolation: true }))
  return docs
}

/**
 * The machine config `talosctl gen config <clusterName> <endpoint> --talos-version <v>` writes for `role`
 * (controlplane.yaml or worker.yaml), without the comments.
 */
export function generateConfig(options: GenerateConfigOptions): RenderedConfig {
  // A cluster's machines all fetch configs generated from the same options (lifecycle's baseConfigFor, per fetch):
  // generated once, then shared (frozen; each caller that reads `documents` gets a copy of its own).
  const key = generatedKey(options)
  let entry = generatedConfigs.get(key)
  if (!entry) {
    const fresh = generate(options)
    entry = { yaml: fresh.yaml, documents: deepFreeze(fresh.documents) }
    generatedConfigs.set(key, entry, entryBytes(entry.yaml))
  }
  const shared = entry
  let documents: ConfigDocument[] | undefined
  return {
    yaml: shared.yaml,
    get documents() {
      return (documents ??= shared.documents.map((d) => cloneValue(d)))
    },
  }
}

const generatedConfigs = new Lru<RenderedEntry>({ maxEntries: 64, maxBytes: 16 * 1024 * 1024 })

// The options as one hash. A bundle from parseSecretsBundle is frozen, the same object for every fetch of its
// cluster: the hash is remembered on it, by the JSON of the other options (a few hundred bytes), instead of
// serialising and hashing its keys and certificates on every fetch. The same options give the same key either way.
const keysByBundle = new WeakMap<object, Map<string, string>>()

function generatedKey(options: GenerateConfigOptions): string {
  const hashed = (): string => createHash('sha256').update(JSON.stringify(options)).digest('base64url')
  if (!isFrozenBundle(options.secrets)) return hashed()
  const rest = JSON.stringify({ ...options, secrets: null })
  let keys = keysByBundle.get(options.secrets)
  if (!keys) keysByBundle.set(options.secrets, (keys = new Map()))
  let key = keys.get(rest)
  if (key === undefined) {
    if (keys.size >= 64) keys.clear()
    keys.set(rest, (key = hashed()))
  }
  return key
}

function generate(options: GenerateConfigOptions): RenderedConfig {
  const v = parseTalosVersion(options.talosVersion)
  if (!versionAtLeast(v, MIN_GENERATE_VERSION.major, MIN_GENERATE_VERSION.minor)) {
    throw invalid(`config generation supports Talos ${MIN_GENERATE_VERSION.major}.${MIN_GENERATE_VERSION.minor} and later, not ${formatTalosVersion(v)}`)
  }
  if (options.role !== 'controlplane' && options.role !== 'worker') throw invalid(`unknown machine role '${String(options.role)}'`)
  if (!options.clusterName) throw invalid('cluster name is required')
  const url = checkEndpoint(options.endpoint)
  const k8s = (options.kubernetesVersion ?? DEFAULT_KUBERNETES_VERSIONS[minorKey(v)] ?? DEFAULT_KUBERNETES_VERSIONS['1.14']!).replace(/^v/, '')
  // constants.DefaultIPv6PodNet/ServiceNet when the endpoint is an IPv6 address.
  const v6 = isIPv6(endpointHostname(url))
  const c: Context = {
    o: options,
    v,
    cp: options.role === 'controlplane',
    k8s,
    endpoint: options.endpoint,
    url,
    podNet: v6 ? 'fc00:db8:10::/56' : '10.244.0.0/16',
    serviceNet: v6 ? 'fc00:db8:20::/112' : '10.96.0.0/12',
    sans: [...(options.additionalSans ?? [])],
    discovery: options.discovery ?? true,
    installDisk: options.installDisk === undefined ? '/dev/sda' : options.installDisk,
    installImage: options.installImage === undefined ? defaultInstallerImage(v, options.schematic) : options.installImage,
  }

  const documents: ConfigDocument[] = [v1alpha1Document(c)]
  if (multidocKubernetes(c.v)) documents.push(...multidocDocuments(c))
  documents.push(...registryDocuments(c), ...networkDocuments(c))
  if (multidocKubernetes(c.v)) {
    documents.push(...kubernetesUniversalDocuments(c))
    if (c.cp) documents.push(...kubernetesControlPlaneDocuments(c))
  }
  return { documents, yaml: stringifyConfigDocuments(documents) }
}
