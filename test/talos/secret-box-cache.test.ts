import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { createSecretBox } from '../../src/inventory/secret-box.js'
import { isRackbootError } from '../../src/errors.js'

// secret-box.ts keeps the plaintext of values it opened (a cluster's secrets are opened for every config fetch):
// what it keeps must never open a value that would not open, nor answer for another key.

test('a box answers from what it opened, and still refuses tampered values and values of another key', () => {
  const key = randomBytes(32)
  const box = createSecretBox(key)
  const sealed = box.seal('cluster secrets')
  assert.equal(box.open(sealed), 'cluster secrets')
  assert.equal(box.open(sealed), 'cluster secrets', 'again')
  // One byte of the ciphertext changed: another text, authenticated afresh, refused.
  const raw = Buffer.from(sealed.slice(3), 'base64')
  raw[raw.length - 1]! ^= 1
  assert.throws(() => box.open(`v1:${raw.toString('base64')}`), (e: unknown) => isRackbootError(e, 'RB_ERR_CRYPTO'))
  // Another key's box does not know what this one opened.
  assert.throws(() => createSecretBox(randomBytes(32)).open(sealed), (e: unknown) => isRackbootError(e, 'RB_ERR_CRYPTO'))
  // A second box of the same key opens it by decrypting.
  assert.equal(createSecretBox(key).open(sealed), 'cluster secrets')
  // Each seal is its own text (its own IV), and opens to its own plaintext.
  const other = box.seal('other secrets')
  assert.equal(box.open(other), 'other secrets')
  assert.equal(box.open(sealed), 'cluster secrets')
})

test('what a box keeps is bounded: hundreds of values opened, each still opens to its own', () => {
  const box = createSecretBox(randomBytes(32))
  const values = Array.from({ length: 600 }, (_, i) => [`secret ${i}`, box.seal(`secret ${i}`)] as const)
  for (let round = 0; round < 2; round++) for (const [plain, sealed] of values) assert.equal(box.open(sealed), plain)
})
