import type { RegisterOptions } from 'fastify'
import { RUN_KEY_FIELDS, requireRunFields, resolveAllowedFields } from './allowed-fields.js'
import { createMemoryDedupeStore } from './dedupe/memory.js'
import type { DedupeStore } from './dedupe/store.js'
import { InvalidOptionError } from './errors.js'
import type { RunContext, RunListener } from './listeners.js'
import { resolveOpenApiOptions, type OpenApiOptions, type ResolvedOpenApi } from './openapi.js'
import type { RunWebhook, RunWebhookField } from './schemas.js'
import { resolveLanggraphOptions, type LanggraphOptions, type ResolvedLanggraph } from './runs/options.js'
import { resolveQueueOptions, type QueueOptions, type ResolvedQueue } from './queue/options.js'
import { isUsableToken, type TokenSource } from './token.js'
import { ACCEPTED_VALUES_SCHEMAS, valuesSchemaKind, type ValuesOf, type ValuesSchema } from './values-schema.js'

export interface DedupeOptions {
  /** Where handled deliveries are remembered. Default: an in-memory store (one instance only). */
  store?: DedupeStore
  /** How long a handled delivery is remembered. Default 1 hour. */
  ttlMs?: number
  /** How long a delivery in progress holds its key before another may take over (a crashed holder). Default 60 s. */
  leaseMs?: number
  /** The most keys the in-memory store keeps (oldest dropped first). Default 10 000. */
  maxKeys?: number
}

export interface LanggraphWebhooksOptions<
  Schema extends ValuesSchema | undefined = ValuesSchema | undefined,
  Fields extends RunWebhookField = RunWebhookField
> {
  /** The shared secret; several tokens allow rotation. Required. */
  token: string | readonly string[]
  /** Where the route listens. Default `/webhooks/langgraph`. */
  path?: string
  /** Where the token may come from. Default both: `['query', 'bearer']`. */
  tokenSources?: readonly TokenSource[]
  /** The largest body accepted, in bytes. Default 10 MiB. */
  bodyLimit?: number
  /** `handled` (default): reply 204 once listeners settled. `received`: reply 202 first. */
  ack?: 'handled' | 'received'
  /** Mask the token in `run.kwargs.webhook` before listeners see it. Default true. */
  redactToken?: boolean
  /**
   * A listener subscribed at registration, as with `onRun(listener)`.
   * (Method syntax: options typed with a `valuesSchema` stay assignable to
   * the plugin's own option type.)
   */
  onRun?(run: Pick<RunWebhook<ValuesOf<Schema>>, Fields>, context: RunContext): unknown
  /**
   * The schema `run.values` must match when present: TypeBox 0.34 or 1.x, or
   * a Standard Schema validator (Zod, Valibot, ArkType). Listeners get its
   * output, defaults and transforms applied.
   */
  valuesSchema?: Schema
  /** Idempotent delivery keyed by `run_id` + `status`. Default off. */
  dedupe?: boolean | DedupeOptions
  /** Refuse deliveries whose `webhook_sent_at` is further than this from now. Default off. */
  maxAgeMs?: number
  /** How long listeners may take before the delivery is answered 503 (the sender retries). Default 25 000. */
  listenerTimeoutMs?: number
  /** The route in `@fastify/swagger`'s document: summary, description, tags, or `hide`. */
  openapi?: OpenApiOptions
  /**
   * The fields the LangGraph server keeps in webhook bodies: the same list
   * as its `webhooks.allowed_fields`. Only these are then required (their
   * types still checked), and listeners get runs with only these fields.
   * `dedupe` needs `run_id` and `status`; `maxAgeMs` needs `webhook_sent_at`;
   * `valuesSchema` needs `values`. Default: every field, as both servers send.
   */
  allowedFields?: readonly Fields[]
  /** Runs the application starts with `app.langgraphWebhooks.runs`, tracked and reconciled. Needs `@langchain/langgraph-sdk`. */
  langgraph?: LanggraphOptions
  /** Durable delivery on BullMQ (`bullmq` must be installed). Default off. */
  queue?: QueueOptions
}

