// Reading the appliance's Dockerfile and docker-compose.yml for the tests (no Docker engine runs on these machines):
// enough of the Dockerfile syntax for ours, instructions by stage, with continuation lines joined.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'yaml'
import { REPO } from '../support/cli.js'

export interface Instruction {
  op: string
  args: string
}

export interface Stage {
  from: string
  name: string | null
  instructions: Instruction[]
}

export function dockerfileStages(text = readFileSync(join(REPO, 'Dockerfile'), 'utf8')): Stage[] {
  const lines = text.split('\n').filter((l) => !/^\s*#/.test(l))
  const joined = lines.join('\n').replace(/\\\n/g, ' ')
  const stages: Stage[] = []
  for (const line of joined.split('\n')) {
    const m = /^\s*([A-Z]+)\s+(.*)$/.exec(line)
    if (!m) continue
    const [, op, args] = m as unknown as [string, string, string]
    if (op === 'FROM') {
      const f = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?/i.exec(args.trim())!
      stages.push({ from: f[1]!, name: f[2] ?? null, instructions: [] })
    } else stages.at(-1)?.instructions.push({ op, args: args.replace(/\s+/g, ' ').trim() })
  }
  return stages
}

export function stage(stages: Stage[], name: string): Stage {
  const s = stages.find((x) => x.name === name)
  if (!s) throw new Error(`no stage ${name} in the Dockerfile`)
  return s
}

/** ENV of a stage (KEY=value pairs; values without spaces or quotes, as ours are). */
export function stageEnv(s: Stage): Record<string, string> {
  const env: Record<string, string> = {}
  for (const i of s.instructions.filter((x) => x.op === 'ENV')) {
    for (const pair of i.args.split(' ')) {
      const eq = pair.indexOf('=')
      if (eq > 0) env[pair.slice(0, eq)] = pair.slice(eq + 1)
    }
  }
  return env
}

/** The user and group ids `useradd --uid` / `groupadd --gid` give the runtime user. */
export function runtimeIds(s: Stage): { user: string; uid: number; gid: number } {
  const run = s.instructions.filter((i) => i.op === 'RUN').map((i) => i.args).join(' ')
  const uid = /useradd [^&]*--uid (\d+)[^&]* (\S+)\s*(?:&&|$)/.exec(run)
  const gid = /groupadd [^&]*--gid (\d+)/.exec(run)
  if (!uid || !gid) throw new Error('the Dockerfile creates no user with a fixed uid and gid')
  return { user: uid[2]!, uid: Number(uid[1]), gid: Number(gid[1]) }
}

export interface ComposeService {
  network_mode?: string
  cap_add?: string[]
  cap_drop?: string[]
  security_opt?: string[]
  environment: Record<string, string>
  command: string[]
  volumes: string[]
  healthcheck: { test: string[] }
  user?: string
}

export function composeFile(): { services: Record<string, ComposeService>; volumes: Record<string, unknown> } {
  return parse(readFileSync(join(REPO, 'docker-compose.yml'), 'utf8'))
}

/** `setcap CAPS+ep FILE` lines of a stage: file -> capability names (CAP_ prefix, upper case). */
export function fileCapabilities(s: Stage): Map<string, string[]> {
  const out = new Map<string, string[]>()
  for (const i of s.instructions.filter((x) => x.op === 'RUN')) {
    for (const m of i.args.matchAll(/setcap (\S+)\+ep (\S+)/g)) {
      out.set(m[2]!, m[1]!.split(',').map((c) => c.toUpperCase()))
    }
  }
  return out
}
