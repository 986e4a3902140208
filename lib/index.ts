import type { FastifyInstance, FastifyPluginAsync } from 'fastify'
import fp from 'fastify-plugin'
import { AllowedFieldsMismatchError, AlreadyRegisteredError, ValuesSchemaMismatchError } from './errors.js'
import { RunListeners, type OnRun } from './listeners.js'
import { dedupeIn, MIN_TOKEN_LENGTH, resolveOptions, type LanggraphWebhooksOptions } from './options.js'
import { NO_QUEUE, startQueue, type RunQueue } from './queue/queue.js'
import { createReceiver } from './receive.js'
import { connectRedis } from './redis.js'
import { registerRoute } from './route.js'
import { createRuns, type LanggraphRuns } from './runs/index.js'
import type { WaitForRunOptions } from './runs/waiters.js'
import { createRunValidator, type RunWebhookField, type RunWebhookWith } from './schemas.js'
import { createTelemetry } from './telemetry.js'
import { createValuesValidator, type ValuesOf, type ValuesSchema } from './values-schema.js'

/** The `app.langgraphWebhooks` decorator. */
export interface LanggraphWebhooks<Values = Record<string, unknown>, Fields extends RunWebhookField = RunWebhookField> {
  /** Subscribes a listener to every run, or to runs of the given status(es); returns the unsubscribe function. */
  onRun: OnRun<Values, Fields>
  /** The full path the sender calls: any surrounding register's prefix, the `prefix` option, then `path`. */
  readonly path: string
  /** The queue's dead letters, set sizes and BullMQ queue (with the `queue` option; without it, every method rejects and `bullmq` throws). */
  readonly queue: RunQueue
  /**
   * Resolves with the run, as listeners see it, once an authenticated and
   * valid delivery of it arrives (or arrived in the last minute), whatever
   * the listeners then do. Rejects with `FST_LANGGRAPH_WEBHOOKS_WAIT_TIMEOUT`
   * after `timeoutMs` (default 10 minutes), or with the signal's reason.
   */
  waitForRun (runId: string, options?: WaitForRunOptions): Promise<RunWebhookWith<Fields, Values>>
  /** Runs started with the webhook set and tracked until handled; needs the `langgraph` option. */
  readonly runs: LanggraphRuns
  /**
   * The `langgraph.webhookUrl` with the token: **a secret**, for the SDK
   * calls that take `webhook` (`runs.wait`, `crons.create`). Needs the `langgraph` option.
   */
  readonly webhookUrl: string
  /**
   * The same decorator, typed with `run.values` as the schema's output
   * (`Static<typeof schema>`, `z.output<typeof schema>`, ...). `schema` must
   * be the `valuesSchema` given at registration, which validates
   * `run.values` at run time: the types cannot lie.
   */
  withValues<S extends ValuesSchema>(schema: S): LanggraphWebhooks<ValuesOf<S>, Fields>
  /**
   * The same decorator, typed with runs that hold only `fields`. `fields`
   * must list the `allowedFields` given at registration (in any order).
   */
  withFields<F extends RunWebhookField>(fields: readonly F[]): LanggraphWebhooks<Values, F>
}

declare module 'fastify' {
  interface FastifyInstance {
    langgraphWebhooks: LanggraphWebhooks
  }
}

