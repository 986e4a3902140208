import { randomUUID } from 'node:crypto'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { DEFAULT_PATH } from './options.js'
import type { RunKwargs, RunWebhook } from './schemas.js'
import type { TokenSource } from './token.js'

/** Fields to replace; `kwargs` fields are merged with the defaults, and unknown fields are allowed. */
export type RunWebhookOverrides<Values> = Partial<Omit<RunWebhook<Values>, 'kwargs'>> & {
  kwargs?: Partial<RunKwargs> & Record<string, unknown>
} & Record<string, unknown>

/**
 * A valid run webhook body, shaped like the JS server's, with fresh ids and
 * the current time. `overrides` replace top-level fields (`kwargs` is merged
 * one level deep); set a field to `undefined` to drop it.
 */
export function buildRunWebhook<Values = Record<string, unknown>> (overrides: RunWebhookOverrides<Values> = {}): RunWebhook<Values> {
  const runId = randomUUID()
  const threadId = randomUUID()
  const assistantId = randomUUID()
  const now = Date.now()
  const at = (offsetMs: number) => new Date(now + offsetMs).toISOString()
  const metadata = { created_by: 'system', graph_id: 'agent', assistant_id: assistantId }
  const { kwargs, ...rest } = overrides
  const run: Record<string, unknown> = {
    run_id: runId,
    thread_id: threadId,
    assistant_id: assistantId,
    metadata,
    status: 'success',
    kwargs: {
      input: { messages: ['hi'] },
      config: {
        configurable: { run_id: runId, thread_id: threadId, graph_id: 'agent', assistant_id: assistantId },
        metadata
      },
      context: {},
      stream_mode: ['values'],
      webhook: 'http://127.0.0.1:3000/webhooks/langgraph',
      temporary: false,
      subgraphs: false,
      resumable: false,
      ...kwargs
    },
    multitask_strategy: 'reject',
    created_at: at(-60),
    updated_at: at(0),
    run_started_at: at(-40),
    run_ended_at: at(-1),
    webhook_sent_at: at(0),
    values: { messages: ['hi', 'hello'] },
    ...rest
  }
  for (const key of Object.keys(run)) if (run[key] === undefined) delete run[key]
  return run as RunWebhook<Values>
}

export interface DeliverRunOptions {
  /** The token to send. */
  token: string
  /**
   * The route's path. Default: `app.langgraphWebhooks.path` when `app` has
   * the plugin (prefixes included), else `/webhooks/langgraph`.
   */
  path?: string
  /**
   * Which server's request to imitate. `'js'` (default): `text/plain;charset=UTF-8`,
   * the token in `?token=`. `'python'`: `application/json`, the token in an
   * `Authorization: Bearer` header (as `webhooks.headers` sends it; needs the
   * `'bearer'` token source).
   */
  sender?: 'js' | 'python'
  /**
   * Where the token goes, as a `tokenSources` entry: `'query'`, `'bearer'`,
   * or `{ header: 'x-webhook-token' }`. Default: the sender's (`'query'` for
   * `'js'`, `'bearer'` for `'python'`).
   */
  tokenSource?: TokenSource
}

/** Injects a run webhook exactly as the JS server (or, with `sender: 'python'`, the Python server) sends it. */
export function deliverRun (app: FastifyInstance, payload: unknown, { token, path, sender = 'js', tokenSource = sender === 'js' ? 'query' : 'bearer' }: DeliverRunOptions): Promise<LightMyRequestResponse> {
  path ??= (app as { langgraphWebhooks?: { path: string } }).langgraphWebhooks?.path ?? DEFAULT_PATH
  const body = typeof payload === 'string' ? payload : JSON.stringify(payload)
  const headers: Record<string, string> = { 'content-type': sender === 'js' ? 'text/plain;charset=UTF-8' : 'application/json' }
  if (tokenSource === 'bearer') headers.authorization = `Bearer ${token}`
  else if (tokenSource !== 'query') headers[tokenSource.header] = token
  return app.inject({ method: 'POST', url: path, query: tokenSource === 'query' ? { token } : {}, headers, payload: body })
}
