/**
 * `fastify-langgraph-webhooks/queue`: worker processes without HTTP. They
 * take the runs that the plugin's route stored (option `queue`) and run the
 * listeners subscribed here, with the same `onRun` as the plugin's.
 */
import * as bullmq from 'bullmq'
import * as ioredis from 'ioredis'
import { pino } from 'pino'
import { RunListeners, type OnRun } from '../listeners.js'
import { createTelemetry } from '../telemetry.js'
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
export function createRunWorker<Values = Record<string, unknown>> (options: RunWorkerOptions): RunWorker<Values> {
  const resolved = resolveWorkerOptions(options)
  const log = options.logger ?? pino()
  const listeners = new RunListeners()
  if (options.onRun !== undefined) listeners.on(options.onRun)
  const connection = new RedisClients(resolved.connection, ioredis)
  const telemetry = createTelemetry()
  const handle = startRunWorker({
    bullmq,
    connection: connection.workerTemplate(),
    name: resolved.name,
    concurrency: resolved.concurrency,
    lockMs: resolved.lockMs,
    // With an OpenTelemetry SDK registered, each run is a span linked to its delivery's, its listeners timed.
    processor: telemetry.processing(processRunJobs(telemetry.timed(listeners), log)),
    log
  })
  const starting = setImmediate(() => handle.start())
  return {
    onRun: ((statusOrListener: unknown, listener?: unknown) => listeners.on(statusOrListener, listener)) as OnRun<any>,
    bullmq: handle.worker as bullmq.Worker,
    async close () {
      clearImmediate(starting)
      await handle.close()
      await connection.close()
    }
  }
}

export { jobIdOf, type RunJobData } from './job.js'
export type { QueueOptions, RedisClientLike, RunWorkerOptions } from '../options.js'
export type { FailedRun, QueueCounts, RunQueue } from './types.js'
