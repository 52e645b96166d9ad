// Talos names each event with an xid (github.com/rs/xid): 12 bytes written as 20 base32hex characters, the first
// 4 bytes being big-endian Unix seconds. That gives when Talos raised the event, even for events replayed later.
const ALPHABET = '0123456789abcdefghijklmnopqrstuv'

/** Milliseconds since the epoch encoded in an xid, or undefined when `id` is not an xid. */
export function xidTime(id: string): number | undefined {
  if (id.length !== 20) return undefined
  // The seconds are the first 32 bits of the bit stream; 7 characters carry 35 bits.
  let bits = 0n
  for (let i = 0; i < 20; i++) {
    const v = ALPHABET.indexOf(id.charAt(i))
    if (v < 0) return undefined
    if (i < 7) bits = (bits << 5n) | BigInt(v)
  }
  const seconds = Number(bits >> 3n)
  return seconds === 0 ? undefined : seconds * 1000
}
