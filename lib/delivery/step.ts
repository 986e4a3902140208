import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import type { RunWebhook } from '../schemas.js'

/**
 * One run on its way to the listeners, from whatever brought it: a webhook
 * request, a reconciliation, or a queue worker. The run is validated and
 * its token masked before any step sees it.
 */
export interface Delivery {
  readonly run: RunWebhook<unknown>
  /** Bound with `run_id`, `thread_id` and `status`. */
  readonly log: FastifyBaseLogger
  /** The webhook request; absent for a reconciled run. */
  readonly request?: FastifyRequest
  /** The run was fetched from the LangGraph server, not received as a webhook. */
  readonly reconciled: boolean
}

/**
 * What became of a delivery that was not refused:
 * - `delivered`: the listeners ran and succeeded (204);
 * - `received`: acknowledged first, listeners running (`ack: 'received'`, 202);
 * - `queued`: stored in the queue (202);
 * - `duplicate`: already handled (204), or already queued (202), listeners not run again.
 * A refusal is thrown as one of the plugin's errors, which carries its status code.
 */
export type Outcome = 'delivered' | 'received' | 'queued' | 'duplicate'

/**
 * A stage of the pipeline. Steps that add a concern wrap the next one. A
 * step answers with the outcome itself when it knows it at once (synchronous
 * listeners, nothing to store), so that the common delivery costs no
 * promise; a step that wraps another passes such an answer through.
 */
export type DeliveryStep = (delivery: Delivery) => Outcome | Promise<Outcome>

/** A step that wraps another: telemetry, tracking of started runs, and so on. */
export type DeliveryMiddleware = (next: DeliveryStep) => DeliveryStep

/**
 * The reply status of an outcome: 204 once handled, 202 while the listeners
 * are still to run. With a queue a duplicate is 202 too: the run it
 * duplicates may still be waiting for a worker.
 */
export function statusCodeOf (outcome: Outcome, queued = false): 202 | 204 {
  if (outcome === 'duplicate') return queued ? 202 : 204
  return outcome === 'delivered' ? 204 : 202
}
