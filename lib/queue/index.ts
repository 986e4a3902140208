/**
 * `fastify-langgraph-webhooks/queue`: worker processes without HTTP. They
 * take the runs that the plugin's route stored (option `queue`) and run the
 * listeners subscribed here, with the same `onRun` as the plugin's.
 */
import * as bullmq from 'bullmq'
import * as ioredis from 'ioredis'
import { pino } from 'pino'
import { RunListeners, type OnRun, type Unsubscribe } from '../listeners.js'
import { createTelemetry } from '../telemetry.js'
import { createValuesValidator, type ValuesOf, type ValuesSchema } from '../values-schema.js'
import { resolveWorkerOptions, type RunWorkerOptions } from '../options.js'
import { RedisClients } from '../redis.js'
import { startRunWorker, type DeadLetterListener } from './queue.js'

export interface RunWorker<Values = Record<string, unknown>> {
  /** Subscribes a listener, as `app.langgraphWebhooks.onRun` does; returns the unsubscribe function. */
  onRun: OnRun<Values>
  /** Calls `listener` once for each run whose last attempt fails in this worker; returns the unsubscribe function. */
  onDeadLetter(listener: DeadLetterListener): Unsubscribe
  /** Stops taking runs, lets running listeners finish (up to `lockMs`), and closes the connections it made. */
  close(): Promise<void>
  /** The BullMQ worker, for its events (`worker.bullmq.on('completed', …)`). */
  readonly bullmq: bullmq.Worker
}

/**
 * A worker for runs the plugin queued. It starts taking runs once the
 * current code has run to its end (a `setImmediate`), so subscribe the
 * listeners right after creating it, before awaiting anything.
 */
export function createRunWorker<Schema extends ValuesSchema> (options: RunWorkerOptions<Schema> & { valuesSchema: Schema }): RunWorker<ValuesOf<Schema>>
/** A worker whose listeners' values are typed `Values`, unchecked (give `valuesSchema` instead for checked types). */
export function createRunWorker<Values = Record<string, unknown>> (options: RunWorkerOptions): RunWorker<Values>
export function createRunWorker (options: RunWorkerOptions<ValuesSchema | undefined>): RunWorker<unknown> {
  const resolved = resolveWorkerOptions(options)
  const listeners = new RunListeners()
  if (resolved.onRun !== undefined) listeners.on(resolved.onRun)
  const clients = new RedisClients(resolved.connection, ioredis)
  // Awaited by each run: a TypeBox 1.x schema without `typebox` installed fails each run with the reason, not the process.
  const values = resolved.valuesSchema === undefined ? Promise.resolve(undefined) : createValuesValidator(resolved.valuesSchema)
  values.catch(() => {})
  const handle = startRunWorker(bullmq, clients, resolved, listeners, resolved.logger ?? pino(), createTelemetry(), values)
  const starting = setImmediate(() => handle.start())
  return {
    onRun: ((statusOrListener: unknown, listener?: unknown) => listeners.on(statusOrListener, listener)) as OnRun<any>,
    onDeadLetter: handle.onDeadLetter,
    bullmq: handle.worker as bullmq.Worker,
    async close () {
      clearImmediate(starting)
      await clients.close(await handle.close())
    }
  }
}

export { jobIdOf } from '../redis.js'
export type { DeadLetterListener, FailedRun, QueueCounts, RetryFailedOptions, RunJobData, RunQueue } from './queue.js'
export type { QueueOptions, RedisClientLike, RunWorkerOptions } from '../options.js'
