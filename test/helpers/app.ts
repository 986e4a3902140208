import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import langgraphWebhooks, { type LanggraphWebhooksOptions } from '../../lib/index.js'

export const TOKEN = 'test-token-0123456789abcdef0123456789abcdef'

/** A Fastify app with the plugin registered; its log lines are kept in `lines`. */
export async function buildApp (
  options: Partial<LanggraphWebhooksOptions> = {},
  server: FastifyServerOptions = {}
): Promise<{ app: FastifyInstance, lines: string[] }> {
  const lines: string[] = []
  const app = Fastify({
    logger: { level: 'trace', stream: { write: (line: string) => { lines.push(line) } } },
    ...server
  })
  await app.register(langgraphWebhooks, { token: TOKEN, ...options })
  return { app, lines }
}

/** The real body the JS server sent (shared/langgraph-webhooks.md), with a given token in kwargs.webhook. */
export function jsServerBody (token = TOKEN): Record<string, any> {
  return {
    run_id: '01a220ec-e30f-707b-b63b-d7432b31f88f',
    thread_id: '01a220ec-e306-707e-86dd-b76222b433ba',
    assistant_id: '046b5dc7-2108-582c-9c6c-31d556d138f0',
    metadata: { created_by: 'system', graph_id: 'echo', assistant_id: '046b5dc7-2108-582c-9c6c-31d556d138f0' },
    status: 'success',
    kwargs: {
      input: { messages: ['hi'] },
      config: {
        configurable: { 'user-agent': 'node', run_id: '01a220ec-e30f-707b-b63b-d7432b31f88f', thread_id: '01a220ec-e306-707e-86dd-b76222b433ba', graph_id: 'echo', assistant_id: '046b5dc7-2108-582c-9c6c-31d556d138f0' },
        metadata: { created_by: 'system', graph_id: 'echo', assistant_id: '046b5dc7-2108-582c-9c6c-31d556d138f0' }
      },
      context: {},
      stream_mode: ['values'],
      webhook: `http://127.0.0.1:9911/webhooks/langgraph?token=${token}`,
      temporary: false,
      subgraphs: false,
      resumable: false
    },
    multitask_strategy: 'reject',
    created_at: '2026-11-28T06:52:05.263Z',
    updated_at: '2026-11-28T06:52:05.326Z',
    run_started_at: '2026-11-28T06:52:05.285Z',
    run_ended_at: '2026-11-28T06:52:05.325Z',
    webhook_sent_at: '2026-11-28T06:52:05.326Z',
    values: { messages: ['hi', 'echo:1'] }
  }
}

/** A body as the Python server sends it: microsecond `+00:00` times, `values: null`, `error` as an object. */
export function pythonServerBody (status: string, token = TOKEN): Record<string, any> {
  const body = jsServerBody(token)
  for (const field of ['created_at', 'updated_at', 'run_started_at', 'run_ended_at', 'webhook_sent_at']) {
    body[field] = body[field].replace(/\.(\d{3})Z$/, '.$1118+00:00')
  }
  body.run_id = '1ef9a7d2-6f0e-6c1a-8a5e-3b6f0c2d9e41'
  body.status = status
  body.values = null
  if (status === 'error') body.error = { error: 'ValueError', message: 'node failed' }
  return body
}
