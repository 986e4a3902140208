import { ValueType, type Histogram, type Meter, type ObservableCallback } from '@opentelemetry/api'
import { RUN_STATUSES } from '../schemas.js'

/** Span, metric and attribute names; docs/observability.md describes each. */
export const TELEMETRY_NAMES = {
  receiveSpan: 'langgraph.webhook.receive',
  deliverSpan: 'langgraph.run.deliver',
  processSpan: 'langgraph.webhook.process',
  deliveries: 'langgraph.webhook.deliveries',
  listenerDuration: 'langgraph.webhook.listener.duration',
  deliveryLag: 'langgraph.webhook.delivery.lag',
  runDuration: 'langgraph.run.duration',
  queueJobs: 'langgraph.webhook.queue.jobs',
  deadLetters: 'langgraph.webhook.queue.dead_letters'
} as const

/** The attribute of a delivery's run status, bounded in metrics. */
export const STATUS = 'langgraph.run.status'

// Seconds: from a fast listener to a run that took an hour.
const SHORT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 25]
const LONG_BUCKETS = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600]

export type Instruments = ReturnType<typeof createInstruments>

export function createInstruments (meter: Meter) {
  const histogram = (name: string, description: string, buckets: number[]): Histogram =>
    meter.createHistogram(name, { description, unit: 's', advice: { explicitBucketBoundaries: buckets } })
  return {
    deliveries: meter.createCounter(TELEMETRY_NAMES.deliveries, { description: 'Requests to the webhook route, by outcome and run status', unit: '{delivery}', valueType: ValueType.INT }),
    listenerDuration: histogram(TELEMETRY_NAMES.listenerDuration, "How long a delivery's matching listeners took to settle (they run concurrently)", SHORT_BUCKETS),
    deliveryLag: histogram(TELEMETRY_NAMES.deliveryLag, 'From webhook_sent_at to the delivery reaching the plugin', SHORT_BUCKETS),
    runDuration: histogram(TELEMETRY_NAMES.runDuration, 'From run_started_at to run_ended_at of a delivered run', LONG_BUCKETS)
  }
}

/** What the sender was told, by error code; the status code decides for the others. */
export const OUTCOME_OF_CODE: ReadonlyMap<string | undefined, string> = new Map([
  ['UNAUTHORIZED', 'unauthorized'], ['INVALID_RUN', 'invalid'], ['STALE_DELIVERY', 'stale'], ['UNSUPPORTED_ENCODING', 'unsupported'],
  ['UNSUPPORTED_MEDIA_TYPE', 'unsupported'], ['METHOD_NOT_ALLOWED', 'method_not_allowed'], ['LISTENER_FAILED', 'listener_failed'],
  ['LISTENER_TIMEOUT', 'timed_out'], ['IN_FLIGHT', 'in_flight'], ['DEDUPE_UNAVAILABLE', 'store_unavailable'],
  ['QUEUE_UNAVAILABLE', 'queue_unavailable'], ['SHUTTING_DOWN', 'shutting_down']
].map(([code, outcome]): [string, string] => [`FST_LANGGRAPH_WEBHOOKS_${code}`, outcome]).concat([['FST_ERR_CTP_INVALID_MEDIA_TYPE', 'unsupported'], ['FST_ERR_CTP_BODY_TOO_LARGE', 'too_large']]))
const OUTCOME_OF_STATUS: Readonly<Record<number, string>> = { 400: 'invalid', 401: 'unauthorized', 405: 'method_not_allowed', 413: 'too_large', 415: 'unsupported' }

export function outcomeOf (statusCode: number | undefined, code: string | undefined): string {
  const outcome = OUTCOME_OF_CODE.get(code)
  if (outcome !== undefined) return outcome
  // Neither a reply nor an error: the sender hung up first.
  if (statusCode === undefined) return 'aborted'
  return OUTCOME_OF_STATUS[statusCode] ?? (statusCode >= 500 ? 'error' : 'refused')
}

// A status outside the known ones is counted as `other`: metric attributes stay bounded.
const KNOWN_STATUSES: ReadonlySet<unknown> = new Set(RUN_STATUSES)
export const boundedStatus = (status: unknown): string | undefined => typeof status !== 'string' ? undefined : KNOWN_STATUSES.has(status) ? status : 'other'

/** Seconds between two instants in milliseconds; a sender's clock ahead of ours counts as 0. */
export const seconds = (fromMs: number, toMs: number): number | undefined => Number.isFinite(toMs - fromMs) ? Math.max(0, (toMs - fromMs) / 1000) : undefined

/** Observable gauges of a queue's jobs by state, one series per queue; returns the function that stops them. */
export function observeQueue (meter: Meter, name: string, counts: () => Promise<Record<string, number>>): () => void {
  const gauge = meter.createObservableGauge(TELEMETRY_NAMES.queueJobs, { description: 'Jobs in the run webhook queue, by state', unit: '{job}', valueType: ValueType.INT })
  const observe: ObservableCallback = async (result) => {
    // Redis unreachable: no new observation (the 503s and the logs say why).
    const current = await counts().catch(() => ({}))
    for (const [state, count] of Object.entries(current)) result.observe(count, { 'messaging.destination.name': name, 'langgraph.webhook.queue.state': state })
  }
  gauge.addCallback(observe)
  return () => { gauge.removeCallback(observe) }
}

/** Counts a run that exhausted its attempts, by queue and status. */
export function countDeadLetter (meter: Meter, name: string, status: unknown): void {
  meter.createCounter(TELEMETRY_NAMES.deadLetters, { description: 'Runs that exhausted their attempts (the failed set)', unit: '{run}', valueType: ValueType.INT })
    .add(1, { 'messaging.destination.name': name, [STATUS]: boundedStatus(status) })
}
