/**
 * `fastify-langgraph-webhooks/queue`: worker processes without HTTP. They
 * take the runs that the plugin's route stored (option `queue`) and run the
 * listeners subscribed here, with the same `onRun` as the plugin's.
 */
import * as bullmq from 'bullmq'
import * as ioredis from 'ioredis'
import { pino } from 'pino'
import { RunListeners, type OnRun, type RunListener } from '../listeners.js'
import { createTelemetry } from '../telemetry.js'
import { createValuesValidator, type ValuesOf, type ValuesSchema, type ValuesValidator } from '../values-schema.js'
import { resolveWorkerOptions, type RunWorkerOptions } from '../options.js'
import { RedisClients } from '../redis.js'
import { processRunJobs, startRunWorker } from './worker.js'

export interface RunWorker<Values = Record<string, unknown>> {
  /** Subscribes a listener, as `app.langgraphWebhooks.onRun` does; returns the unsubscribe function. */
  onRun: OnRun<Values>
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
  const log = options.logger ?? pino()
  const listeners = new RunListeners()
  if (options.onRun !== undefined) listeners.on(options.onRun as RunListener)
  const connection = new RedisClients(resolved.connection, ioredis)
  const telemetry = createTelemetry()
  const handle = startRunWorker({
    bullmq,
    connection: connection.workerTemplate(),
    connected: () => connection.workersConnected(),
    name: resolved.name,
    concurrency: resolved.concurrency,
    lockMs: resolved.lockMs,
    // With an OpenTelemetry SDK registered, each run is a span linked to its delivery's, its listeners timed.
    processor: telemetry.processing(processRunJobs(telemetry.timed(listeners), log, lazyValidator(options.valuesSchema))),
    log
  })
  const starting = setImmediate(() => handle.start())
  return {
    onRun: ((statusOrListener: unknown, listener?: unknown) => listeners.on(statusOrListener, listener)) as OnRun<any>,
    bullmq: handle.worker as bullmq.Worker,
    async close () {
      clearImmediate(starting)
      await connection.close(await handle.close())
    }
  }
}

/** Builds the schema's validator at the first run: a TypeBox 1.x schema without `typebox` installed fails each run with the reason. */
function lazyValidator (schema: ValuesSchema | undefined): () => Promise<ValuesValidator | undefined> {
  let validator: Promise<ValuesValidator | undefined> | undefined
  return () => (validator ??= schema === undefined ? Promise.resolve(undefined) : createValuesValidator(schema))
}

export { jobIdOf, type RunJobData } from './job.js'
export type { QueueOptions, RedisClientLike, RunWorkerOptions } from '../options.js'
export type { FailedRun, QueueCounts, RunQueue } from './queue.js'
