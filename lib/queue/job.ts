import { describeError } from '../errors.js'
import type { RunWebhook } from '../schemas.js'
import { encodeKeyPart } from '../redis.js'

/** What a job holds: the run as listeners see it (token masked), never the token. */
export interface RunJobData {
  /** The run; only its top-level scalar fields when `json` holds it. */
  run: RunWebhook<unknown>
  /** The run, serialized here when it nests too deep for JSON.stringify (which BullMQ uses). */
  json?: string
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

/** The run a job holds, as it was delivered. */
export function runOf (data: RunJobData): RunWebhook<unknown> {
  return data.json === undefined ? data.run : JSON.parse(data.json)
}

/**
 * The job data of a run that JSON.stringify cannot serialize (too deep for
 * its recursion): the run as a string made without recursion, beside its
 * scalar fields for what reads the job without parsing it (telemetry, logs).
 */
export function serializedJobData (data: RunJobData): RunJobData {
  const scalars: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(data.run)) {
    if (value === null || typeof value !== 'object') scalars[key] = value
  }
  return { ...data, run: scalars as unknown as RunWebhook<unknown>, json: stringifyIteratively(data.run) }
}

interface Frame {
  readonly value: Record<string, unknown> | unknown[]
  readonly keys: string[] | undefined
  index: number
  written: number
}

/**
 * JSON.stringify for JSON data (what JSON.parse gives) of any depth: an
 * explicit stack instead of recursion, so nesting cannot overflow the call stack.
 */
export function stringifyIteratively (root: unknown): string {
  const out: string[] = []
  const stack: Frame[] = []
  let value = root
  for (;;) {
    if (value !== null && typeof value === 'object') {
      const array = Array.isArray(value)
      out.push(array ? '[' : '{')
      stack.push({ value: value as Frame['value'], keys: array ? undefined : Object.keys(value), index: 0, written: 0 })
    } else {
      out.push(JSON.stringify(value) ?? 'null')
    }
    const next = nextValue(stack, out)
    if (next === stack) return out.join('')
    value = next
  }
}

/** The next value to write, with its separator and key written; the stack itself when all is written. */
function nextValue (stack: Frame[], out: string[]): unknown {
  while (stack.length > 0) {
    const frame = stack[stack.length - 1]
    const { value, keys } = frame
    if (keys === undefined) {
      const items = value as unknown[]
      if (frame.index < items.length) {
        if (frame.index > 0) out.push(',')
        return items[frame.index++]
      }
    } else {
      while (frame.index < keys.length) {
        const key = keys[frame.index++]
        const item = (value as Record<string, unknown>)[key]
        // Skipped as JSON.stringify skips them.
        if (item === undefined || typeof item === 'function') continue
        out.push(frame.written++ > 0 ? ',' : '', JSON.stringify(key), ':')
        return item
      }
    }
    out.push(keys === undefined ? ']' : '}')
    stack.pop()
  }
  return stack
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