export interface ResolvedDedupe {
  /** The given store, or an in-memory one. */
  store: DedupeStore
  ttlMs: number
  leaseMs: number
}

/** Fastify's register options, applied to the route's context. */
export type RouteContextOptions = Pick<RegisterOptions, 'prefix' | 'logLevel' | 'logSerializers'>

export interface ResolvedOptions {
  tokens: string[]
  path: string
  tokenSources: ReadonlySet<TokenSource>
  bodyLimit: number
  ack: 'handled' | 'received'
  redactToken: boolean
  onRun: RunListener<any> | undefined
  valuesSchema: ValuesSchema | undefined
  dedupe: ResolvedDedupe | undefined
  maxAgeMs: number | undefined
  listenerTimeoutMs: number
  openapi: ResolvedOpenApi
  /** The fields the server keeps; `undefined`: every field. */
  allowedFields: readonly RunWebhookField[] | undefined
  langgraph: ResolvedLanggraph | undefined
  queue: ResolvedQueue | undefined
  /** A token shorter than this gets a warning at registration. */
  shortToken: boolean
  /** `prefix`, `logLevel` and `logSerializers`, as given. */
  context: RouteContextOptions
}

export const DEFAULT_PATH = '/webhooks/langgraph'
export const DEFAULT_BODY_LIMIT = 10 * 1024 * 1024
export const DEFAULT_LISTENER_TIMEOUT_MS = 25_000
export const MIN_TOKEN_LENGTH = 32
// What an HTTP header carries byte for byte: a bearer token is one header token.
const VISIBLE_ASCII = /^[\x21-\x7e]+$/
const TOKEN_SOURCES: readonly TokenSource[] = ['query', 'bearer']
const OPTION_NAMES = [
  'token', 'path', 'tokenSources', 'bodyLimit', 'ack', 'redactToken', 'onRun', 'valuesSchema',
  'dedupe', 'maxAgeMs', 'listenerTimeoutMs', 'openapi', 'allowedFields', 'langgraph', 'queue'
]
// Fastify's own register options arrive along with ours. Under
// fastify-plugin Fastify ignores them, so the plugin applies them to the
// route's own context.
const REGISTER_OPTION_NAMES = ['prefix', 'logLevel', 'logSerializers']
const KNOWN = new Set([...OPTION_NAMES, ...REGISTER_OPTION_NAMES])

/** Fails the registration with `FST_LANGGRAPH_WEBHOOKS_INVALID_OPTION`. */
export function fail (message: string): never {
  throw new InvalidOptionError(message)
}

/**
 * How a given value reads in a message. A string is called a string, so that
 * `'5000'` read from an environment variable is told apart from `5000`.
 */
export function describeValue (value: unknown): string {
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'function') return 'a function'
  if (typeof value === 'object') return 'an object'
  return String(value)
}

/**
 * A nested option: an object with only the given keys (each optional), or
 * the registration fails naming the known keys, as unknown top-level
 * options do. `{ ttl: 5 }` for `{ ttlMs: 5 }` is refused rather than ignored.
 */
export function optionObject (value: unknown, name: string, keys: readonly string[]): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    fail(`${name} must be an object { ${keys.join(', ')} }, got ${describeValue(value)}`)
  }
  for (const key of Object.keys(value)) {
    if (!keys.includes(key)) fail(`unknown option "${name}.${key}"; the options of ${name} are: ${keys.join(', ')}`)
  }
  return value as Record<string, unknown>
}

/** The unit an option's name implies, for its error message. */
function unitOf (name: string): string {
  if (name.endsWith('Ms')) return ' of milliseconds'
  return name.endsWith('Limit') ? ' of bytes (e.g. 10 * 1024 * 1024)' : ''
}

