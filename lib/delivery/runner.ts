import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import { ListenerError, ListenerTimeoutError } from '../errors.js'
import type { RunContext, RunListeners } from '../listeners.js'
import type { Delivery } from './step.js'

class DeliveryContext implements RunContext {
  readonly #delivery: Delivery
  readonly attempt = 1

  constructor (delivery: Delivery) {
    this.#delivery = delivery
  }

  get request (): FastifyRequest | undefined { return this.#delivery.request }
  get log (): FastifyBaseLogger { return this.#delivery.log }
  get reconciled (): boolean { return this.#delivery.reconciled }
}

/**
 * Runs a delivery's listeners in this process: under the listener timeout
 * when the reply waits for them, in the background otherwise; `close`
 * waits for every run still going.
 */
export class ListenerRunner {
  readonly #listeners: Pick<RunListeners, 'receive'>
  readonly #timeoutMs: number
  /** Listener runs not settled yet, and what `close` waits on until there are none. */
  #running = 0
  #idle: { promise: Promise<void>, resolve: () => void } | undefined
  /**
   * Deliveries whose reply waits, in order of their deadline (one timeout
   * for all, so insertion order is deadline order), under one timer: a timer
   * a delivery would cost more than the listeners of most.
   */
  readonly #deadlines = new Map<object, { at: number, expire: () => void }>()
  #timer: NodeJS.Timeout | undefined

  constructor (listeners: Pick<RunListeners, 'receive'>, timeoutMs: number) {
    this.#listeners = listeners
    this.#timeoutMs = timeoutMs
  }

  /**
   * Starts the listeners; `after` runs once they settled (dedupe's complete
   * or release) and never rejects. Returns `undefined` when the listeners
   * returned synchronously and succeeded and `after` answered at once:
   * nothing is left to run. Otherwise the work is tracked until it settles.
   */
  start (delivery: Delivery, after?: (error: unknown) => Promise<void> | undefined): Promise<void> | undefined {
    const received = this.#listeners.receive(delivery.run, new DeliveryContext(delivery))
    if (received === undefined) {
      const completed = after?.(undefined)
      if (completed === undefined) return undefined
      this.#running++
      return completed.then(this.#done, this.#failed)
    }
    this.#running++
    if (after === undefined) return received.then(this.#done, this.#failed)
    return received.then(
      async () => {
        try {
          await after(undefined)
        } finally {
          this.#settled()
        }
      },
      async (error: unknown) => {
        try {
          await after(error)
        } finally {
          this.#settled()
        }
        throw error
      }
    )
  }

  /** Waits for started listeners up to the timeout; throws the error to reply with. */
  async await (settled: Promise<void>, delivery: Delivery): Promise<void> {
    const key = {}
    try {
      await new Promise<void>((resolve, reject) => {
        this.#watch(key, () => reject(new ListenerTimeoutError()))
        settled.then(resolve, reject)
      })
    } catch (error) {
      if (error instanceof ListenerTimeoutError) {
        delivery.log.error({ timeoutMs: this.#timeoutMs }, 'run webhook listeners did not settle in time; they go on, and the sender is asked to retry')
        // Nothing awaits them any more: a later failure would go unseen.
        this.background(settled, delivery, 'run webhook listeners failed after the delivery timed out')
        throw error
      }
      delivery.log.error({ err: error }, 'run webhook listeners failed')
      throw new ListenerError({ cause: error })
    } finally {
      this.#deadlines.delete(key)
      if (this.#deadlines.size === 0) {
        clearTimeout(this.#timer)
        this.#timer = undefined
      }
    }
  }

  #watch (key: object, expire: () => void): void {
    this.#deadlines.set(key, { at: Date.now() + this.#timeoutMs, expire })
    this.#timer ??= setTimeout(() => this.#expire(), this.#timeoutMs)
  }

  #expire (): void {
    this.#timer = undefined
    const now = Date.now()
    for (const [key, { at, expire }] of this.#deadlines) {
      if (at > now) {
        this.#timer = setTimeout(() => this.#expire(), at - now)
        return
      }
      this.#deadlines.delete(key)
      expire()
    }
  }

  #settled (): void {
    if (--this.#running === 0) this.#idle?.resolve()
  }

  readonly #done = (): void => { this.#settled() }
  readonly #failed = (error: unknown): never => {
    this.#settled()
    throw error
  }

  /** Lets started listeners go on without a reply waiting; their failure is logged. */
  background (settled: Promise<void>, delivery: Delivery, message = 'run webhook listeners failed after the delivery was acknowledged'): void {
    settled.catch((error: unknown) => { delivery.log.error({ err: error }, message) })
  }

  /** Waits for every listener run still going (`ack: 'received'`, or past its timeout), and stops the timer. */
  async close (): Promise<void> {
    if (this.#running > 0) {
      let resolve!: () => void
      const promise = new Promise<void>((_resolve) => { resolve = _resolve })
      this.#idle = { promise, resolve }
      await promise
      this.#idle = undefined
    }
    clearTimeout(this.#timer)
    this.#timer = undefined
  }
}
