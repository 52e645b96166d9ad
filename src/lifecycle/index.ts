export { createLifecycle, attachTimeline, systemClock, type Lifecycle, type LifecycleDeps, type MachineFacts, type Clock } from './service.js'
export { TRANSITIONS, canTransition } from './transitions.js'
export { decideBoot, type BootDecision, type BootPolicy } from './decide.js'
export { createBootService, archFromIpxe, firmwareFromIpxe, type BootService, type BootPlan, type IpxeFacts, type AgentReport } from './boot.js'
