import { describeError } from '../errors.js'
import type { RunWebhook } from '../schemas.js'
import { encodeKeyPart } from '../redis-keys.js'

/** What a job holds: the run as listeners see it (token masked), never the token. */
export interface RunJobData {
  run: RunWebhook<unknown>
  reconciled: boolean
  /** The delivery's trace context, for a worker span linked to it (set by telemetry when enabled). */
  trace?: Record<string, string>
}

/**
 * The job id of a run: one per run and status, so that a duplicate is a
 * no-op while the job is kept. Both parts are encoded (no ':', which BullMQ
 * refuses, nor '.'), so the id is unambiguous and, holding a '.', never
 * looks like an integer (which BullMQ refuses too).
 */
export function jobIdOf (runId: string, status: string): string {
  return `${encodeKeyPart(runId)}.${encodeKeyPart(status)}`
}

/**
 * The error a failed attempt leaves in BullMQ's failed set: what the
 * listeners threw, not only how many failed.
 */
export function describeFailure (error: AggregateError): Error {
  const described = new Error(`${error.message}: ${error.errors.map(messageOf).join('; ')}`)
  described.stack = `${described.message}\n${error.errors.map(stackOf).join('\n')}`
  return described
}

function messageOf (error: unknown): string {
  return describeError(error).message
}

function stackOf (error: unknown): string {
  return String(describeError(error).stack)
}
