// Every option of the plugin and of createRunWorker, declared once: an entry
// of a table below gives the option's type (a TypeBox schema's, or its own),
// its editor documentation (through OptionsOf), its check and its message.
import { Type, type Static, type TSchema, type TUnsafe } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import type { FastifyBaseLogger, RegisterOptions } from 'fastify'
import { createMemoryDedupeStore, type DedupeStore } from './dedupe/memory.js'
import { createRedisDedupeStore } from './dedupe/redis.js'
import { InvalidOptionError } from './errors.js'
import type { RunContext, RunListener } from './listeners.js'
import { maskTokenInUrl } from './redact.js'
import type { RedisClientLike, RedisConnection, RedisSpec } from './redis.js'
import type { LanggraphClient } from './runs/reconcile.js'
import { RUN_WEBHOOK_FIELDS, type RunWebhook, type RunWebhookField } from './schemas.js'
import { isUsableToken, type TokenSource } from './token.js'
import { ACCEPTED_VALUES_SCHEMAS, valuesSchemaKind, type ValuesOf, type ValuesSchema } from './values-schema.js'

export type { RedisClientLike }

/** One option: the type users give (`In`, for the type only) and how a given value resolves. */
interface Option<In, Out> { resolve: (value: unknown, name: string) => Out, readonly required?: true, readonly given?: In }
type Spec = Record<string, Option<any, any>>
type Given<S> = { -readonly [K in keyof S]: S[K] extends Option<infer In, any> ? In : never }
type RequiredKeys<S> = { [K in keyof S]: S[K] extends { required: true } ? K : never }[keyof S]
/** The options object a table describes, each option with its table entry's documentation. */
type OptionsOf<S> = Omit<Partial<Given<S>>, RequiredKeys<S>> & Pick<Given<S>, RequiredKeys<S>>
type Resolved<S> = { -readonly [K in keyof S]: S[K] extends Option<any, infer Out> ? Out : never }

const fail: (message: string) => never = (message) => { throw new InvalidOptionError(message) }

