import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import {
  DedupeStoreError, DeliveryInFlightError, ListenerError, ListenerTimeoutError, RunTrackerError, StaleDeliveryError
} from './errors.js'
import type { RunContext, RunListeners } from './listeners.js'
import type { ResolvedDedupe, ResolvedOptions } from './options.js'
import { redactRun } from './redact.js'
import { encodeKeyPart, newOwner } from './redis.js'
import type { RunWebhook } from './schemas.js'
import type { DeliveryTrace, Telemetry } from './telemetry.js'
import type { RunValidator } from './schemas.js'
import { checkValues, type ValuesValidator } from './values-schema.js'

/**
 * What became of a delivery that was not refused (a refusal is thrown as one
 * of the plugin's errors, which carries its status code):
 * - `delivered`: the listeners ran and succeeded (204);
 * - `received`: acknowledged first, listeners running (`ack: 'received'`, 202);
 * - `queued`: stored in the queue (202);
 * - `duplicate`: handled already (204), or queued already (202); listeners not run again.
 */
export type Outcome = 'delivered' | 'received' | 'queued' | 'duplicate'

/** Where a run comes from: a webhook request, or the reconciliation loop (`reconciled`). */
export interface Source {
  readonly request?: FastifyRequest
  readonly reconciled?: boolean
  /** The request body's length, when the route read it: it bounds what waitForRun remembers. */
  readonly bytes?: number
}

/** What `receive` asks of run tracking and `waitForRun` (lib/runs). */
export interface RunTracking {
  /** `claimed`: deliver, then `settle`; `refused`: the other path has the run; `passed`: deliver untracked; undefined: no tracking. */
  claim (runId: string, reconciled: boolean, owner: string): Promise<'claimed' | 'refused' | 'passed'> | undefined
  /** The claimed delivery settled: handled (`true`) ends the tracking, otherwise the claim is released. */
  settle (runId: string, reconciled: boolean, owner: string, handled: boolean): Promise<void>
  /** An accepted delivery: waiters here and on other instances resolve. */
  arrived (run: RunWebhook<unknown>, bytes: number | undefined, queued: boolean): void
}

/** Stores a run as a job: `queued`, or `duplicate` when a job of it is stored already. */
export type StoreRun = (run: RunWebhook<unknown>, reconciled: boolean, log: FastifyBaseLogger) => Promise<'queued' | 'duplicate'>

export interface ReceiveParts {
  options: ResolvedOptions
  /** Dedupe, in the store the plugin resolved (a Redis one with the `redis` option). */
  dedupe: ResolvedDedupe | undefined
  validateRun: RunValidator
  validateValues: ValuesValidator | undefined
  /** Timed by telemetry. */
  listeners: Pick<RunListeners, 'dispatch'>
  telemetry: Telemetry
  tracking: RunTracking
  /** With the `queue` option: store the run instead of running the listeners here. */
  store: StoreRun | undefined
  log: FastifyBaseLogger
}

export interface Receiver {
  /**
   * The one delivery path, for a webhook request and a reconciled run alike:
   * validate, mask the token, check the replay window, then store the job
   * (queue) or dedupe and run the listeners with the ack mode.
   */
  receive (body: unknown, source: Source): Promise<Outcome>
  /** Waits for the listeners still running (`ack: 'received'`, or past their timeout). */
  close (): Promise<void>
}

/** A listener's context; its bound logger is made on first use, as most listeners never log. */
class DeliveryContext implements RunContext {
  readonly attempt = 1
  readonly request: FastifyRequest | undefined
  readonly reconciled: boolean
  readonly #run: RunWebhook<unknown>
  readonly #parent: FastifyBaseLogger
  #log: FastifyBaseLogger | undefined

  constructor (run: RunWebhook<unknown>, source: Source, parent: FastifyBaseLogger) {
    this.#run = run
    this.request = source.request
    this.reconciled = source.reconciled === true
    this.#parent = source.request?.log ?? parent
  }

  get log (): FastifyBaseLogger {
    const run = this.#run
    this.#log ??= this.#parent.child({ run_id: run.run_id, thread_id: run.thread_id, status: run.status })
    return this.#log
  }
}

const TIMED_OUT = Symbol('timed out')

