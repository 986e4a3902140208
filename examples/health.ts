/**
 * @fastify/under-pressure options for a health check on the plugin's queue
 * (docs/operations.md): healthy while Redis answers, the queue's counts in
 * the status route's body for a monitor to alert on (`failed`, `waiting`).
 * While Redis does not answer, every route replies 503 with Retry-After, as
 * the webhook route does then anyway (the sender retries).
 *
 *   await app.register(underPressure, queueHealth)
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyUnderPressureOptions } from '@fastify/under-pressure'

/** How long Redis may take to answer before the process is reported unhealthy. */
const ANSWER_MS = 1000
const count = { type: 'integer' }

export const queueHealth = {
  async healthCheck (app) {
    // A Redis that does not answer leaves the command pending: the check answers without it.
    const counts = await Promise.race([app.langgraphWebhooks.queue.counts(), sleep(ANSWER_MS, false as const, { ref: false })])
    return counts && { ...counts }
  },
  healthCheckInterval: 5000,
  exposeStatusRoute: {
    url: '/health',
    routeOpts: {},
    routeResponseSchemaOpts: { waiting: count, active: count, delayed: count, failed: count, completed: count }
  }
} satisfies FastifyUnderPressureOptions
