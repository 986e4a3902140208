import { randomBytes } from 'node:crypto'
import type { FastifyBaseLogger, FastifyReply, FastifyRequest } from 'fastify'
import {
  DedupeStoreError, DeliveryInFlightError, ListenerError, ListenerTimeoutError, StaleDeliveryError
} from './errors.js'
import type { DedupeStore, ReserveResult } from './dedupe/store.js'
import type { RunContext, RunListeners } from './listeners.js'
import type { ResolvedOptions } from './options.js'
import { redactRun } from './redact.js'
import type { RunWebhook } from './schemas.js'

/** Seconds a sender is asked to wait before retrying a 503. */
export const RETRY_AFTER_SECONDS = 5

type Run = RunWebhook<unknown>

/**
 * Owners of dedupe reservations: a random prefix for this process and a
 * counter, unique across instances, so that a store's release only drops
 * the releasing delivery's own reservation.
 */
const OWNER_PREFIX = randomBytes(9).toString('base64url')
let owners = 0

class ListenerContext implements RunContext {
  readonly request: FastifyRequest
  readonly #run: Run
  #log: FastifyBaseLogger | undefined

  constructor (request: FastifyRequest, run: Run) {
    this.request = request
    this.#run = run
  }

  // Bound lazily: most listeners never log, and a child logger is not free.
  get log (): FastifyBaseLogger {
    this.#log ??= logFor(this.request, this.#run)
    return this.#log
  }
}

function logFor (request: FastifyRequest, run: Run): FastifyBaseLogger {
  return request.log.child({ run_id: run.run_id, thread_id: run.thread_id, status: run.status })
}

/**
 * The `handle` step of a delivery, once the token and the body are known
 * good: redact, check the age, reserve with dedupe, run the listeners,
 * complete or release, reply.
 */
export class Deliveries {
  readonly #listeners: RunListeners
  readonly #options: ResolvedOptions
  readonly #store: DedupeStore | undefined
  readonly #log: FastifyBaseLogger
  /** Listener runs not yet settled; `close` waits for them. */
  readonly #running = new Set<Promise<unknown>>()

  constructor (listeners: RunListeners, options: ResolvedOptions, store: DedupeStore | undefined, log: FastifyBaseLogger) {
    this.#listeners = listeners
    this.#options = options
    this.#store = store
    this.#log = log
  }