export function createReceiver ({ options, dedupe, validateRun, validateValues, listeners, telemetry, tracking, store, log }: ReceiveParts): Receiver {
  const { redactToken, maxAgeMs, ack, listenerTimeoutMs } = options
  // Listener runs not settled yet: close() waits for them.
  const running = new Set<Promise<unknown>>()

  function receive (body: unknown, source: Source): Promise<Outcome> {
    const trace = telemetry.trace(source.request)
    return trace === undefined ? deliver(body, source, undefined) : traced(trace, body, source)
  }

  async function traced (trace: DeliveryTrace, body: unknown, source: Source): Promise<Outcome> {
    let outcome
    try {
      outcome = await telemetry.within(trace, () => deliver(body, source, trace))
    } catch (error) {
      trace.failed(error)
      trace.settled()
      throw error
    }
    trace.settled()
    return outcome
  }

  async function deliver (body: unknown, source: Source, trace: DeliveryTrace | undefined): Promise<Outcome> {
    // A valid run, its values checked, its token masked, inside the replay window; or a 400.
    const invalid = validateRun(body)
    if (invalid !== undefined) throw invalid
    const run = body as RunWebhook<unknown>
    if (validateValues !== undefined && run.values != null) {
      const values = await checkValues(validateValues, run.values)
      // A job keeps the input: the worker applies the schema to what it reads from Redis.
      if (store === undefined) run.values = values
    }
    if (redactToken) redactRun(run)
    if (maxAgeMs !== undefined && !(Math.abs(Date.now() - Date.parse(run.webhook_sent_at)) <= maxAgeMs)) throw new StaleDeliveryError()
    const reconciled = source.reconciled === true
    trace?.run(run, reconciled)
    const context = new DeliveryContext(run, source, log)

    const owner = newOwner()
    const claiming = tracking.claim(run.run_id, reconciled, owner)
    const claim = claiming === undefined ? undefined : await claimed(claiming, context)
    if (claim === 'refused') {
      context.log.info(reconciled
        ? 'reconciled run not delivered: its webhook has it'
        : 'run webhook of a run reconciled already, or being reconciled, acknowledged without running listeners')
      return 'duplicate'
    }
    let outcome: Outcome
    try {
      if (store === undefined) {
        // Waiters resolve on every valid delivery that reaches the listeners' path; with a queue, once Redis has the job.
        tracking.arrived(run, source.bytes, false)
        if (dedupe !== undefined) {
          outcome = await handleOnce(dedupe, run, context, owner, trace)
        } else {
          const listening = listeners.dispatch(run, context)
          // The one synchronous shortcut: listeners that returned no promise are done, so the common case needs no timer and no further promise (bench/README.md).
          outcome = listening === undefined ? (ack === 'received' ? 'received' : 'delivered') : await answer(listening, context, trace)
        }
      } else {
        outcome = await store(run, reconciled, context.log)
        tracking.arrived(run, source.bytes, true)
      }
    } catch (error) {
      if (claim === 'claimed') await tracking.settle(run.run_id, reconciled, owner, false)
      throw error
    }
    if (claim === 'claimed') await tracking.settle(run.run_id, reconciled, owner, true)
    trace?.delivered(outcome, run)
    return outcome
  }

  async function claimed<T> (claiming: Promise<T>, context: DeliveryContext): Promise<T> {
    try {
      return await claiming
    } catch (error) {
      context.log.error({ err: error }, 'the store of tracked runs failed to claim a run')
      throw new RunTrackerError({ cause: error })
    }
  }

  /** Dedupe's key reserved, the listeners run, then the key completed (they succeeded) or released (a retry runs them again). */
  async function handleOnce ({ store: keys, leaseMs, ttlMs }: ResolvedDedupe, run: RunWebhook<unknown>, context: DeliveryContext, owner: string, trace: DeliveryTrace | undefined): Promise<Outcome> {
    const key = `${encodeKeyPart(run.run_id)}:${encodeKeyPart(run.status)}`
    let reserved
    try {
      reserved = await keys.reserve(key, leaseMs, owner)
    } catch (error) {
      context.log.error({ err: error }, 'dedupe store failed to reserve a run webhook')
      throw new DedupeStoreError({ cause: error })
    }
    if (reserved === 'in-flight') throw new DeliveryInFlightError()
    if (reserved === 'done') {
      context.log.info('duplicate run webhook acknowledged without running listeners')
      return 'duplicate'
    }
    // complete: the listeners did run, and acknowledging beats a retry that
    // runs them twice. release: the lease expires by itself. Either way the reply stands.
    const settleKey = async (handled: boolean): Promise<void> => {
      try {
        await (handled ? keys.complete(key, ttlMs) : keys.release(key, owner))
      } catch (error) {
        context.log.error({ err: error, key }, `dedupe store failed to ${handled ? 'complete' : 'release'} a run webhook`)
      }
    }
    const listening = listeners.dispatch(run, context) ?? Promise.resolve()
    return await answer(listening.then(() => settleKey(true), async (error: unknown) => {
      await settleKey(false)
      throw error
    }), context, trace)
  }

  /** Listeners still running: 202 at once (`ack: 'received'`), else 204 once they succeed, 500 if they fail, 503 past the timeout. */
  async function answer (settled: Promise<void>, context: DeliveryContext, trace: DeliveryTrace | undefined): Promise<Outcome> {
    if (ack === 'received') {
      trace?.wait(settled)
      goOn(settled, context, 'run webhook listeners failed after the delivery was acknowledged')
      return 'received'
    }
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<typeof TIMED_OUT>((resolve) => { timer = setTimeout(resolve, listenerTimeoutMs, TIMED_OUT) })
    let result
    try {
      result = await Promise.race([settled, timeout])
    } catch (error) {
      context.log.error({ err: error }, 'run webhook listeners failed')
      throw new ListenerError({ cause: error })
    } finally {
      clearTimeout(timer)
    }
    if (result === TIMED_OUT) {
      context.log.error({ timeoutMs: listenerTimeoutMs }, 'run webhook listeners did not settle in time; they go on, and the sender is asked to retry')
      goOn(settled, context, 'run webhook listeners failed after the delivery timed out')
      trace?.abandon()
      throw new ListenerTimeoutError()
    }
    return 'delivered'
  }

  /** Listeners that go on without a reply waiting for them: close() waits for them, and their failure is logged. */
  function goOn (settled: Promise<void>, context: DeliveryContext, failed: string): void {
    running.add(settled)
    settled.then(() => { running.delete(settled) }, (error: unknown) => {
      running.delete(settled)
      context.log.error({ err: error }, failed)
    })
  }

  return {
    receive,
    async close () {
      while (running.size > 0) await Promise.allSettled(running)
    }
  }
}
