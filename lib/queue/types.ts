import type { RunStatus, RunWebhook } from '../schemas.js'

/** A run that exhausted its attempts, as `queue.failed()` lists it. */
export interface FailedRun {
  /** The run as listeners saw it (token masked). */
  run: RunWebhook
  /** How many times the listeners ran. */
  attempts: number
  /** What the listeners threw, on their last attempt. */
  error: string
  failedAt: Date
}

export interface QueueCounts {
  waiting: number
  active: number
  delayed: number
  failed: number
  completed: number
}

/** `app.langgraphWebhooks.queue`: the dead letters and the sizes of the queue's sets. */
export interface RunQueue {
  /** Runs that exhausted their attempts, newest first (`limit` default 100). */
  failed(options?: { offset?: number, limit?: number }): Promise<FailedRun[]>
  /** Queues a failed run again, with its attempts reset; `false` when it is not in the failed set. */
  retry(runId: string, status: RunStatus | (string & {})): Promise<boolean>
  counts(): Promise<QueueCounts>
}
