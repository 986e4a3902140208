import { randomBytes } from 'node:crypto'
import { DedupeStoreError, DeliveryInFlightError } from '../errors.js'
import type { Delivery } from '../delivery/step.js'
import type { DedupeStore, ReserveResult } from './store.js'
import { encodeKeyPart } from '../redis.js'

/** The right to run a delivery's listeners, to be completed or released once they settle. */
export interface Reservation {
  /** The listeners succeeded: duplicates are acknowledged without running them. Never rejects; `undefined` when the store answered at once. */
  complete(): Promise<void> | undefined
  /** The listeners failed: a retry runs them again. Never rejects; `undefined` when the store answered at once. */
  release(): Promise<void> | undefined
}

/**
 * Reserves a delivery's key, or says it was handled already; throws the 503
 * errors. A synchronous store (the in-memory one) is answered without a promise.
 */
export type DedupeGuard = (delivery: Delivery) => Reservation | 'duplicate' | Promise<Reservation | 'duplicate'>

export interface GuardOptions {
  store: DedupeStore
  ttlMs: number
  leaseMs: number
}

/**
 * Owners of reservations: a random prefix for this process and a counter,
 * unique across instances, so that a store's release only drops the
 * releasing delivery's own reservation.
 */
const OWNER_PREFIX = randomBytes(9).toString('base64url')
let owners = 0

/**
 * The key of a delivery: one per run and status, so each terminal status is
 * handled once; both are encoded, so no two runs and statuses share a key.
 */
export function runKey (run: { run_id: string, status: string }): string {
  return `${encodeKeyPart(run.run_id)}:${encodeKeyPart(run.status)}`
}

/** Without dedupe there is nothing to guard: every delivery runs the listeners. */
export function createDedupeGuard (dedupe: GuardOptions | undefined): DedupeGuard | undefined {
  if (dedupe === undefined) return undefined
  const { store, ttlMs, leaseMs } = dedupe

  // No closure is made per delivery on the synchronous path: a closure a
  // delivery is not free (and costs more under tsx, which names each one).
  return function guard (delivery) {
    const reservation = new StoreReservation(store, delivery, ttlMs)
    let reserved
    try {
      reserved = store.reserve(reservation.key, leaseMs, reservation.owner)
    } catch (error) {
      throw reserveFailed(error, delivery)
    }
    if (typeof reserved === 'string') return reservation.answer(reserved)
    return Promise.resolve(reserved).then(
      (result) => reservation.answer(result),
      (error: unknown) => { throw reserveFailed(error, delivery) }
    )
  }
}

function reserveFailed (error: unknown, delivery: Delivery): Error {
  delivery.log.error({ err: error }, 'dedupe store failed to reserve a run webhook')
  return new DedupeStoreError({ cause: error })
}

/** A delivery's key in the store; `complete` and `release` never reject, and answer `undefined` when the store did at once. */
class StoreReservation implements Reservation {
  readonly key: string
  readonly owner = `${OWNER_PREFIX}.${++owners}`
  readonly #store: DedupeStore
  readonly #delivery: Delivery
  readonly #ttlMs: number

  constructor (store: DedupeStore, delivery: Delivery, ttlMs: number) {
    this.key = runKey(delivery.run)
    this.#store = store
    this.#delivery = delivery
    this.#ttlMs = ttlMs
  }

  answer (reserved: ReserveResult): Reservation | 'duplicate' {
    if (reserved === 'done') return 'duplicate'
    if (reserved === 'in-flight') throw new DeliveryInFlightError()
    return this
  }

  complete (): Promise<void> | undefined {
    try {
      return this.#settled(this.#store.complete(this.key, this.#ttlMs), 'complete')
    } catch (error) {
      return this.#failed(error, 'complete')
    }
  }

  release (): Promise<void> | undefined {
    try {
      return this.#settled(this.#store.release(this.key, this.owner), 'release')
    } catch (error) {
      return this.#failed(error, 'release')
    }
  }

  #settled (answered: void | Promise<void>, step: 'complete' | 'release'): Promise<void> | undefined {
    if (answered === undefined) return undefined
    return Promise.resolve(answered).then(undefined, (error: unknown) => { this.#failed(error, step) })
  }

  // complete: the listeners did run, and acknowledging beats a retry that
  // runs them twice. release: the lease expires by itself, and a retry after
  // it runs the listeners again. Either way the delivery's reply stands.
  #failed (error: unknown, step: 'complete' | 'release'): undefined {
    this.#delivery.log.error({ err: error, key: this.key }, `dedupe store failed to ${step} a run webhook`)
    return undefined
  }
}