/** How a given value reads in a message: `'5000'` from an environment variable is told apart from `5000`. */
function describeValue (value: unknown): string {
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`
  if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return String(value)
  return Array.isArray(value) ? 'an array' : typeof value === 'function' ? 'a function' : 'an object'
}

const isObject = (value: unknown): value is Record<string, unknown> => value !== null && typeof value === 'object' && !Array.isArray(value)
/** A schema whose checks stand for a type TypeBox cannot express (a logger, an SDK client). */
const as = <T>(schema: TSchema): TUnsafe<T> => schema as TUnsafe<T>
const Method = Type.Function([], Type.Unknown())

/** The given value if `schema` accepts it; else a message saying what was `expected` and what was given. */
function accept<S extends TSchema> (schema: S, expected: string, hint = ''): (value: unknown, name: string) => Static<S> {
  return (value, name) => Value.Check(schema, value)
    ? value as Static<S>
    : fail(`${name} must be ${expected}, got ${describeValue(value)}${typeof value === 'string' ? hint : ''}`)
}

/** An option of the type `schema` gives, or `fallback` when not given. */
function option<S extends TSchema, F extends Static<S> | undefined = undefined> (schema: S, expected: string, fallback?: F, hint?: string): Option<Static<S>, Static<S> | F> {
  const check = accept(schema, expected, hint)
  return { resolve: (value, name) => value === undefined ? fallback as F : check(value, name) }
}

/** An option resolved by `resolve`, which words its own messages. */
const custom = <In, Out>(resolve: Option<In, Out>['resolve']): Option<In, Out> => ({ resolve })

/** A required option: `resolve` also sees `undefined`, and names what is expected. */
const required = <In, Out>(resolve: Option<In, Out>['resolve']): Option<In, Out> & { required: true } => ({ resolve, required: true })

const MS = ' of milliseconds'
const positiveInteger = <F extends number | undefined>(fallback: F, unit = ''): Option<number, number | F> =>
  option(Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }), `a positive integer${unit}`, fallback, ' (convert it first, e.g. Number(process.env.X))')
const boolean = (fallback: boolean) => option(Type.Boolean(), 'a boolean', fallback)

/**
 * Resolves an object of options against its table: unknown keys are refused
 * naming the known ones (`{ ttl: 5 }` for `{ ttlMs: 5 }`), and each entry
 * resolves its own key.
 */
function resolveTable<S extends Spec> (given: unknown, spec: S, name: string, prefix = `${name}.`): Resolved<S> {
  const keys = Object.keys(spec)
  if (!isObject(given)) fail(`${name} must be an object { ${keys.join(', ')} }, got ${describeValue(given)}`)
  const unknown = Object.keys(given).find((key) => !(key in spec))
  if (unknown !== undefined) fail(`unknown option "${prefix}${unknown}"; the options${prefix === '' ? '' : ` of ${prefix.slice(0, -1)}`} are: ${keys.join(', ')}`)
  return Object.fromEntries(keys.map((key) => [key, spec[key].resolve(given[key], `${prefix}${key}`)])) as Resolved<S>
}

/** A nested option object, or `undefined` when not given. */
const table = <S extends Spec>(spec: S): Option<OptionsOf<S>, Resolved<S> | undefined> =>
  custom((value, name) => value === undefined ? undefined : resolveTable(value, spec, name))

// What an HTTP header carries byte for byte: a bearer token is one header token.
const VISIBLE_ASCII = /^[\x21-\x7e]+$/
const NEW_TOKEN = 'node -e "console.log(crypto.randomBytes(32).toString(\'hex\'))"'

function resolveTokens (token: unknown): string[] {
  const tokens = typeof token === 'string' ? [token] : Array.isArray(token) ? [...token] : []
  if (tokens.length === 0 || !tokens.every(isUsableToken)) fail(`token is required: a non-empty string, or an array of them to rotate tokens (generate one with: ${NEW_TOKEN})`)
  const wrong = tokens.findIndex((candidate) => !VISIBLE_ASCII.test(candidate))
  if (wrong !== -1) fail(`${tokens.length === 1 ? 'the token' : `token[${wrong}]`} holds a character other than visible ASCII (! to ~, no spaces): Node reads the Authorization header as latin1, so such a token never verifies as a bearer token; use a random hex token (${NEW_TOKEN})`)
  return tokens
}

const SOURCES = 'a non-empty array of "query" and/or "bearer" and/or { header: "x-webhook-token" }'
const sourceList = accept(Type.Array(Type.Unknown(), { minItems: 1 }), SOURCES)
const tokenSource = accept(Type.Union([Type.Literal('query'), Type.Literal('bearer'), Type.Object({ header: Type.String() }, { additionalProperties: false })]), SOURCES)
// An HTTP field name (RFC 9110 token); Node hands headers over lowercased.
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9a-z-]+$/
// Headers that carry something else, or that request logs write.
const RESERVED_HEADERS = ['host', 'accept-version', 'content-type', 'content-length', 'content-encoding', 'transfer-encoding', 'connection', 'cookie']

function resolveTokenSources (given: unknown, name: string): TokenSource[] {
  if (given === undefined) return ['query', 'bearer']
  const seen = new Set<string>()
  return sourceList(given, name).map((value) => {
    const source = tokenSource(value, name)
    const key = typeof source === 'string' ? source : source.header.toLowerCase()
    if (key === 'authorization') fail(`${name}: the Authorization header is the "bearer" source: give "bearer" instead of { header: "authorization" }`)
    if (typeof source !== 'string' && (!HEADER_NAME.test(key) || RESERVED_HEADERS.includes(key))) fail(`${name}: ${JSON.stringify(source.header)} is not a header for a token (an HTTP field name that carries nothing else and is not logged), e.g. "x-webhook-token"`)
    if (seen.has(key)) fail(`${name} names ${JSON.stringify(key)} twice`)
    seen.add(key)
    return typeof source === 'string' ? source : { header: key }
  })
}

function resolveAllowedFields (given: unknown, name: string): RunWebhookField[] | undefined {
  if (given === undefined) return undefined
  if (!Array.isArray(given) || given.length === 0) fail(`${name} must be a non-empty array of the fields the server keeps (its webhooks.allowed_fields), e.g. ['run_id', 'status', 'values'], got ${describeValue(given)}`)
  const wrong: unknown[] = given.filter((field) => !(RUN_WEBHOOK_FIELDS as readonly unknown[]).includes(field))
  if (wrong.length > 0) fail(`${name}: ${typeof wrong[0] === 'string' ? JSON.stringify(wrong[0]) : describeValue(wrong[0])} is not a run webhook field; the fields are: ${RUN_WEBHOOK_FIELDS.join(', ')}`)
  return [...new Set(given as RunWebhookField[])]
}

const valuesSchema = custom<ValuesSchema, ValuesSchema | undefined>((value, name) => value === undefined || valuesSchemaKind(value) !== undefined
  ? value as ValuesSchema | undefined
  : fail(`${name} must be ${ACCEPTED_VALUES_SCHEMAS}, e.g. z.object({ messages: z.array(z.string()) }) or Type.Object({ messages: Type.Array(Type.String()) })`))

const Store = Type.Object({ reserve: Method, complete: Method, release: Method })

const DEDUPE = {
  /** Where handled deliveries are remembered. Default: in the plugin's `redis` if given, else in memory (one instance only). */
  store: custom<DedupeStore, DedupeStore | undefined>((store, name) => store === undefined || Value.Check(Store, store)
    ? store as DedupeStore | undefined
    : fail(`${name} must implement reserve(key, leaseMs), complete(key, ttlMs) and release(key); see createRedisDedupeStore in fastify-langgraph-webhooks/redis`)),
  /** How long a handled delivery is remembered. Default 1 hour. */
  ttlMs: positiveInteger(60 * 60 * 1000, MS),
  /** How long a delivery in progress holds its key before another may take over (a crashed holder). Default 60 s. */
  leaseMs: positiveInteger(60_000, MS),
  /** The most keys the in-memory store keeps (oldest dropped first). Default 10 000. */
  maxKeys: positiveInteger(10_000)
}
export interface DedupeOptions extends OptionsOf<typeof DEDUPE> {}

/** `store`: the given one, or an in-memory one (`inMemory`: with the plugin's `redis`, a Redis one instead). */
export type ResolvedDedupe = Omit<Resolved<typeof DEDUPE>, 'store' | 'maxKeys'> & { store: DedupeStore, inMemory: boolean }

const dedupe = custom<boolean | DedupeOptions, ResolvedDedupe | undefined>((value, name) => {
  if (value === undefined || value === false) return undefined
  if (value !== true && !isObject(value)) fail(`${name} must be true, false, or { store?, ttlMs?, leaseMs?, maxKeys? }, got ${describeValue(value)}`)
  const { store, ttlMs, leaseMs, maxKeys } = resolveTable(value === true ? {} : value, DEDUPE, name)
  return { store: store ?? createMemoryDedupeStore({ maxKeys, ttlMs }), inMemory: store === undefined, ttlMs, leaseMs }
})

/** `dedupe` once the plugin's Redis is known: without a store of its own, it dedupes in that Redis. */
export function dedupeIn (dedupe: ResolvedDedupe | undefined, redis: RedisConnection | undefined): ResolvedDedupe | undefined {
  if (dedupe === undefined || redis === undefined || !dedupe.inMemory) return dedupe
  return { ...dedupe, store: createRedisDedupeStore(redis.client, { prefix: redis.prefix, timeoutMs: redis.timeoutMs }), inMemory: false }
}

/** How the route appears in an OpenAPI document made by `@fastify/swagger`. */
const OPENAPI = {
  /** Default `Receive a LangGraph run webhook`. */
  summary: option(Type.String(), 'a string', 'Receive a LangGraph run webhook'),
  /** Default: a paragraph on what the route does and how it authenticates. */
  description: option(Type.String(), 'a string', 'The LangGraph server POSTs a run here when it ends (the run\'s `webhook`), as `application/json` or ' +
    '`text/plain`. The webhook token is checked before the body is read, from `?token=` or `Authorization: Bearer`. ' +
    'A 5xx or a timeout asks the sender to retry; a 4xx does not.'),
  /** Default `['langgraph']`. */
  tags: option(as<readonly string[]>(Type.Array(Type.String())), 'an array of strings', ['langgraph']),
  /** Keep the route out of the document. Default false. */
  hide: boolean(false)
}
export interface OpenApiOptions extends OptionsOf<typeof OPENAPI> {}
export type ResolvedOpenApi = Resolved<typeof OPENAPI>

const LANGGRAPH = {
  /** A `@langchain/langgraph-sdk` `Client` (`new Client({ apiUrl })`). */
  client: required<LanggraphClient, LanggraphClient>(accept(as<LanggraphClient>(Type.Object({ runs: Type.Object({ create: Method, stream: Method, get: Method }), threads: Type.Object({ getState: Method }) })),
    'a @langchain/langgraph-sdk Client: new Client({ apiUrl }) (npm install @langchain/langgraph-sdk)')),
  /**
   * The public URL of the webhook route, as the LangGraph server reaches it
   * (`https://api.example.com/webhooks/langgraph`); the plugin adds the token.
   */
  webhookUrl: required<string, URL>((value, name) => {
    const url = URL.parse(value as string) ??
      fail(`${name} must be the absolute public URL of the webhook route, e.g. "https://api.example.com/webhooks/langgraph", got ${describeValue(typeof value === 'string' ? maskTokenInUrl(value) : value)}`)
    if (url.protocol !== 'http:' && url.protocol !== 'https:') fail(`${name} must be an http: or https: URL, got ${url.protocol}`)
    if (url.searchParams.has('token')) fail(`${name} must not hold a token: the plugin adds it`)
    return url
  }),
  /** How long after its start a run without a handled delivery is fetched from the server. Default 5 minutes. */
  reconcileAfterMs: positiveInteger(5 * 60 * 1000, MS),
  /** How often a run still pending or running is fetched again. Default 1 minute. */
  reconcileEveryMs: positiveInteger(60 * 1000, MS)
}
export interface LanggraphOptions extends OptionsOf<typeof LANGGRAPH> {}

