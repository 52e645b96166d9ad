// Redfish VirtualMedia: insert an ISO by URL into the BMC's virtual CD drive (the BMC fetches it), eject it, and
// read each back. As Ironic, Metal3 and rufio do it: the CD-type member of ComputerSystem.VirtualMedia (newer
// schemas) or of the system's manager's VirtualMedia, the InsertMedia/EjectMedia actions, PATCH of Image/Inserted
// for BMCs without them.
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from '../../log.js'
import { PowerError } from '../errors.js'
import { redfishMessages, type Json, type RedfishClient, type RedfishResponse } from './client.js'

export interface VirtualMediaContext {
  client: RedfishClient
  /** The ComputerSystem's @odata.id. */
  systemPath: string
  /** The BMC as messages name it (host:port). */
  label: string
  log?: Logger
  /** Read-backs before a change counts as not applied (BMCs that apply a moment later), and how far apart. */
  verifyReads?: number
  verifyIntervalMs?: number
  /** Task monitor poll interval when the BMC sends no Retry-After. */
  taskPollMs?: number
}

/** The virtual CD as read back. */
export interface VirtualMediaState {
  /** The VirtualMedia member's @odata.id. */
  path: string
  image: string | null
  inserted: boolean
  writeProtected: boolean | null
}

interface Member {
  path: string
  body: Json
  etag: string | null
}

function ref(value: unknown): string | null {
  const id = (value as Json | null | undefined)?.['@odata.id']
  return typeof id === 'string' ? id : null
}

function stateOf(m: Member): VirtualMediaState {
  const image = typeof m.body.Image === 'string' && m.body.Image !== '' ? m.body.Image : null
  return {
    path: m.path,
    image,
    // Inserted is optional in the schema: a BMC that leaves it out has media in when it names an image.
    inserted: typeof m.body.Inserted === 'boolean' ? m.body.Inserted : image !== null,
    writeProtected: typeof m.body.WriteProtected === 'boolean' ? m.body.WriteProtected : null,
  }
}

function sameUrl(a: string | null, b: string): boolean {
  if (a === null) return false
  if (a === b) return true
  try {
    return new URL(a).href === new URL(b).href
  } catch {
    return false
  }
}

function isCd(body: Json): boolean {
  const types = Array.isArray(body.MediaTypes) ? body.MediaTypes.map(String) : []
  return types.includes('CD') || types.includes('DVD')
}

// A 4xx (not 408) or 503/429 proves the BMC did not carry the request out: it may be sent again.
function provedNotRun(status: number): boolean {
  return (status >= 400 && status < 500 && status !== 408) || status === 503
}

function refused(ctx: VirtualMediaContext, res: RedfishResponse, what: string): PowerError {
  const err = ctx.client.httpError(res, what)
  if (err.notRun || !provedNotRun(res.status)) return err
  return new PowerError(err.kind, err.message, {
    details: err.details as Record<string, unknown>, notRun: true, retryable: err.retryable,
    ...(err.retryAfterMs !== null ? { retryAfterMs: err.retryAfterMs } : {}),
  })
}

async function getJson(ctx: VirtualMediaContext, path: string, signal: AbortSignal): Promise<Member> {
  const res = await ctx.client.request('GET', path, { signal })
  if (!res.body) throw new PowerError('protocol', `BMC ${ctx.label} sent an empty document for ${path}`)
  return { path, body: res.body, etag: res.etag }
}

/** The VirtualMedia collection: on the system (Redfish 2021.1 on), else on a manager that manages it. */
async function collectionPath(ctx: VirtualMediaContext, signal: AbortSignal): Promise<string> {
  const system = await getJson(ctx, ctx.systemPath, signal)
  const own = ref(system.body.VirtualMedia)
  if (own) return own
  const managers = ((system.body.Links as Json | undefined)?.ManagedBy ?? []) as unknown[]
  for (const m of Array.isArray(managers) ? managers : []) {
    const path = ref(m)
    if (!path) continue
    const manager = await getJson(ctx, path, signal)
    const media = ref(manager.body.VirtualMedia)
    if (media) return media
  }
  throw new PowerError('unsupported', `BMC ${ctx.label} offers no virtual media (no VirtualMedia on ${ctx.systemPath} or its managers)`)
}

/** The CD/DVD member of the BMC's VirtualMedia collection. */
export async function findVirtualCd(ctx: VirtualMediaContext, signal: AbortSignal): Promise<VirtualMediaState> {
  return stateOf(await findCd(ctx, signal))
}

