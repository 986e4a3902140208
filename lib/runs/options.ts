import { describeValue, fail, optionObject, positiveInteger } from '../options.js'
import { maskTokenInUrl } from '../redact.js'
import type { TokenSource } from '../token.js'
import type { LanggraphClient } from './sdk.js'

export interface LanggraphOptions {
  /** A `@langchain/langgraph-sdk` `Client` (`new Client({ apiUrl })`). */
  client: LanggraphClient
  /**
   * The public URL of the webhook route, as the LangGraph server reaches it
   * (`https://api.example.com/webhooks/langgraph`); the plugin adds the token.
   */
  webhookUrl: string
  /** How long after its start a run without a handled delivery is fetched from the server. Default 5 minutes. */
  reconcileAfterMs?: number
  /** How often a run still pending or running is fetched again. Default 1 minute. */
  reconcileEveryMs?: number
}

export interface ResolvedLanggraph {
  client: LanggraphClient
  /** `webhookUrl` with `?token=` set: a secret. */
  webhookUrl: string
  reconcileAfterMs: number
  reconcileEveryMs: number
}

export const DEFAULT_RECONCILE_AFTER_MS = 5 * 60 * 1000
export const DEFAULT_RECONCILE_EVERY_MS = 60 * 1000
const NAMES = ['client', 'webhookUrl', 'reconcileAfterMs', 'reconcileEveryMs']

function isFunction (value: unknown): boolean {
  return typeof value === 'function'
}

/** Resolves the `langgraph` option; the URL gets the first token (the newest, while rotating). */
export function resolveLanggraphOptions (given: unknown, token: string, tokenSources: ReadonlySet<TokenSource>): ResolvedLanggraph | undefined {
  if (given === undefined) return undefined
  const options = optionObject(given, 'langgraph', NAMES)
  const client = options.client as { runs?: Record<string, unknown>, threads?: Record<string, unknown> } | undefined
  if (client === null || typeof client !== 'object' ||
    !isFunction(client.runs?.create) || !isFunction(client.runs?.stream) || !isFunction(client.runs?.get) || !isFunction(client.threads?.getState)) {
    fail('langgraph.client must be a @langchain/langgraph-sdk Client: new Client({ apiUrl }) (npm install @langchain/langgraph-sdk)')
  }
  if (!tokenSources.has('query')) {
    fail('langgraph needs tokenSources to include "query": a LangGraph server sends the token in the webhook URL')
  }
  let url: URL
  try {
    url = new URL(options.webhookUrl as string)
  } catch {
    fail(`langgraph.webhookUrl must be the absolute public URL of the webhook route, e.g. "https://api.example.com/webhooks/langgraph", got ${describeValue(typeof options.webhookUrl === 'string' ? maskTokenInUrl(options.webhookUrl) : options.webhookUrl)}`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') fail(`langgraph.webhookUrl must be an http: or https: URL, got ${url.protocol}`)
  if (url.searchParams.has('token')) fail('langgraph.webhookUrl must not hold a token: the plugin adds it')
  url.searchParams.set('token', token)
  return {
    client: client as unknown as LanggraphClient,
    webhookUrl: url.href,
    reconcileAfterMs: positiveInteger(options.reconcileAfterMs, 'langgraph.reconcileAfterMs', DEFAULT_RECONCILE_AFTER_MS),
    reconcileEveryMs: positiveInteger(options.reconcileEveryMs, 'langgraph.reconcileEveryMs', DEFAULT_RECONCILE_EVERY_MS)
  }
}