async function langgraphWebhooksPlugin (fastify: FastifyInstance, rawOptions: LanggraphWebhooksOptions): Promise<void> {
  const options = resolveOptions(rawOptions)
  if (fastify.hasDecorator('langgraphWebhooks')) throw new AlreadyRegisteredError()
  if (options.shortToken) fastify.log.warn(`fastify-langgraph-webhooks: a token shorter than ${MIN_TOKEN_LENGTH} characters is easy to guess; use a random 32-byte hex token (node -e "console.log(crypto.randomBytes(32).toString('hex'))")`)

  const listeners = new RunListeners({ statusFiltering: options.allowedFields?.includes('status') ?? true })
  if (options.onRun !== undefined) listeners.on(options.onRun)
  const telemetry = createTelemetry()

  const valuesValidator = options.valuesSchema === undefined ? undefined : await createValuesValidator(options.valuesSchema)
  const queue = options.queue === undefined ? undefined : await startQueue(options.queue, listeners, fastify.log, telemetry, valuesValidator)
  if (queue !== undefined) {
    // Listeners subscribed after register() still get the first jobs.
    fastify.addHook('onReady', (done) => { queue.start(); done() })
    fastify.addHook('onClose', () => queue.close())
  }

  // Without a queue, the plugin's Redis is the `redis` option's, or a Redis dedupe store's.
  const redis = queue === undefined ? await connectRedis(options.redis, options.dedupe?.store) : undefined
  if (redis !== undefined) fastify.addHook('onClose', () => redis.close())
  const runs = await createRuns(options, fastify.log, queue?.redis ?? redis)
  const receiver = createReceiver({
    options,
    dedupe: dedupeIn(options.dedupe, redis),
    validateRun: createRunValidator(options.allowedFields),
    validateValues: valuesValidator,
    listeners: telemetry.timed(listeners),
    telemetry,
    tracking: runs.tracking,
    store: queue?.store,
    log: fastify.log
  })
  fastify.addHook('preClose', () => runs.stop())
  fastify.addHook('onClose', async () => {
    await receiver.close()
    await runs.close()
  })
  const route = registerRoute(fastify, options, receiver.receive, telemetry)

  const decorator: LanggraphWebhooks<any, any> = {
    onRun: ((statusOrListener: unknown, listener?: unknown) => listeners.on(statusOrListener, listener)) as OnRun<any>,
    get path () { return route.path },
    waitForRun: runs.waitForRun,
    runs: runs.runs,
    webhookUrl: '',
    queue: queue?.admin ?? NO_QUEUE,
    withValues (schema) {
      if (schema !== options.valuesSchema) throw new ValuesSchemaMismatchError()
      return decorator
    },
    withFields (fields) {
      // The registered fields, each once, in any order; without allowedFields, nothing matches.
      const given = new Set(Array.isArray(fields) ? fields : undefined)
      const registered = options.allowedFields
      if (registered?.length !== given.size || !registered.every((field) => given.has(field))) throw new AllowedFieldsMismatchError()
      return decorator
    }
  }
  // Not enumerable: the URL holds the token, and JSON.stringify or a logger must not print it.
  Object.defineProperty(decorator, 'webhookUrl', { get: runs.webhookUrl, enumerable: false })
  fastify.decorate('langgraphWebhooks', decorator)
  fastify.addHook('onReady', async () => { runs.start(receiver.receive) })
}

export const fastifyLanggraphWebhooks: FastifyPluginAsync<LanggraphWebhooksOptions> = fp(langgraphWebhooksPlugin, { fastify: '5.x', name: 'fastify-langgraph-webhooks' })
export default fastifyLanggraphWebhooks

export * from './schemas.js'
export * from './errors.js'
export { createTokenVerifier, type TokenVerifier, type TokenSource } from './token.js'
export { maskTokenInUrl, serializeRequest } from './redact.js'
export { createMemoryDedupeStore, type DedupeStore, type MemoryDedupeStoreOptions, type ReserveResult } from './dedupe/memory.js'
export type { RunContext, RunListener, OnRun, Unsubscribe } from './listeners.js'
export type { LanggraphWebhooksOptions, DedupeOptions, LanggraphOptions, OpenApiOptions, QueueOptions, RedisClientLike } from './options.js'
export { openApiSecuritySchemes } from './openapi.js'
export type { StandardSchemaV1, TypeBoxSchema, ValuesOf, ValuesSchema } from './values-schema.js'
export type { LanggraphRuns } from './runs/index.js'
export type { LanggraphClient, LanggraphRun, LanggraphStreamChunk, RunPayload } from './runs/reconcile.js'
export type { WaitForRunOptions } from './runs/waiters.js'
export type { RunQueue, FailedRun, QueueCounts, RetryFailedOptions, DeadLetterListener } from './queue/queue.js'