async function findCd(ctx: VirtualMediaContext, signal: AbortSignal): Promise<Member> {
  const collection = await getJson(ctx, await collectionPath(ctx, signal), signal)
  const paths = (Array.isArray(collection.body.Members) ? collection.body.Members : []).map(ref).filter((p): p is string => p !== null)
  const seen: string[] = []
  for (const path of paths) {
    const member = await getJson(ctx, path, signal)
    if (isCd(member.body)) return member
    seen.push(`${path.replace(/\/$/, '').split('/').pop()} (${Array.isArray(member.body.MediaTypes) ? member.body.MediaTypes.join('/') : 'no MediaTypes'})`)
  }
  throw new PowerError('unsupported', `BMC ${ctx.label} has no virtual CD/DVD drive (its virtual media: ${seen.join(', ') || 'none'})`)
}

function actionTarget(member: Member, name: string): string | null {
  const action = (member.body.Actions as Json | undefined)?.[`#VirtualMedia.${name}`] as Json | undefined
  return typeof action?.target === 'string' ? action.target : null
}

/** Follows a task monitor (202 + Location) until the task ends; throws when it ends badly. */
async function waitTask(ctx: VirtualMediaContext, res: RedfishResponse, what: string, signal: AbortSignal): Promise<void> {
  let location = res.location
  while (location) {
    const retryAfter = Number(res.headers.get('retry-after'))
    const wait = Number.isFinite(retryAfter) && retryAfter > 0 ? Math.min(retryAfter * 1000, 10_000) : ctx.taskPollMs ?? 1000
    try {
      await sleep(wait, undefined, { signal })
    } catch {
      throw new PowerError('unknown-outcome', `BMC ${ctx.label}: the task for ${what} did not finish in time`)
    }
    res = await ctx.client.send('GET', location, { signal })
    if (res.status === 202) {
      location = res.location ?? location
      continue
    }
    if (res.status === 404 || res.status === 410) return // monitors may vanish once done
    if (res.status >= 400) throw ctx.client.httpError(res, `${what} (task)`)
    const state = typeof res.body?.TaskState === 'string' ? res.body.TaskState : 'Completed'
    if (['Exception', 'Killed', 'Cancelled', 'Interrupted'].includes(state) || res.body?.TaskStatus === 'Critical') {
      const messages = (Array.isArray(res.body?.Messages) ? res.body.Messages : []) as Json[]
      const text = messages.map((m) => String(m.Message ?? m.MessageId ?? '')).join('; ')
      throw new PowerError('rejected', `BMC ${ctx.label}: the task for ${what} ended ${state}${text ? `: ${text}` : ''}`)
    }
    if (state === 'Completed') return
  }
}

function post(ctx: VirtualMediaContext, target: string, body: Json, signal: AbortSignal): Promise<RedfishResponse> {
  return ctx.client.send('POST', target, { signal, body })
}

async function patch(ctx: VirtualMediaContext, member: Member, body: Json, what: string, signal: AbortSignal): Promise<void> {
  let res = await ctx.client.send('PATCH', member.path, { signal, body })
  if (res.status === 412 || res.status === 428) {
    // The BMC wants If-Match (or the ETag moved): read the current one and try once more.
    const tag = (await getJson(ctx, member.path, signal)).etag
    if (!tag) throw new PowerError('rejected', `BMC ${ctx.label} wants If-Match for ${what} but sends no ETag`, { notRun: true })
    res = await ctx.client.send('PATCH', member.path, { signal, body, headers: { 'If-Match': tag } })
  }
  if (res.status === 202) return waitTask(ctx, res, what, signal)
  if (res.status >= 200 && res.status < 300) return
  throw refused(ctx, res, what)
}

/** Reads the member until `ok` holds (a few times, BMCs may apply a moment later); the last state otherwise. */
async function readBack(ctx: VirtualMediaContext, path: string, ok: (s: VirtualMediaState) => boolean, signal: AbortSignal): Promise<{ state: VirtualMediaState; ok: boolean }> {
  const reads = Math.max(1, ctx.verifyReads ?? 3)
  let state: VirtualMediaState | null = null
  for (let i = 0; i < reads; i++) {
    if (i > 0) await sleep(ctx.verifyIntervalMs ?? 1000, undefined, { signal }).catch(() => undefined)
    state = stateOf(await getJson(ctx, path, signal))
    if (ok(state)) return { state, ok: true }
  }
  return { state: state!, ok: false }
}

