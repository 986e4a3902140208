/**
 * bull-board on the plugin's queue, behind basic auth, with the settings that
 * keep it safe for run webhooks (docs/operations.md): reads are free, and the
 * only changes it makes are to dead letters (retry or remove a failed run).
 * Register it after the plugin, with the `queue` option set.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import basicAuth from '@fastify/basic-auth'
import { createBullBoard } from '@bull-board/api'
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter'
import type { BeforeHookResult, HookContext } from '@bull-board/api/typings/app'
import { FastifyAdapter } from '@bull-board/fastify'
import type { FastifyInstance } from 'fastify'

export interface DashboardOptions {
  /** Where the dashboard is served. Default '/admin/queues' */
  path?: string
  user: string
  password: string
  /** No change at all: replay dead letters with app.langgraphWebhooks.queue.retry() instead. Default false */
  readOnly?: boolean
}

// Changes that lose no run and leave the completed jobs (what makes a sender's retry a duplicate) in place.
const ON_A_FAILED_JOB = new Set(['/api/queues/:queueName/:jobId/retry', '/api/queues/:queueName/:jobId/clean'])
const ON_THE_FAILED_SET = new Set(['/api/queues/:queueName/retry/:queueStatus', '/api/queues/:queueName/clean/:queueStatus'])
const HARMLESS = new Set(['/api/queues/pause', '/api/queues/resume', '/api/queues/:queueName/pause', '/api/queues/:queueName/resume'])

export async function dashboard (app: FastifyInstance, { path = '/admin/queues', user, password, readOnly = false }: DashboardOptions): Promise<void> {
  const queue = app.langgraphWebhooks.queue.bullmq

  async function deadLettersOnly ({ method, route, request }: HookContext): Promise<BeforeHookResult> {
    if (method === 'get' || HARMLESS.has(route)) return
    if (ON_THE_FAILED_SET.has(route) && request.params.queueStatus === 'failed') return
    if (ON_A_FAILED_JOB.has(route) && (await queue.getJobState(request.params.jobId)) === 'failed') return
    return { allow: false, status: 403 }
  }

  // No Retry button on completed runs: it would run their listeners a second time (the option is not in bull-board's types).
  const adapter = { readOnlyMode: readOnly, allowCompletedRetries: false, description: 'LangGraph run webhooks: job data holds run values (personal data)' }
  const board = new FastifyAdapter()
  createBullBoard({
    queues: [new BullMQAdapter(queue, adapter)],
    serverAdapter: board,
    options: { uiConfig: { boardTitle: 'Run webhooks' }, handlerHooks: { before: deadLettersOnly } }
  })
  board.setBasePath(path)

  await app.register(async (admin) => {
    await admin.register(basicAuth, {
      authenticate: { realm: 'run webhooks' },
      async validate (givenUser, givenPassword) {
        // Both compared, in constant time, whatever the first gives.
        const valid = [same(givenUser, user), same(givenPassword, password)]
        if (!valid.every(Boolean)) throw new Error('wrong user or password')
      }
    })
    admin.addHook('onRequest', admin.basicAuth)
    await admin.register(board.registerPlugin(), { prefix: path })
  })
}

/** Compared as SHA-256 digests: equal lengths for timingSafeEqual, and no length told by the time taken. */
function same (given: string, expected: string): boolean {
  const digest = (text: string) => createHash('sha256').update(text).digest()
  return timingSafeEqual(digest(given), digest(expected))
}
