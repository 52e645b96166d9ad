// Preloaded into a CLI process (NODE_OPTIONS=--import=<this file's URL>) by cli-imports.test.ts. At exit it writes
// to $RACKBOOT_IMPORT_TRACE what the process loaded: every module's URL, as the ESM loader saw it (both through
// dist/ and through tsx, which hands each module on to the hooks registered before its own), and Node's list of its
// internal modules (fetch and Response load the bundled undici, which shows there and nowhere else).
import { writeFileSync } from 'node:fs'
import { register } from 'node:module'
import { MessageChannel, receiveMessageOnPort } from 'node:worker_threads'

const { port1, port2 } = new MessageChannel()
register(new URL('./import-trace-hooks.mjs', import.meta.url), { data: { port: port2 }, transferList: [port2] })
port1.unref()

process.on('exit', () => {
  const urls = []
  // The hooks run on a thread of their own: what they posted is read here, synchronously, at the very end.
  for (let m; (m = receiveMessageOnPort(port1));) urls.push(m.message)
  writeFileSync(process.env.RACKBOOT_IMPORT_TRACE, JSON.stringify({ urls, builtins: process.moduleLoadList }))
})