const RedisClient = Type.Object({ status: Type.String(), duplicate: Method, defineCommand: Method })
const REDIS_FORMS = 'an ioredis client, ioredis options or a redis:// URL'

function resolveRedis (value: unknown, name: string): RedisSpec {
  if (value === undefined) fail(`${name} is required: ${REDIS_FORMS}`)
  const hint = `${name} must be an ioredis client (new Redis(process.env.REDIS_URL)), ioredis options ({ host, port }) or a redis:// URL`
  if (typeof value === 'string') return /^rediss?:\/\//.test(value) ? { options: value } : fail(`${hint}, got a string that is not a redis:// URL`)
  if (Value.Check(RedisClient, value)) return { client: value as RedisClientLike }
  if (!isObject(value)) fail(hint)
  if (![Object.prototype, null].includes(Object.getPrototypeOf(value))) fail(`${hint}; got an object that is neither`)
  // BullMQ keeps its keys apart with its own prefix and refuses ioredis's.
  if ('keyPrefix' in value) fail(`${name}: ioredis keyPrefix is not supported by BullMQ; give each deployment its own queue name instead`)
  return { options: { ...value } }
}

/** A Redis option that may be left out. */
const optionalRedis = custom<RedisClientLike | object | string, RedisSpec | undefined>((value, name) => value === undefined ? undefined : resolveRedis(value, name))
const queueName = option(Type.String({ minLength: 1, pattern: '^[^:]*$' }), 'a non-empty string without ":" (BullMQ uses it in its keys)', 'langgraph-webhooks')
const HOUR = 60 * 60 * 1000

