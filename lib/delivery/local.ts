import type { DedupeGuard } from '../dedupe/guard.js'
import type { ListenerRunner } from './runner.js'
import type { DeliveryStep } from './step.js'

/**
 * Runs the listeners in this process, guarded by dedupe: with `ack:
 * 'handled'` the reply waits for them, with `ack: 'received'` it does not.
 */
export function createLocalStep (guard: DedupeGuard | undefined, runner: ListenerRunner, ack: 'handled' | 'received'): DeliveryStep {
  return async function deliverHere (delivery) {
    const reservation = guard === undefined ? undefined : await guard(delivery)
    if (reservation === 'duplicate') {
      delivery.log.info('duplicate run webhook acknowledged without running listeners')
      return 'duplicate'
    }
    const settled = runner.start(delivery, reservation === undefined
      ? undefined
      : (error) => error === undefined ? reservation.complete() : reservation.release())
    if (ack === 'received') {
      runner.background(settled, delivery)
      return 'received'
    }
    await runner.await(settled, delivery)
    return 'delivered'
  }
}
