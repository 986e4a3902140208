import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import type { RunWebhook } from '../schemas.js'
import type { Delivery } from './step.js'

/** A delivery whose bound logger is made on first use: most listeners never log, and a child logger is not free. */
export class RunDelivery implements Delivery {
  readonly run: RunWebhook<unknown>
  readonly request: FastifyRequest | undefined
  readonly reconciled: boolean
  readonly #parent: FastifyBaseLogger
  #log: FastifyBaseLogger | undefined

  constructor (run: RunWebhook<unknown>, parent: FastifyBaseLogger, request?: FastifyRequest, reconciled = false) {
    this.run = run
    this.request = request
    this.reconciled = reconciled
    this.#parent = parent
  }

  get log (): FastifyBaseLogger {
    this.#log ??= this.#parent.child({ run_id: this.run.run_id, thread_id: this.run.thread_id, status: this.run.status })
    return this.#log
  }
}
