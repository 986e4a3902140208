import { randomBytes } from 'node:crypto'
import { DedupeStoreError, DeliveryInFlightError } from '../errors.js'
import type { Delivery } from '../delivery/step.js'
import type { DedupeStore, ReserveResult } from './store.js'

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

/** The key of a delivery: one per run and status, so each terminal status is handled once. */
export function runKey (run: { run_id: string, status: string }): string {
  return `${run.run_id}:${run.status}`
}

/** Without dedupe there is nothing to guard: every delivery runs the listeners. */
export function createDedupeGuard (dedupe: GuardOptions | undefined): DedupeGuard | undefined {
  if (dedupe === undefined) return undefined
  const { store, ttlMs, leaseMs } = dedupe

  return function guard (delivery) {
    const key = runKey(delivery.run)
    const owner = `${OWNER_PREFIX}.${++owners}`
    const failed = (error: unknown): never => {
      delivery.log.error({ err: error }, 'dedupe store failed to reserve a run webhook')
      throw new DedupeStoreError({ cause: error })
    }
    const answer = (reserved: ReserveResult): Reservation | 'duplicate' => {
      if (reserved === 'done') return 'duplicate'
      if (reserved === 'in-flight') throw new DeliveryInFlightError()
      return {
        // The listeners did run: acknowledging beats a retry that runs them twice.
        complete: () => quietly(() => store.complete(key, ttlMs), (error) => {
          delivery.log.error({ err: error, key }, 'dedupe store failed to complete a run webhook')
        }),
        // The lease expires by itself; a retry after it runs the listeners again.
        release: () => quietly(() => store.release(key, owner), (error) => {
          delivery.log.error({ err: error, key }, 'dedupe store failed to release a run webhook')
        })
      }
    }
    let reserved
    try {
      reserved = store.reserve(key, leaseMs, owner)
    } catch (error) {
      return failed(error)
    }
    if (typeof reserved === 'string') return answer(reserved)
    return Promise.resolve(reserved).then(answer, failed)
  }
}

/** Calls a store method; its failure goes to `failed`, never to the caller. `undefined` when the store answered at once. */
function quietly (call: () => void | Promise<void>, failed: (error: unknown) => void): Promise<void> | undefined {
  let answered
  try {
    answered = call()
  } catch (error) {
    failed(error)
    return undefined
  }
  return answered === undefined ? undefined : Promise.resolve(answered).then(undefined, failed)
}
