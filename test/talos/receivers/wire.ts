// A hand-rolled protobuf writer for the tests, written from the wire format spec (varint, length-delimited) and
// independent of protobufjs, so the tests check rackboot's .proto field numbers rather than trust them.
export type Field = Buffer

function varint(n: number | bigint): Buffer {
  let v = BigInt(n)
  if (v < 0n) v = (1n << 64n) + v // negative int32/int64: two's complement on 10 bytes
  const out: number[] = []
  do {
    let byte = Number(v & 0x7fn)
    v >>= 7n
    if (v !== 0n) byte |= 0x80
    out.push(byte)
  } while (v !== 0n)
  return Buffer.from(out)
}

const tag = (field: number, wireType: 0 | 2): Buffer => varint((field << 3) | wireType)

/** Varint field (int32, int64, bool, enum). */
export function vint(field: number, value: number | bigint | boolean): Field {
  return Buffer.concat([tag(field, 0), varint(typeof value === 'boolean' ? (value ? 1 : 0) : value)])
}

/** Length-delimited field (string, bytes, embedded message). */
export function bytes(field: number, value: Buffer | string): Field {
  const b = typeof value === 'string' ? Buffer.from(value, 'utf8') : value
  return Buffer.concat([tag(field, 2), varint(b.length), b])
}

export function message(...fields: Field[]): Buffer {
  return Buffer.concat(fields)
}

/** google.protobuf.Any { string type_url = 1; bytes value = 2; } */
export function any(typeName: string, value: Buffer): Buffer {
  return message(bytes(1, `type.googleapis.com/${typeName}`), bytes(2, value))
}

/** events.EventRequest { Any data = 1; string id = 2; string actor_id = 3; } as Talos sends it. */
export function eventRequest(id: string, typeName: string, payload: Buffer, actorId = ''): Buffer {
  return message(bytes(1, any(typeName, payload)), bytes(2, id), ...(actorId ? [bytes(3, actorId)] : []))
}

/** An xid for a given time (seconds), as rs/xid lays it out: 4-byte seconds, 3-byte machine, 2-byte pid, 3-byte counter. */
export function xid(seconds: number, counter: number): string {
  const raw = Buffer.alloc(12)
  raw.writeUInt32BE(seconds, 0)
  raw.writeUIntBE(0xa1b2c3, 4, 3)
  raw.writeUInt16BE(4242, 7)
  raw.writeUIntBE(counter & 0xffffff, 9, 3)
  return xidFromBytes(raw)
}

/** rs/xid's text form of 12 raw bytes. */
export function xidFromBytes(raw: Buffer): string {
  let bits = 0n
  for (const b of raw) bits = (bits << 8n) | BigInt(b)
  bits <<= 4n // 96 bits padded to 100: 20 characters of 5 bits, most significant first
  const alphabet = '0123456789abcdefghijklmnopqrstuv'
  let out = ''
  for (let i = 19; i >= 0; i--) out += alphabet[Number((bits >> BigInt(i * 5)) & 31n)]
  return out
}