/**
 * Inserts `imageUrl` into the BMC's virtual CD (ejecting what is in it first) and reads it back. `onSend` is called
 * just before the insert leaves: from then on a failure without `notRun` is ambiguous. A read-back that does not
 * show the image inserted is a PowerError `not-applied` naming the fields.
 */
export async function insertVirtualMedia(ctx: VirtualMediaContext, imageUrl: string, signal: AbortSignal, onSend?: () => void): Promise<VirtualMediaState> {
  let member = await findCd(ctx, signal)
  const before = stateOf(member)
  if (before.inserted) {
    ctx.log?.debug({ bmc: ctx.label, image: before.image }, 'virtual CD holds media: ejecting it first')
    await eject(ctx, member, signal)
    member = await getJson(ctx, member.path, signal)
  }
  const what = `insert virtual media ${imageUrl}`
  const target = actionTarget(member, 'InsertMedia')
  let done = false
  if (target) {
    const full: Json = { Image: imageUrl, Inserted: true, WriteProtected: true }
    onSend?.()
    let res = await post(ctx, target, full, signal)
    if (res.status === 400) {
      // Inserted and WriteProtected are optional (Redfish 2021.1) and some BMCs refuse them (Supermicro X12: OpenStack
      // sushy leaves them out for it). A 400 proves nothing was done, so asking once more with Image alone is safe.
      ctx.log?.debug({ bmc: ctx.label, refusal: redfishMessages(res.body).text }, 'InsertMedia refused; asking with Image only')
      res = await post(ctx, target, { Image: imageUrl }, signal)
    }
    if (res.status === 202) {
      await waitTask(ctx, res, what, signal)
      done = true
    } else if (res.status >= 200 && res.status < 300) {
      done = true
    } else if (res.status !== 404 && res.status !== 405 && res.status !== 501) {
      throw refused(ctx, res, what)
    }
    // 404/405/501: the action is advertised and not there: the PATCH below.
  }
  if (!done) {
    if (!target) onSend?.()
    await patch(ctx, member, { Image: imageUrl, Inserted: true }, what, signal)
  }
  const { state, ok } = await readBack(ctx, member.path, (s) => sameUrl(s.image, imageUrl) && s.inserted, signal)
  if (!ok) {
    const wrong = [
      ...(sameUrl(state.image, imageUrl) ? [] : [`Image is ${JSON.stringify(state.image)}, not ${JSON.stringify(imageUrl)}`]),
      ...(state.inserted ? [] : ['Inserted is false']),
    ]
    throw new PowerError('not-applied', `BMC ${ctx.label} accepted the virtual media insert but the read-back differs: ${wrong.join('; ')}`, {
      details: { asked: { image: imageUrl, inserted: true }, readback: state },
    })
  }
  return state
}

async function eject(ctx: VirtualMediaContext, member: Member, signal: AbortSignal): Promise<void> {
  const what = 'eject virtual media'
  const target = actionTarget(member, 'EjectMedia')
  if (target) {
    // An empty body rather than none: some BMCs refuse an action POST without a JSON body.
    const res = await post(ctx, target, {}, signal)
    if (res.status === 202) return waitTask(ctx, res, what, signal)
    if (res.status >= 200 && res.status < 300) return
    if (res.status !== 404 && res.status !== 405 && res.status !== 501) throw refused(ctx, res, what)
  }
  await patch(ctx, member, { Image: null, Inserted: false }, what, signal)
}

/** Ejects whatever is in the BMC's virtual CD and reads back that nothing is inserted. Nothing in it: no request. */
export async function ejectVirtualMedia(ctx: VirtualMediaContext, signal: AbortSignal): Promise<VirtualMediaState> {
  const member = await findCd(ctx, signal)
  const before = stateOf(member)
  if (!before.inserted) return before
  await eject(ctx, member, signal)
  const { state, ok } = await readBack(ctx, member.path, (s) => !s.inserted, signal)
  if (!ok) {
    throw new PowerError('not-applied', `BMC ${ctx.label} accepted the virtual media eject but the read-back says Inserted is true (Image ${JSON.stringify(state.image)})`, {
      details: { asked: { inserted: false }, readback: state },
    })
  }
  return state
}
