import type { DedupeGuard, Reservation } from '../dedupe/guard.js'
import type { ListenerRunner } from './runner.js'
import type { Delivery, DeliveryStep, Outcome } from './step.js'

/**
 * Runs the listeners in this process, guarded by dedupe: with `ack:
 * 'handled'` the reply waits for them, with `ack: 'received'` it does not.
 * Without dedupe, synchronous listeners are answered synchronously.
 */
export function createLocalStep (guard: DedupeGuard | undefined, runner: ListenerRunner, ack: 'handled' | 'received'): DeliveryStep {
  function acknowledge (settled: Promise<void> | undefined, delivery: Delivery): Outcome | Promise<Outcome> {
    if (ack === 'received') {
      if (settled !== undefined) runner.background(settled, delivery)
      return 'received'
    }
    if (settled === undefined) return 'delivered'
    return runner.await(settled, delivery).then(() => 'delivered')
  }

  if (guard === undefined) return (delivery) => acknowledge(runner.start(delivery), delivery)
  function guarded (reservation: Reservation | 'duplicate', delivery: Delivery): Outcome | Promise<Outcome> {
    if (reservation === 'duplicate') {
      delivery.log.info('duplicate run webhook acknowledged without running listeners')
      return 'duplicate'
    }
    return acknowledge(runner.start(delivery, (error) => error === undefined ? reservation.complete() : reservation.release()), delivery)
  }
  return function deliverGuarded (delivery) {
    const reservation = guard(delivery)
    return reservation instanceof Promise ? reservation.then((reserved) => guarded(reserved, delivery)) : guarded(reservation, delivery)
  }
}
