export { createLifecycle, attachTimeline, systemClock, type Lifecycle, type LifecycleDeps, type MachineFacts, type Clock } from './service.js'
export { TRANSITIONS, canTransition } from './transitions.js'
