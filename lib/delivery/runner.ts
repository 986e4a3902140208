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
  readonly #running = new Set<Promise<void>>()

  constructor (listeners: Pick<RunListeners, 'receive'>, timeoutMs: number) {
    this.#listeners = listeners
    this.#timeoutMs = timeoutMs
  }

  /** Starts the listeners; `after` runs once they settled (dedupe's complete or release), inside the tracked work. */
  start (delivery: Delivery, after: (error: unknown) => Promise<void>): Promise<void> {
    const settled = this.#listeners.receive(delivery.run, new DeliveryContext(delivery)).then(
      () => after(undefined),
      async (error: unknown) => {
        await after(error)
        throw error
      }
    )
    const tracked = settled.then(noop, noop)
    this.#running.add(tracked)
    tracked.then(() => this.#running.delete(tracked), noop)
    return settled
  }

  /** Waits for started listeners up to the timeout; throws the error to reply with. */
  async await (settled: Promise<void>, delivery: Delivery): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(resolve, this.#timeoutMs, 'timeout')
    })
    try {
      if (await Promise.race([settled, timedOut]) === 'timeout') {
        delivery.log.error({ timeoutMs: this.#timeoutMs }, 'run webhook listeners did not settle in time; they go on, and the sender is asked to retry')
        // Nothing awaits them any more: a later failure would go unseen.
        this.background(settled, delivery, 'run webhook listeners failed after the delivery timed out')
        throw new ListenerTimeoutError()
      }
    } catch (error) {
      if (error instanceof ListenerTimeoutError) throw error
      delivery.log.error({ err: error }, 'run webhook listeners failed')
      throw new ListenerError({ cause: error })
    } finally {
      clearTimeout(timer)
    }
  }

  /** Lets started listeners go on without a reply waiting; their failure is logged. */
  background (settled: Promise<void>, delivery: Delivery, message = 'run webhook listeners failed after the delivery was acknowledged'): void {
    settled.catch((error: unknown) => { delivery.log.error({ err: error }, message) })
  }

  /** Waits for every listener run still going (`ack: 'received'`, or past its timeout). */
  async close (): Promise<void> {
    while (this.#running.size > 0) await Promise.allSettled(this.#running)
  }
}

function noop (): void {}