/** Durable delivery on BullMQ: the route stores each run as a job, workers run the listeners. */
const QUEUE = {
  /**
   * The Redis of the queue: an ioredis client (it stays yours: quit it
   * yourself), ioredis options, or a `redis://` URL (the plugin then makes
   * and closes its own clients). Default: the plugin's `redis`.
   */
  connection: optionalRedis,
  /** The BullMQ queue's name; web and worker processes must agree on it. Default `langgraph-webhooks`. */
  name: queueName,
  /** How many times the listeners are run before the run goes to the failed set. Default 10. */
  attempts: positiveInteger(10),
  /** The first retry's delay; each further retry waits twice as long. Default 1000 ms. */
  backoffMs: positiveInteger(1000, MS),
  /** How many runs this process's worker handles at a time. Default 8. */
  concurrency: positiveInteger(8),
  /** Run the listeners in a worker of this process (default), or only enqueue (`false`). */
  worker: boolean(true),
  /** How long a worker's claim on a run lasts without renewal: a dead worker's runs are taken over after it. Default 30 000 ms. */
  lockMs: positiveInteger(30_000, MS),
  /** The longest the route waits for Redis to store a run before it replies 503. Default 2000 ms. */
  addTimeoutMs: positiveInteger(2000, MS),
  /** How long handled runs are kept, so that the sender's retries are recognised as duplicates. Default 1 hour. */
  keepCompletedMs: positiveInteger(HOUR, MS),
  /** How long runs that exhausted their attempts stay in the failed set. Default 7 days. */
  keepFailedMs: positiveInteger(7 * 24 * HOUR, MS),
  /**
   * How many replicas must hold a run before the route replies 202 (Redis
   * `WAIT`), within half of `addTimeoutMs`, else 503: Redis replicates
   * asynchronously, so a master lost right after a 202 can lose the run with
   * it. Default 0 (no wait).
   */
  waitForReplicas: option(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }), 'a non-negative integer', 0)
}
export interface QueueOptions extends OptionsOf<typeof QUEUE> {}
export type ResolvedQueue = Omit<Resolved<typeof QUEUE>, 'connection'> & { connection: RedisSpec }

