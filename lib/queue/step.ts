import type { Queue } from 'bullmq'
import type { Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import type { StoreRun } from '../receive.js'
import type { RunWebhook } from '../schemas.js'
import { AddTimeoutError, QueueUnavailableError } from '../errors.js'
import { jobIdOf, serializedJobData, type RunJobData } from './job.js'
import { DISCONNECTED, withTimeout } from '../redis.js'

/**
 * "Store the run, reply 202": adds the run as a job keyed by run id and
 * status, and answers once Redis has it. A run already stored (a sender's
 * retry) is a no-op in Redis and a `duplicate` here. When Redis cannot take
 * it — down, reconnecting, or not answering within `timeoutMs` — the
 * delivery fails with a 503, so the sender retries; a job that still lands
 * after such a timeout makes that retry a duplicate, and is handled once.
 * `carrier` gives the delivery's trace context to store with the job.
 */
export function createQueueStep (
  queue: Queue<RunJobData>,
  client: Redis,
  timeoutMs: number,
  carrier: () => Record<string, string> | undefined
): StoreRun {
  return async function enqueue (run: RunWebhook<unknown>, reconciled: boolean, log: FastifyBaseLogger) {
    if (DISCONNECTED.has(client.status)) {
      log.error({ redis: client.status }, 'the queue cannot store a run webhook: Redis is unreachable')
      throw new QueueUnavailableError()
    }
    const jobId = jobIdOf(run.run_id, run.status)
    // Sent first on the connection that adds the job, so it sees the state
    // just before the add: whether this is a duplicate, in one round-trip.
    const existed = client.exists(queue.toKey(jobId))
    // The delivery's trace context, so that the worker's span links to it.
    const trace = carrier()
    const data: RunJobData = trace === undefined ? { run, reconciled } : { run, reconciled, trace }
    // BullMQ serializes job data with JSON.stringify, before it sends anything:
    // a run nested too deep for it is stored serialized by the plugin instead.
    const added = queue.add(run.status, data, { jobId }).catch((error: unknown) => {
      if (!(error instanceof RangeError)) throw error
      return queue.add(run.status, serializedJobData(data), { jobId })
    })
    let found: number
    try {
      [found] = await withTimeout(Promise.all([existed, added]), timeoutMs, () => new AddTimeoutError(`Redis did not store the job within ${timeoutMs} ms (is it reachable?)`))
    } catch (error) {
      log.error({ err: error }, 'the queue failed to store a run webhook')
      throw new QueueUnavailableError({ cause: error })
    }
    if (found === 1) {
      log.info('duplicate run webhook acknowledged: the run is already queued')
      return 'duplicate'
    }
    return 'queued'
  }
}
