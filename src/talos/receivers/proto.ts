// The protobuf types of Talos's event sink, loaded once from the .proto files beside this module (the same files
// the tests build their gRPC client from). protobufjs decodes; grpc-js only carries bytes.
import { isAbsolute, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import protobuf from 'protobufjs'

/** Directory holding events/events.proto, machine/machine.proto and common/common.proto. */
export const PROTO_DIR = fileURLToPath(new URL('./proto/', import.meta.url))

/** The proto files, relative to PROTO_DIR (imports resolve from there too, as in Talos's api/ tree). */
export const PROTO_FILES = ['events/events.proto', 'machine/machine.proto'] as const

/** Talos wraps each event with anypb.New, which prefixes the full message name with this. */
export const TYPE_URL_PREFIX = 'type.googleapis.com/'

export interface SinkTypes {
  root: protobuf.Root
  eventRequest: protobuf.Type
  eventResponse: protobuf.Type
}

let cached: SinkTypes | null = null

export function sinkTypes(): SinkTypes {
  if (cached) return cached
  const root = new protobuf.Root()
  // Imports are written as in Talos's api/ tree ("common/common.proto"), so resolve them from PROTO_DIR, not
  // from the importing file's own directory (protobufjs's default).
  root.resolvePath = (_origin, target) => (isAbsolute(target) ? target : join(PROTO_DIR, target))
  root.loadSync([...PROTO_FILES])
  root.resolveAll()
  cached = {
    root,
    eventRequest: root.lookupType('events.EventRequest'),
    eventResponse: root.lookupType('events.EventResponse'),
  }
  return cached
}