const WORKER = {
  /** The queue's Redis, as given to the plugin: an ioredis client (stays yours), ioredis options or a redis:// URL. */
  connection: required<RedisClientLike | object | string, RedisSpec>(resolveRedis),
  // The queue's name, how many runs this worker handles at a time, how long its claim on a run lasts: as the plugin's `queue` says.
  ...{ name: QUEUE.name, concurrency: QUEUE.concurrency, lockMs: QUEUE.lockMs },
  /** Where the worker and the listeners' `log` write. Default: pino's JSON lines on stdout, info and above. */
  logger: option(as<FastifyBaseLogger>(Type.Object({})), 'a pino or Fastify logger'),
  /** A listener subscribed at creation, as with `onRun(listener)`. */
  onRun: option(as<RunListener<RunWebhook>>(Method), 'a function (run, { attempt, log }) => unknown'),
  /** The schema `run.values` must match, as the plugin's `valuesSchema`; listeners get its output. */
  valuesSchema
}
export interface RunWorkerOptions<Schema extends ValuesSchema | undefined = undefined> extends Omit<OptionsOf<typeof WORKER>, 'valuesSchema' | 'onRun'> {
  /**
   * The web process's `valuesSchema`: the worker applies it to the values a
   * run holds as sent, so listeners get its output (and its type), as they
   * would without a queue.
   */
  valuesSchema?: Schema
  /** A listener subscribed at creation, as with `onRun(listener)`. */
  onRun?(run: RunWebhook<Schema extends ValuesSchema ? ValuesOf<Schema> : Record<string, unknown>>, context: RunContext): unknown
}

/** The options of `createRunWorker`, validated as strictly as the plugin's. */
export function resolveWorkerOptions (given: unknown): Resolved<typeof WORKER> {
  return resolveTable(given, WORKER, 'createRunWorker options', 'createRunWorker.')
}

export const DEFAULT_PATH = '/webhooks/langgraph'
export const MIN_TOKEN_LENGTH = 32

/** Fastify's register options, applied to the route's context. */
export type RouteContextOptions = Pick<RegisterOptions, 'prefix' | 'logLevel' | 'logSerializers'>

type Serializers = RouteContextOptions['logSerializers']
const serializers = accept(Type.Record(Type.String(), Method), 'an object of functions, e.g. { res: (reply) => ({ statusCode: reply.statusCode }) }')

