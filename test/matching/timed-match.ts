// Run by regex.test.ts in a child process: evaluates selectors against a machine with the given serial and prints
// how long each took. A child, because a backtracking engine blocks its thread for ages and node:test cannot
// interrupt synchronous code: the parent's timeout kills this process and the test fails instead of hanging.
import { compileSelector } from '../../src/matching/index.js'
import type { Machine } from '../../src/inventory/index.js'

const cases = JSON.parse(process.argv[2]!) as { selector: string; serial: string }[]
const results = cases.map(({ selector, serial }) => {
  // The best of three runs: a pause of the machine is not the engine's time; a backtracking engine is slow in all.
  let ms = Infinity
  let matched = false
  for (let run = 0; run < 3; run++) {
    const started = performance.now()
    matched = compileSelector(selector).matches({ serial } as Machine) // only the serial is read
    ms = Math.min(ms, performance.now() - started)
  }
  return { selector, matched, ms }
})
process.stdout.write(JSON.stringify(results))
