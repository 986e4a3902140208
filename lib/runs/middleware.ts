import { randomBytes } from 'node:crypto'
import { RunTrackerError } from '../errors.js'
import type { Delivery, DeliveryMiddleware, DeliveryStep } from '../delivery/step.js'
import { bodyLengthOf } from '../route.js'
import type { RunTracker } from './tracker.js'
import type { RunWaiters } from './waiters.js'

const OWNER_PREFIX = randomBytes(9).toString('base64url')
let owners = 0

/**
 * Wraps the next step: every delivery resolves its waiters here as it
 * enters, and those of other instances once accepted (with `queued`, once
 * its job is stored); with tracking, a run reaches the listeners through
 * one path only (its webhook, or its reconciliation), and a handled
 * delivery ends its tracking.
 */
export function trackRuns (waiters: RunWaiters, tracker: RunTracker | undefined, queued = false): DeliveryMiddleware {
  return (step) => {
    const next = queued ? publishStored(waiters, step) : step
    return tracker === undefined
      ? function resolveWaiters (delivery) {
        arrived(waiters, delivery, queued)
        return next(delivery)
      }
      : trackRun(waiters, tracker, queued, next)
  }
}

/** The queue's step, telling other instances about the runs it stored. */
function publishStored (waiters: RunWaiters, store: DeliveryStep): DeliveryStep {
  return async function publishStoredRun (delivery) {
    const outcome = await store(delivery)
    waiters.publish(delivery.run)
    return outcome
  }
}

function trackRun (waiters: RunWaiters, tracker: RunTracker, queued: boolean, next: DeliveryStep): DeliveryStep {
  return async function trackRun (delivery) {
    arrived(waiters, delivery, queued)

    const runId = delivery.run.run_id
    const path = delivery.reconciled ? 'reconcile' : 'webhook'
    const owner = `${OWNER_PREFIX}.${++owners}`
    let claim
    try {
      claim = await tracker.claim(runId, path, owner)
    } catch (error) {
      delivery.log.error({ err: error }, 'the store of tracked runs failed to claim a run')
      throw new RunTrackerError({ cause: error })
    }
    if (claim === 'refused') {
      delivery.log.info(path === 'webhook'
        ? 'run webhook of a run reconciled already, or being reconciled, acknowledged without running listeners'
        : 'reconciled run not delivered: its webhook has it')
      return 'duplicate'
    }
    if (claim === 'passed') return await next(delivery)

    let outcome
    try {
      outcome = await next(delivery)
    } catch (error) {
      await tracker.release(runId, path, owner).catch((cause: unknown) => {
        // The claim expires by itself (Redis); the run is reconciled after it.
        delivery.log.error({ err: cause }, 'the store of tracked runs failed to release a run')
      })
      throw error
    }
    try {
      await tracker.handled(runId, path)
    } catch (error) {
      // The listeners did run; the run may be reconciled again (dedupe then tells).
      delivery.log.error({ err: error }, 'the store of tracked runs failed to mark a run handled')
    }
    return outcome
  }
}

/** Resolves the delivery's waiters; the body's size bounds what waitForRun remembers (a reconciled run is measured). */
function arrived (waiters: RunWaiters, delivery: Delivery, queued: boolean): void {
  const bytes = delivery.request === undefined ? undefined : bodyLengthOf(delivery.request)
  if (queued) waiters.heard(delivery.run, bytes)
  else waiters.arrived(delivery.run, bytes)
}