const OPTIONS = {
  /** The shared secret; several tokens allow rotation. Required. */
  token: required<string | readonly string[], string[]>(resolveTokens),
  /** Where the route listens. Default `/webhooks/langgraph`. */
  path: option(Type.String({ pattern: '^/[^?#\\s]*$' }), 'a URL path starting with "/" and without query, fragment or spaces', DEFAULT_PATH),
  /** Where the token may come from: `?token=`, `Authorization: Bearer`, a header (`{ header: 'x-webhook-token' }`). Default `['query', 'bearer']`. */
  tokenSources: custom<readonly TokenSource[], TokenSource[]>(resolveTokenSources),
  /** The largest body accepted, in bytes. Default 10 MiB. */
  bodyLimit: positiveInteger(10 * 1024 * 1024, ' of bytes (e.g. 10 * 1024 * 1024)'),
  /** `handled` (default): reply 204 once listeners settled. `received`: reply 202 first. */
  ack: option(Type.Union([Type.Literal('handled'), Type.Literal('received')]), '"handled" or "received"', 'handled'),
  /** Mask the token in `run.kwargs.webhook` before listeners see it. Default true. */
  redactToken: boolean(true),
  // onRun, valuesSchema and allowedFields: documented and typed in LanggraphWebhooksOptions, generic there.
  onRun: option(as<RunListener<any>>(Method), 'a function (run, { request, log }) => unknown'),
  valuesSchema,
  /**
   * The Redis of every Redis feature: dedupe (`dedupe: true` stores in it),
   * the queue (without `queue.connection`), tracked runs and `waitForRun`
   * across instances. An ioredis client (it stays yours: quit it yourself),
   * ioredis options, or a `redis://` URL (the plugin then makes and closes
   * its own client). Default: none (in memory, one instance).
   */
  redis: optionalRedis,
  /** Idempotent delivery keyed by `run_id` + `status`. Default off. */
  dedupe,
  /** Refuse deliveries whose `webhook_sent_at` is further than this from now. Default off. */
  maxAgeMs: positiveInteger(undefined, MS),
  /** How long listeners may take before the delivery is answered 503 (the sender retries). Default 25 000. */
  listenerTimeoutMs: positiveInteger(25_000, MS),
  /** The route in `@fastify/swagger`'s document: summary, description, tags, or `hide`. */
  openapi: custom<OpenApiOptions, ResolvedOpenApi>((value, name) => resolveTable(value === undefined ? {} : value, OPENAPI, name)),
  allowedFields: custom<readonly RunWebhookField[], RunWebhookField[] | undefined>(resolveAllowedFields),
  /** Runs the application starts with `app.langgraphWebhooks.runs`, tracked and reconciled. Needs `@langchain/langgraph-sdk`. */
  langgraph: table(LANGGRAPH),
  /** Durable delivery on BullMQ (`bullmq` must be installed). Default off. */
  queue: table(QUEUE),
  // Fastify's own register options arrive along with ours. Under
  // fastify-plugin Fastify ignores them, so the plugin applies them to the
  // route's own context.
  prefix: option(Type.String({ pattern: '^[^?#\\s]*$' }), 'a URL path such as "/api"'),
  logLevel: option(as<RouteContextOptions['logLevel']>(Type.String({ minLength: 1 })), 'a log level such as "warn"'),
  logSerializers: custom<Serializers, Serializers>((value, name) => value === undefined || !('req' in serializers(value, name))
    ? value as Serializers
    : fail('logSerializers.req would replace the serializer that masks the token in the logged URL; give other serializers here, and for the host\'s own routes use serializeRequest from fastify-langgraph-webhooks: Fastify({ logger: { serializers: { req: serializeRequest } } })'))
}

export interface LanggraphWebhooksOptions<Schema extends ValuesSchema | undefined = ValuesSchema | undefined, Fields extends RunWebhookField = RunWebhookField> extends OptionsOf<Omit<typeof OPTIONS, 'onRun' | 'valuesSchema' | 'allowedFields' | 'prefix' | 'logLevel' | 'logSerializers'>> {
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
  /**
   * The fields the LangGraph server keeps in webhook bodies: the same list
   * as its `webhooks.allowed_fields`. Only these are then required (their
   * types still checked), and listeners get runs with only these fields.
   * `dedupe` needs `run_id` and `status`; `maxAgeMs` needs `webhook_sent_at`;
   * `valuesSchema` needs `values`. Default: every field, as both servers send.
   */
  allowedFields?: readonly Fields[]
}

