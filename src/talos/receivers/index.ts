// The back channel from Talos: its event sink (talos.events.sink=<host:port>, plaintext gRPC EventSinkService) and
// its kernel log (talos.logging.kernel=tcp://host:port/ or udp://..., JSON lines). Libraries only: `rackboot serve`
// wires them, mapping each peer IP to a machine (DHCP lease, config token address).
//
//   const sink = createEventSinkServer({ listen: '0.0.0.0', port: 4002, log, metrics, observer: {
//     event(e) {                                   // e.peer, e.type ('machine.MachineStatusEvent'...), e.data
//       const hint = lifecycleHintFor(e)           // 'installing' | 'installed' | 'failed' | null
//     },
//   } })
//   await sink.start()                             // { address, port }
//
//   const store = createKernelLogStore({ perMachineLines: 2000, maxBytes: 64 * 1024 * 1024, metrics })
//   const kmsg = createKernelLogReceiver({ listen: '0.0.0.0', tcpPort: 4001, udpPort: 4001, log, metrics, store,
//     linesPerSecond: 500 })
//   await kmsg.start()                             // { address, tcpPort, udpPort }
//   store.lines(peerIp, { limit: 200 })
//   store.subscribe((peer, line) => ...)           // line.transport: 'tcp' | 'udp' (UDP senders can be spoofed)
//
// Which signal means what is explained at the top of lifecycle-hint.ts.
export { createEventSinkServer, EVENT_SINK_DEFAULTS, PUBLISH_PATH } from './event-sink-server.js'
export type { EventSinkServer, EventSinkServerDeps, EventSinkStats, TalosEventObserver } from './event-sink-server.js'
export {
  decodeEventPayload,
  typeNameOf,
  typeUrlOf,
  isKnownEventType,
  KNOWN_EVENT_TYPES,
  MACHINE_STAGES,
  UNKNOWN_EVENT_TYPE,
} from './talos-events.js'
export type {
  TalosEvent,
  KnownEventType,
  MachineStage,
  MachineStatusEventData,
  SequenceEventData,
  PhaseEventData,
  TaskEventData,
  ServiceStateEventData,
  ErrorEventData,
  AddressEventData,
  RestartEventData,
  UnknownEventData,
  DecodedPayload,
} from './talos-events.js'
export { lifecycleHintFor, kernelLogHintFor } from './lifecycle-hint.js'
export type { LifecycleHint, KernelLogHint } from './lifecycle-hint.js'
export {
  createKernelLogReceiver,
  DEFAULT_KERNEL_LOG_CONNECTIONS_PER_PEER,
  DEFAULT_KERNEL_LOG_LINES_PER_SECOND,
  DEFAULT_KERNEL_LOG_RATE_PEERS,
} from './kernel-log-receiver.js'
export type { KernelLogReceiver, KernelLogReceiverDeps, KernelLogReceiverStats } from './kernel-log-receiver.js'
export { createKernelLogStore, lineCost, LINE_OVERHEAD_BYTES, PEER_OVERHEAD_BYTES, STRING_OVERHEAD_BYTES } from './kernel-log-store.js'
export type {
  KernelLogStore,
  KernelLogStoreOptions,
  KernelLogQuery,
  KernelLogListener,
  KernelLogPeerSummary,
  KernelLogStoreStats,
} from './kernel-log-store.js'
export { parseKernelLogLine, MAX_MSG_CHARS } from './kernel-log-line.js'
export type { KernelLogLine, KernelLogRecord, KernelLogTransport, ParsedKernelLog } from './kernel-log-line.js'
export { PROTO_DIR, PROTO_FILES, TYPE_URL_PREFIX } from './proto.js'
export { xidTime } from './xid.js'
export { normalizeIp } from './peer.js'