/** A positive integer option, or `fallback` when not given. */
export function positiveInteger (value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isSafeInteger(value) || (value as number) <= 0) {
    const hint = typeof value === 'string' ? ' (convert it first, e.g. Number(process.env.X))' : ''
    fail(`${name} must be a positive integer${unitOf(name)}, got ${describeValue(value)}${hint}`)
  }
  return value as number
}

/** Validates the options without touching the caller's object. */
export function resolveOptions (options: unknown): ResolvedOptions {
  if (options === null || typeof options !== 'object') fail('options must be an object with at least { token }')
  const given = options as Record<string, unknown>
  for (const key of Object.keys(given)) {
    if (!KNOWN.has(key)) fail(`unknown option "${key}"; the options are: ${OPTION_NAMES.join(', ')}`)
  }

  const { token } = given
  const tokens = typeof token === 'string' ? [token] : Array.isArray(token) ? [...token] : undefined
  if (tokens === undefined || tokens.length === 0 || !tokens.every(isUsableToken)) {
    fail('token is required: a non-empty string, or an array of them to rotate tokens (generate one with: node -e "console.log(crypto.randomBytes(32).toString(\'hex\'))")')
  }
  tokens.forEach((candidate, index) => {
    if (!VISIBLE_ASCII.test(candidate)) {
      const which = tokens.length === 1 ? 'the token' : `token[${index}]`
      fail(`${which} holds a character other than visible ASCII (! to ~, no spaces): Node reads the Authorization header as latin1, so such a token never verifies as a bearer token; use a random hex token (node -e "console.log(crypto.randomBytes(32).toString('hex'))")`)
    }
  })

  const path = given.path ?? DEFAULT_PATH
  if (typeof path !== 'string' || !path.startsWith('/') || /[?#\s]/.test(path)) {
    fail(`path must be a URL path starting with "/" and without query, fragment or spaces, got ${JSON.stringify(path)}`)
  }

  const sources = given.tokenSources ?? TOKEN_SOURCES
  if (!Array.isArray(sources) || sources.length === 0 || !sources.every((source) => TOKEN_SOURCES.includes(source))) {
    fail('tokenSources must be a non-empty array of "query" and/or "bearer"')
  }

  const ack = given.ack ?? 'handled'
  if (ack !== 'handled' && ack !== 'received') fail(`ack must be "handled" or "received", got ${JSON.stringify(ack)}`)

  const redactToken = given.redactToken ?? true
  if (typeof redactToken !== 'boolean') fail('redactToken must be a boolean')

  if (given.onRun !== undefined && typeof given.onRun !== 'function') fail('onRun must be a function (run, { request, log }) => unknown')

  const valuesSchema = given.valuesSchema
  if (valuesSchema !== undefined && valuesSchemaKind(valuesSchema) === undefined) {
    fail(`valuesSchema must be ${ACCEPTED_VALUES_SCHEMAS}, e.g. z.object({ messages: z.array(z.string()) }) or Type.Object({ messages: Type.Array(Type.String()) })`)
  }

  const allowedFields = resolveAllowedFields(given.allowedFields)
  const dedupe = resolveDedupe(given.dedupe)
  if (dedupe !== undefined) requireRunFields(allowedFields, RUN_KEY_FIELDS, 'dedupe')
  if (given.maxAgeMs !== undefined) requireRunFields(allowedFields, ['webhook_sent_at'], 'maxAgeMs')
  if (valuesSchema !== undefined) requireRunFields(allowedFields, ['values'], 'valuesSchema')
  if (given.langgraph !== undefined) requireRunFields(allowedFields, ['run_id'], 'langgraph')
  const queue = resolveQueueOptions(given.queue, given)
  if (queue !== undefined) requireRunFields(allowedFields, RUN_KEY_FIELDS, 'queue')

  return {
    tokens,
    path,
    tokenSources: new Set(sources as TokenSource[]),
    bodyLimit: positiveInteger(given.bodyLimit, 'bodyLimit', DEFAULT_BODY_LIMIT),
    ack,
    redactToken,
    onRun: given.onRun as RunListener<any> | undefined,
    valuesSchema: valuesSchema as ValuesSchema | undefined,
    dedupe,
    maxAgeMs: given.maxAgeMs === undefined ? undefined : positiveInteger(given.maxAgeMs, 'maxAgeMs', 0),
    listenerTimeoutMs: positiveInteger(given.listenerTimeoutMs, 'listenerTimeoutMs', DEFAULT_LISTENER_TIMEOUT_MS),
    openapi: resolveOpenApiOptions(given.openapi),
    allowedFields,
    langgraph: resolveLanggraphOptions(given.langgraph, tokens[0], new Set(sources as TokenSource[])),
    queue,
    shortToken: tokens.some((t) => t.length < MIN_TOKEN_LENGTH),
    context: resolveContextOptions(given)
  }
}

function resolveContextOptions ({ prefix, logLevel, logSerializers }: Record<string, unknown>): RouteContextOptions {
  const context: RouteContextOptions = {}
  if (prefix !== undefined) {
    if (typeof prefix !== 'string' || /[?#\s]/.test(prefix)) fail(`prefix must be a URL path such as "/api", got ${describeValue(prefix)}`)
    context.prefix = prefix
  }
  if (logLevel !== undefined) {
    if (typeof logLevel !== 'string' || logLevel === '') fail(`logLevel must be a log level such as "warn", got ${describeValue(logLevel)}`)
    context.logLevel = logLevel as RouteContextOptions['logLevel']
  }
  if (logSerializers !== undefined) {
    if (logSerializers === null || typeof logSerializers !== 'object' || Array.isArray(logSerializers) ||
      !Object.values(logSerializers).every((serializer) => typeof serializer === 'function')) {
      fail(`logSerializers must be an object of functions, e.g. { res: (reply) => ({ statusCode: reply.statusCode }) }, got ${describeValue(logSerializers)}`)
    }
    if ('req' in logSerializers) {
      fail('logSerializers.req would replace the serializer that masks the token in the logged URL; give other serializers here, and for the host\'s own routes use serializeRequest from fastify-langgraph-webhooks: Fastify({ logger: { serializers: { req: serializeRequest } } })')
    }
    context.logSerializers = logSerializers as RouteContextOptions['logSerializers']
  }
  return context
}

const DEDUPE_KEYS = ['store', 'ttlMs', 'leaseMs', 'maxKeys']

function resolveDedupe (dedupe: unknown): ResolvedDedupe | undefined {
  if (dedupe === undefined || dedupe === false) return undefined
  if (dedupe !== true && (dedupe === null || typeof dedupe !== 'object' || Array.isArray(dedupe))) {
    fail(`dedupe must be true, false, or { store?, ttlMs?, leaseMs?, maxKeys? }, got ${describeValue(dedupe)}`)
  }
  const given = dedupe === true ? {} : optionObject(dedupe, 'dedupe', DEDUPE_KEYS)
  const store = given.store as Partial<DedupeStore> | undefined
  if (store !== undefined && (store === null || typeof store.reserve !== 'function' || typeof store.complete !== 'function' || typeof store.release !== 'function')) {
    fail('dedupe.store must implement reserve(key, leaseMs), complete(key, ttlMs) and release(key); see createRedisDedupeStore in fastify-langgraph-webhooks/redis')
  }
  const ttlMs = positiveInteger(given.ttlMs, 'dedupe.ttlMs', 60 * 60 * 1000)
  const maxKeys = positiveInteger(given.maxKeys, 'dedupe.maxKeys', 10_000)
  return {
    store: store as DedupeStore | undefined ?? createMemoryDedupeStore({ maxKeys, ttlMs }),
    ttlMs,
    leaseMs: positiveInteger(given.leaseMs, 'dedupe.leaseMs', 60_000)
  }
}
