// Route schemas compiled on first use instead of at start-up. fastify compiles every route's request validators
// (Ajv) and response serializers (fast-json-stringify) when the app becomes ready: for rackboot's ~200 routes that
// was the largest part of `serve`'s start (a third of its CPU time, measured), most of it for routes a given server
// never sees. Here each compile waits for the route's first request that needs it (that request pays it: a few ms);
// Ajv and fast-json-stringify themselves load then too. Answers are unchanged: the same compilers, with the same
// options, compile the same schemas, once. A broken schema fails its route's requests (500) instead of the start:
// `pendingSchemas(app).compileAll()` compiles whatever is pending, so a test still finds it.
import { createRequire } from 'node:module'
import type { FastifyInstance, FastifyServerOptions } from 'fastify'

type Compile<In, Out> = (route: In) => Out
type Builder<In, Out> = (externalSchemas: unknown, options?: unknown) => Compile<In, Out>
type SchemaController = NonNullable<FastifyServerOptions['schemaController']>
type Factory = NonNullable<SchemaController['compilersFactory']>

/** Compiles of one app not yet done. */
export interface PendingSchemas {
  /** Compiles still waiting for a first use. */
  readonly size: number
  /** Compiles them all now; the first error is thrown (as fastify would have thrown it at start-up). */
  compileAll(): void
  /**
   * Compiles them one at a time, each in its own turn of the event loop, until none is left or `stop()`: the first
   * request to a route then finds its schemas ready, and a boot request waits behind one compile (a few ms) at most.
   * A compile that fails stays pending for its route's request to fail on (500), as it would have.
   */
  compileInBackground(): { stop(): void }
}

// fastify's own default compilers, resolved from fastify (they are its dependencies, not ours) and loaded when a
// first schema is compiled. Each app gets its own, as fastify gives each instance (one Ajv per app).
const fromFastify = createRequire(createRequire(import.meta.url).resolve('fastify'))
const defaultValidatorBuilder = (): Builder<unknown, unknown> => (fromFastify('@fastify/ajv-compiler') as () => Builder<unknown, unknown>)()
const defaultSerializerBuilder = (): Builder<unknown, unknown> =>
  (fromFastify('@fastify/fast-json-stringify-compiler') as () => Builder<unknown, unknown>)()

/**
 * A function standing for the one `compile()` returns, compiled at its first call. A validator's `errors` (Ajv sets
 * them after each call) and `schemaEnv` (fastify reads it to pass the parent data) are read through to it.
 */
export function lazyFunction(compile: () => (...args: unknown[]) => unknown, pending: Set<() => unknown>): (...args: unknown[]) => unknown {
  let real: ((...args: unknown[]) => unknown) | null = null
  const get = (): ((...args: unknown[]) => unknown) => {
    if (!real) {
      real = compile()
      pending.delete(get)
    }
    return real
  }
  pending.add(get)
  const stand = (...args: unknown[]): unknown => get()(...args)
  Object.defineProperties(stand, {
    errors: { get: () => (get() as { errors?: unknown }).errors, set: (v) => void ((get() as { errors?: unknown }).errors = v) },
    schemaEnv: { get: () => (get() as { schemaEnv?: unknown }).schemaEnv },
  })
  return stand
}

/** A compiler whose functions compile on first call (the compiler itself is built on first need too). */
export function lazyCompiler<In>(compiler: () => Compile<In, unknown>, pending: Set<() => unknown>): Compile<In, unknown> {
  return (route) => lazyFunction(() => compiler()(route) as (...args: unknown[]) => unknown, pending)
}

/** fastify's `schemaController` option with lazy default compilers, and the pending compiles it leaves. */
export function lazySchemaController(): { schemaController: SchemaController; pending: PendingSchemas; waiting: Set<() => unknown> } {
  const waiting = new Set<() => unknown>()
  const lazyBuilder = (make: () => Builder<unknown, unknown>): Builder<unknown, unknown> => {
    let builder: Builder<unknown, unknown> | null = null
    return (externalSchemas, options) => {
      let compiler: Compile<unknown, unknown> | null = null
      return lazyCompiler(() => (compiler ??= (builder ??= make())(externalSchemas, options)), waiting)
    }
  }
  const compilersFactory = {
    buildValidator: lazyBuilder(defaultValidatorBuilder),
    buildSerializer: lazyBuilder(defaultSerializerBuilder),
  } as unknown as Factory
  return {
    schemaController: { compilersFactory },
    waiting,
    pending: {
      get size() {
        return waiting.size
      },
      compileAll() {
        for (const get of [...waiting]) get()
      },
      compileInBackground() {
        let stopped = false
        const failed = new Set<() => unknown>()
        const next = (): void => {
          if (stopped) return
          const get = [...waiting].find((g) => !failed.has(g))
          if (!get) return
          try {
            get()
          } catch {
            failed.add(get)
          }
          setImmediate(next)
        }
        setImmediate(next)
        return { stop: () => void (stopped = true) }
      },
    },
  }
}

const pendingOf = new WeakMap<object, { waiting: Set<() => unknown>; pending: PendingSchemas }>()

/** Remembers an app's pending compiles (buildApp). */
export function trackPendingSchemas(app: FastifyInstance, lazy: ReturnType<typeof lazySchemaController>): void {
  pendingOf.set(app, { waiting: lazy.waiting, pending: lazy.pending })
}

/** The tracking of `app` or of the app it was registered in (a plugin's instance inherits from its parent's). */
function trackingOf(app: FastifyInstance): { waiting: Set<() => unknown>; pending: PendingSchemas } | undefined {
  for (let a: object | null = app; a; a = Object.getPrototypeOf(a) as object | null) {
    const hit = pendingOf.get(a)
    if (hit) return hit
  }
  return undefined
}

/** The app's schema compiles still waiting for their first use (after `ready()`; none for an app built elsewhere). */
export function pendingSchemas(app: FastifyInstance): PendingSchemas {
  return trackingOf(app)?.pending ?? { size: 0, compileAll: () => undefined, compileInBackground: () => ({ stop: () => undefined }) }
}

/** A plugin's own validator or serializer compiler (setValidatorCompiler), made lazy the same way. */
export function lazyCompilerFor<In>(app: FastifyInstance, compiler: Compile<In, unknown>): Compile<In, unknown> {
  return lazyCompiler(() => compiler, trackingOf(app)?.waiting ?? new Set())
}