  /**
   * Handles a run. Synchronous where it can be: when every listener returns
   * without a promise and the dedupe store (if any) answers synchronously,
   * the reply is sent before this returns `undefined`, and no promise, timer
   * or microtask is spent on the delivery. Otherwise returns a promise that
   * settles once the reply is sent. Errors to reply with are thrown (or
   * rejected) for the route's error handler.
   */
  handle (run: Run, request: FastifyRequest, reply: FastifyReply): Promise<void> | undefined {
    const options = this.#options
    if (options.redactToken) redactRun(run)
    if (options.maxAgeMs !== undefined && !(Math.abs(Date.now() - Date.parse(run.webhook_sent_at)) <= options.maxAgeMs)) {
      throw new StaleDeliveryError()
    }
    if (this.#store === undefined) return this.#deliver(run, request, reply, undefined, '')

    const key = `${run.run_id}:${run.status}`
    const owner = `${OWNER_PREFIX}.${++owners}`
    const reserved = this.#reserve(key, owner, request, reply)
    if (typeof reserved === 'string') return this.#reserved(reserved, run, request, reply, key, owner)
    return reserved.then((result) => this.#reserved(result, run, request, reply, key, owner))
  }

  #reserved (reserved: ReserveResult, run: Run, request: FastifyRequest, reply: FastifyReply, key: string, owner: string): Promise<void> | undefined {
    if (reserved === 'done') {
      request.log.info({ run_id: run.run_id, status: run.status }, 'duplicate run webhook acknowledged without running listeners')
      reply.code(204).send()
      return undefined
    }
    if (reserved === 'in-flight') {
      reply.header('retry-after', String(RETRY_AFTER_SECONDS))
      throw new DeliveryInFlightError()
    }
    return this.#deliver(run, request, reply, key, owner)
  }

  #deliver (run: Run, request: FastifyRequest, reply: FastifyReply, key: string | undefined, owner: string): Promise<void> | undefined {
    const context = new ListenerContext(request, run)
    if (this.#options.ack === 'received') {
      reply.code(202).send()
      const settled = this.#settle(this.#listeners.receive(run, context), key, owner)
      if (settled !== undefined) {
        this.#track(settled.catch((error: unknown) => {
          context.log.error({ err: error }, 'run webhook listeners failed after the delivery was acknowledged')
        }))
      }
      return undefined
    }

    const settled = this.#settle(this.#listeners.receive(run, context), key, owner)
    if (settled === undefined) {
      reply.code(204).send()
      return undefined
    }
    this.#track(settled)
    return this.#withinTimeout(settled, context, reply).then(() => {
      reply.code(204).send()
    })
  }

  /** Waits for every listener run still going (`ack: 'received'`, or past its timeout). */
  async close (): Promise<void> {
    while (this.#running.size > 0) await Promise.allSettled(this.#running)
  }

  /** The store's answer as it comes: a synchronous store's without a promise. */
  #reserve (key: string, owner: string, request: FastifyRequest, reply: FastifyReply): ReserveResult | Promise<ReserveResult> {
    let reserved: ReserveResult | Promise<ReserveResult>
    try {
      reserved = this.#store!.reserve(key, this.#options.dedupe!.leaseMs, owner)
    } catch (error) {
      throw reserveFailed(error, request, reply)
    }
    if (typeof reserved === 'string') return reserved
    return Promise.resolve(reserved).catch((error: unknown) => {
      throw reserveFailed(error, request, reply)
    })
  }

  /**
   * Completes or releases the dedupe key once the listeners settle; passes
   * through `undefined` (every listener returned synchronously and
   * succeeded) so that the common path stays synchronous.
   */
  #settle (outcome: Promise<void> | undefined, key: string | undefined, owner: string): Promise<void> | undefined {
    if (key === undefined) return outcome
    if (outcome === undefined) return this.#complete(key)
    return outcome.then(() => this.#complete(key), async (error: unknown) => {
      await this.#release(key, owner)
      throw error
    })
  }

  /** `undefined` when a synchronous store completed (or failed) at once. */
  #complete (key: string): Promise<void> | undefined {
    let completed: void | Promise<void>
    try {
      completed = this.#store!.complete(key, this.#options.dedupe!.ttlMs)
    } catch (error) {
      // The listeners did run: acknowledging beats a retry that runs them twice.
      this.#storeFailed(error, key, 'complete')
      return undefined
    }
    if (completed === undefined) return undefined
    return Promise.resolve(completed).then(noop, (error: unknown) => {
      this.#storeFailed(error, key, 'complete')
    })
  }

  async #release (key: string, owner: string): Promise<void> {
    try {
      await this.#store!.release(key, owner)
    } catch (error) {
      // The lease expires by itself; a retry after it runs the listeners again.
      this.#storeFailed(error, key, 'release')
    }
  }

  #storeFailed (error: unknown, key: string, step: string): void {
    this.#log.error({ err: error, key }, `dedupe store failed to ${step} a run webhook`)
  }

  #track (running: Promise<unknown>): void {
    const tracked = running.then(noop, noop)
    this.#running.add(tracked)
    tracked.then(() => this.#running.delete(tracked), noop)
  }

  async #withinTimeout (settled: Promise<void>, context: ListenerContext, reply: FastifyReply): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(resolve, this.#options.listenerTimeoutMs, 'timeout')
    })
    try {
      const result = await Promise.race([settled, timedOut])
      if (result === 'timeout') {
        context.log.error({ timeoutMs: this.#options.listenerTimeoutMs }, 'run webhook listeners did not settle in time; they go on, and the sender is asked to retry')
        // Nothing awaits them any more: a later failure would go unseen.
        settled.catch((error: unknown) => {
          context.log.error({ err: error }, 'run webhook listeners failed after the delivery timed out')
        })
        reply.header('retry-after', String(RETRY_AFTER_SECONDS))
        throw new ListenerTimeoutError()
      }
    } catch (error) {
      if (error instanceof ListenerTimeoutError) throw error
      context.log.error({ err: error }, 'run webhook listeners failed')
      throw new ListenerError({ cause: error })
    } finally {
      clearTimeout(timer)
    }
  }
}

function reserveFailed (error: unknown, request: FastifyRequest, reply: FastifyReply): Error {
  request.log.error({ err: error }, 'dedupe store failed to reserve a run webhook')
  reply.header('retry-after', String(RETRY_AFTER_SECONDS))
  return new DedupeStoreError({ cause: error })
}

function noop (): void {}
