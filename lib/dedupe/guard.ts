import { randomBytes } from 'node:crypto'
import { DedupeStoreError, DeliveryInFlightError } from '../errors.js'
import type { Delivery } from '../delivery/step.js'
import type { DedupeStore } from './store.js'

/** The right to run a delivery's listeners, to be completed or released once they settle. */
export interface Reservation {
  /** The listeners succeeded: duplicates are acknowledged without running them. */
  complete(): Promise<void>
  /** The listeners failed: a retry runs them again. */
  release(): Promise<void>
}

/** Reserves a delivery's key, or says it was handled already; throws the 503 errors. */
export type DedupeGuard = (delivery: Delivery) => Promise<Reservation | 'duplicate'>

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

  return async function guard (delivery) {
    const key = runKey(delivery.run)
    const owner = `${OWNER_PREFIX}.${++owners}`
    let reserved
    try {
      reserved = await store.reserve(key, leaseMs, owner)
    } catch (error) {
      delivery.log.error({ err: error }, 'dedupe store failed to reserve a run webhook')
      throw new DedupeStoreError({ cause: error })
    }
    if (reserved === 'done') return 'duplicate'
    if (reserved === 'in-flight') throw new DeliveryInFlightError()
    return {
      async complete () {
        try {
          await store.complete(key, ttlMs)
        } catch (error) {
          // The listeners did run: acknowledging beats a retry that runs them twice.
          delivery.log.error({ err: error, key }, 'dedupe store failed to complete a run webhook')
        }
      },
      async release () {
        try {
          await store.release(key, owner)
        } catch (error) {
          // The lease expires by itself; a retry after it runs the listeners again.
          delivery.log.error({ err: error, key }, 'dedupe store failed to release a run webhook')
        }
      }
    }
  }
}
