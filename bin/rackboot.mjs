#!/usr/bin/env node
// Runs the TypeScript sources directly through tsx: the appliance ships source, not build output.
import { register } from 'tsx/esm/api'
register()
await import('../src/main.ts')