export interface ResolvedOptions extends Omit<Resolved<typeof OPTIONS>, 'token' | 'langgraph' | 'queue' | 'prefix' | 'logLevel' | 'logSerializers'> {
  queue: ResolvedQueue | undefined
  tokens: string[]
  /** `webhookUrl` with `?token=` set: a secret. */
  langgraph: (Omit<Resolved<typeof LANGGRAPH>, 'webhookUrl'> & { webhookUrl: string }) | undefined
  /** A token shorter than this gets a warning at registration. */
  shortToken: boolean
  /** `prefix`, `logLevel` and `logSerializers`, as given. */
  context: RouteContextOptions
}

/** What a feature keyed by run (dedupe, a queue) needs in every body. */
export const RUN_KEY_FIELDS: readonly RunWebhookField[] = ['run_id', 'status']

/** Refuses, at registration, a feature that reads fields the server strips (`allowedFields` leaves out one of `needed`). */
export function requireRunFields (allowedFields: readonly RunWebhookField[] | undefined, needed: readonly RunWebhookField[], feature: string): void {
  const missing = needed.filter((field) => allowedFields !== undefined && !allowedFields.includes(field))
  if (missing.length > 0) fail(`${feature} reads ${needed.join(' and ')} from every webhook body, but allowedFields does not list ${missing.join(' or ')}: add ${missing.join(' and ')} to allowedFields and to the server's webhooks.allowed_fields`)
}

/** What each feature reads from every body. */
const READS: ReadonlyArray<['dedupe' | 'maxAgeMs' | 'valuesSchema' | 'langgraph' | 'queue', readonly RunWebhookField[]]> = [
  ['dedupe', RUN_KEY_FIELDS], ['maxAgeMs', ['webhook_sent_at']], ['valuesSchema', ['values']], ['langgraph', ['run_id']], ['queue', RUN_KEY_FIELDS]
]

/** Options that read fields of every body, or that do not combine, refused together. */
function checkCombinations (options: Resolved<typeof OPTIONS>, ackGiven: boolean): void {
  const { allowedFields, queue, redis } = options
  for (const [feature, needed] of READS) if (options[feature] !== undefined) requireRunFields(allowedFields, needed, feature)
  if (options.langgraph !== undefined && !options.tokenSources.includes('query')) fail('langgraph needs tokenSources to include "query": a LangGraph server sends the token in the webhook URL')
  if (queue === undefined) return
  if (queue.connection === undefined && redis === undefined) fail(`queue.connection is required: ${REDIS_FORMS} (or give it as the plugin's redis option)`)
  // The queue's Redis is the plugin's `redis`, or its own `queue.connection`: not two different ones.
  const clients = [queue.connection, redis].map((spec) => spec === undefined || 'options' in spec ? spec : spec.client)
  if (!clients.includes(undefined) && clients[0] !== clients[1]) fail('redis and queue.connection are both given: give Redis once, as redis, and leave queue.connection out')
  if (options.dedupe !== undefined) fail('dedupe and queue do not combine: with queue, the job key (run_id and status) already makes a duplicate a no-op; remove dedupe')
  if (ackGiven) fail('ack does not apply with queue: the route replies 202 once Redis stored the run, and workers run the listeners; remove ack')
  if (!options.redactToken) fail('redactToken: false does not combine with queue: jobs in Redis (and queue.failed()) must never hold the token')
}

/** Validates the options without touching the caller's object. */
export function resolveOptions (given: unknown): ResolvedOptions {
  const resolved = resolveTable(given, OPTIONS, 'options', '')
  checkCombinations(resolved, (given as Record<string, unknown>).ack !== undefined)
  const { token, langgraph, queue, prefix, logLevel, logSerializers, ...options } = resolved
  // The webhook URL carries the first token: the newest, while rotating.
  langgraph?.webhookUrl.searchParams.set('token', token[0])
  return {
    ...options,
    queue: queue === undefined ? undefined : { ...queue, connection: (queue.connection ?? options.redis)! },
    tokens: token,
    langgraph: langgraph === undefined ? undefined : { ...langgraph, webhookUrl: langgraph.webhookUrl.href },
    shortToken: token.some((candidate) => candidate.length < MIN_TOKEN_LENGTH),
    context: Object.fromEntries(Object.entries({ prefix, logLevel, logSerializers }).filter(([, value]) => value !== undefined))
  }
}
