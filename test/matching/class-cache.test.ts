import { test } from 'node:test'
import assert from 'node:assert/strict'
import { chooseClass, evaluateClass } from '../../src/matching/index.js'
import { COMPILED_SELECTORS_KEPT, compiledSelector, compiledSelectorCount } from '../../src/matching/classes.js'
import type { Machine, MachineClass } from '../../src/inventory/index.js'

// Class matching keeps selectors compiled by their text: the same answers as compiling each time, bounded.

const machine = (serial: string) => ({ id: `m-${serial}`, serial, labels: {}, nics: [] }) as unknown as Machine
const cls = (name: string, selectors: string[]): MachineClass =>
  ({ name, description: null, selectors, profile: null, patches: [], managedBy: null, createdAt: 0, updatedAt: 0 })

test('a selector text is compiled once and reused; one that does not parse is kept as its error', () => {
  const a = compiledSelector('serial =~ "^T"')
  assert.equal(compiledSelector('serial =~ "^T"'), a)
  const bad = compiledSelector('serial =~')
  assert.ok('error' in bad && bad.error.length > 0)
  const r = evaluateClass(machine('T1'), cls('c', ['serial =~ "^T"', 'serial =~']))
  assert.deepEqual(r.selectors.map((s) => s.ok), [true, false])
  assert.equal(r.selectors[1]!.error, bad.error)
  assert.equal(r.matched, false)
})

test('matching with kept selectors gives each machine its own answer', () => {
  const classes = [cls('t', ['serial =~ "^T"']), cls('t2', ['serial =~ "^T"', 'serial =~ "2$"']), cls('s', ['serial =~ "^S"'])]
  for (let round = 0; round < 2; round++) {
    assert.equal(chooseClass(machine('T1'), classes).chosen?.name, 't')
    assert.equal(chooseClass(machine('T2'), classes).chosen?.name, 't2')
    assert.equal(chooseClass(machine('S1'), classes).chosen?.name, 's')
    assert.equal(chooseClass(machine('X1'), classes).chosen, null)
  }
})

test(`at most ${COMPILED_SELECTORS_KEPT} selectors are kept, the least recently used dropped first`, () => {
  const keep = compiledSelector('serial = "keep"')
  const s0 = compiledSelector('serial = "s0"')
  for (let i = 1; i < COMPILED_SELECTORS_KEPT * 2; i++) {
    compiledSelector(`serial = "s${i}"`)
    if (i % 100 === 0) compiledSelector('serial = "keep"')
    assert.ok(compiledSelectorCount() <= COMPILED_SELECTORS_KEPT)
  }
  assert.equal(compiledSelectorCount(), COMPILED_SELECTORS_KEPT)
  assert.equal(compiledSelector('serial = "keep"'), keep, 'a selector in use stays compiled')
  assert.notEqual(compiledSelector('serial = "s0"'), s0, 'the least recently used one was dropped, and compiled again')
})
