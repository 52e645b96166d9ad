export { createLifecycle, attachTimeline, systemClock, type Lifecycle, type LifecycleDeps, type MachineFacts, type Clock } from './service.js'
export { TRANSITIONS, canTransition } from './transitions.js'
export { decideBoot, type BootDecision, type BootPolicy } from './decide.js'
export { createBootService, archFromIpxe, firmwareFromIpxe, type BootService, type BootPlan, type BootRefusal, type IpxeFacts, type AgentReport } from './boot.js'
export { createConfigService, type ConfigService, type ServedConfig } from './config.js'
export { createDhcpBootPort, createTftpObserver } from './protocol-ports.js'
export {
  createAllocator, baseConfigFor, MAX_ALLOCATION_COUNT,
  type Allocator, type AllocatorDeps, type AllocationRequest, type AllocationResult, type ReleaseResult, type PowerPort,
} from './allocation.js'
export { createPeerDirectory, type PeerDirectory } from './peers.js'
export { createTalosFeedback, type TalosFeedback } from './talos-feedback.js'
export { resolveProfile, type ResolvedProfile } from './profiles.js'
export { createCluster, clusterTalosconfig, type NewCluster } from './clusters.js'
export { rebootHistory } from './reboot-history.js'
export { createIdentityVerifier, type IdentityVerifier, type IdentityVerdict, type Attestation } from './identity.js'
export { createKernelNeighbourTable, parseProcArp, parseIpNeighJson, type NeighbourTable } from './neighbours.js'
export { createNewMachineLimit, type NewMachineLimit } from './new-machine-limit.js'
export { createSecurityEvents, type SecurityEvents, type SecurityEventKind } from './security-events.js'
