// `npm run bench -- NAME...`: runs the named benchmarks (or all) one after another. Each benchmark runs rackboot and
// its reference peer side by side in one run and prints both figures and the ratio (the machines are shared and noisy).
import { readdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const available = readdirSync(here)
  .filter((f) => f.endsWith('.bench.ts'))
  .map((f) => f.replace(/\.bench\.ts$/, ''))
  .sort()

const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'))
const names = wanted.length > 0 ? wanted : available
for (const name of names) {
  if (!available.includes(name)) {
    console.error(`unknown benchmark '${name}'; available: ${available.join(', ') || '(none)'}`)
    process.exit(2)
  }
}
for (const name of names) {
  console.log(`\n=== bench: ${name} ===`)
  const mod = (await import(join(here, `${name}.bench.ts`))) as { run: (args: string[]) => Promise<void> }
  await mod.run(process.argv.slice(2))
}
