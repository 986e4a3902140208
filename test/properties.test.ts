// Property-based tests: arbitrary requests against the route, each checked
// against a model of the reply that is written independently of the plugin
// (JSON.parse and the run schema as the oracle of a valid body, the spec of
// the credentials as the oracle of a valid token).
//
// Invariants, for every request:
// - the reply is the one the model predicts; a 5xx comes only from a
//   listener that failed;
// - a listener runs only for a request with valid credentials and a body
//   that is a valid run, once per delivery (or never, for a duplicate under
//   dedupe);
// - the token (right or wrong) appears in no log line;
// and afterwards the next valid delivery is served.
import { test } from 'tap'
import fc from 'fast-check'
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import langgraphWebhooks, { RunWebhookSchema, type LanggraphWebhooksOptions, type RunWebhook } from '../lib/index.js'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'

const TOKEN = 'property-token-9c4e1f7a2b6d8e0f3a5c7e9b1d3f5a7c'
const WRONG = 'property-wrong-0a1b2c3d4e5f60718293a4b5c6d7e8f9'
const PATH = '/webhooks/langgraph'
const NUM_RUNS = Number(process.env.PROPERTY_RUNS ?? 200)
const runCheck = TypeCompiler.Compile(RunWebhookSchema)

// ---------------------------------------------------------------- the oracle

/** The parsed body when it is valid JSON without prototype-poisoning keys, else `undefined`. */
function parseLikeAJsonParser (text: string): { value: unknown } | undefined {
  if (text.charCodeAt(0) === 0xFEFF) text = text.slice(1)
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return undefined
  }
  const stack = [value]
  while (stack.length > 0) {
    const node = stack.pop()
    if (node === null || typeof node !== 'object') continue
    if (Object.hasOwn(node, '__proto__')) return undefined
    const ctor = (node as Record<string, unknown>).constructor
    if (Object.hasOwn(node, 'constructor') && ctor !== null && typeof ctor === 'object' && Object.hasOwn(ctor, 'prototype')) return undefined
    stack.push(...Object.values(node))
  }
  return { value }
}

const BEARER_SCHEMES = ['Bearer', 'bearer', 'BEARER', 'Basic', 'Token', 'Bearer:', '']
const SEPARATORS = [' ', '  ', '', '\t']
const TRAILERS = ['', ' ', '  ', '\t', 'x']

interface Credentials {
  query: string[]
  bearer: { scheme: string, separator: string, value: string, trailer: string } | null
}

/** RFC 6750: `Bearer 1*SP token`, no other scheme; `?token=` at most once; every credential present must be right. */
function credentialsValid ({ query, bearer }: Credentials): boolean {
  if (query.length > 1) return false
  if (query.length === 1 && query[0] !== TOKEN) return false
  if (bearer !== null) {
    const ok = bearer.scheme.toLowerCase() === 'bearer' && /^ +$/.test(bearer.separator) && bearer.value === TOKEN && /^ *$/.test(bearer.trailer)
    if (!ok) return false
  }
  return query.length === 1 || bearer !== null
}

/** The same judgement, made on what a listener received. */
function requestCredentialsValid (request: FastifyRequest): boolean {
  const query = (request.query as Record<string, unknown>).token
  const header = request.headers.authorization
  if (query === undefined && header === undefined) return false
  if (query !== undefined && query !== TOKEN) return false
  return header === undefined || new RegExp(`^bearer +${TOKEN} *$`, 'i').test(header)
}

const SUPPORTED_TYPES = ['application/json', 'application/json; charset=utf-8', 'text/plain;charset=UTF-8', 'text/plain', 'TEXT/PLAIN; charset=utf-8', 'Application/Json']
const UNSUPPORTED_TYPES = ['application/xml', 'text/html', 'application/x-www-form-urlencoded', 'application/octet-stream', 'application/vnd.api+json', 'multipart/form-data; boundary=x', 'text/plainx']

type ListenerMode = 'ok' | 'async ok' | 'throw' | 'reject' | 'throw a non-error' | 'return a thenable that throws'
const FAILING: ReadonlySet<ListenerMode> = new Set(['throw', 'reject', 'throw a non-error', 'return a thenable that throws'])

interface Sample {
  credentials: Credentials
  extraQuery: Array<[string, string]>
  contentType: { kind: 'supported' | 'unsupported' | 'arbitrary' | 'none', value?: string }
  encoding: string | null
  extraHeaders: Record<string, string>
  body: Buffer
  mode: ListenerMode
}

// ---------------------------------------------------------------- generators

const dateTime = fc.date({ min: new Date('1970-01-01T00:00:00Z'), max: new Date('9999-12-31T23:59:59Z'), noInvalidDate: true })
  .map((date) => date.toISOString())
const odd = fc.jsonValue({ maxDepth: 2 })

/** Valid runs of every shape the senders use, with arbitrary values and unknown fields. */
const validRun = fc.record({
  // A small pool of ids as well: duplicates for dedupe.
  run_id: fc.oneof(fc.uuid(), fc.string({ minLength: 1, maxLength: 8 }), { weight: 2, arbitrary: fc.constantFrom('run-a', 'run-b', 'run-c') }),
  status: fc.oneof({ weight: 3, arbitrary: fc.constant('success') }, fc.constantFrom('error', 'interrupted', 'timeout', 'rollback', 'pending', 'running'), fc.string({ minLength: 1, maxLength: 12 })),
  values: fc.option(fc.dictionary(fc.string({ maxLength: 6 }), odd, { maxKeys: 4 }), { nil: null }),
  dropValues: fc.boolean(),
  created_at: dateTime,
  webhook_sent_at: fc.oneof(dateTime, fc.constant('2026-11-28T06:52:05.263118+00:00')),
  extra: fc.dictionary(fc.string({ maxLength: 6 }), odd, { maxKeys: 3 }),
  webhook: fc.oneof(fc.constant(`http://h/webhooks/langgraph?token=${TOKEN}`), fc.string({ maxLength: 20 }), fc.constant(null))
}).map(({ dropValues, extra, webhook, ...fields }) => ({
  ...extra,
  ...buildRunWebhook({ ...fields, values: dropValues ? undefined : fields.values, kwargs: { webhook } })
}))

/** A valid run with one field replaced by an arbitrary JSON value, or removed. */
const mutatedRun = fc.tuple(validRun, fc.constantFrom('run_id', 'thread_id', 'assistant_id', 'status', 'created_at', 'updated_at', 'metadata', 'kwargs', 'webhook_sent_at', 'values', 'error', 'multitask_strategy', 'run_ended_at'), fc.option(odd))
  .map(([run, field, value]) => {
    const copy: Record<string, unknown> = { ...run }
    if (value === null) delete copy[field]
    else copy[field] = value
    return copy
  })

/** Counterexamples print bodies as text rather than as byte arrays. */
function readable (buffer: Buffer): Buffer {
  return Object.assign(buffer, { [fc.toStringMethod]: () => `Buffer<${JSON.stringify(buffer.toString('utf8'))}>` })
}

const body: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 8, arbitrary: validRun.map((run) => Buffer.from(JSON.stringify(run))) },
  { weight: 3, arbitrary: mutatedRun.map((run) => Buffer.from(JSON.stringify(run))) },
  { weight: 2, arbitrary: fc.json({ maxDepth: 3 }).map((text) => Buffer.from(text)) },
  { weight: 1, arbitrary: fc.string({ maxLength: 40 }).map((text) => Buffer.from(text)) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((bytes) => Buffer.from(bytes)) },
  { weight: 1, arbitrary: validRun.map((run) => Buffer.from('\uFEFF' + JSON.stringify(run))) },
  { weight: 1, arbitrary: fc.tuple(validRun, fc.uint8Array({ minLength: 1, maxLength: 4 })).map(([run, bytes]) => Buffer.concat([Buffer.from(JSON.stringify(run)), Buffer.from(bytes)])) },
  { weight: 1, arbitrary: validRun.map((run) => Buffer.from(JSON.stringify(run).replace('{', '{"__proto__":{"x":1},'))) }
).map(readable)

const bearerHeader = fc.record({
  scheme: fc.constantFrom(...BEARER_SCHEMES),
  separator: fc.constantFrom(...SEPARATORS),
  value: fc.constantFrom(TOKEN, WRONG, ''),
  trailer: fc.constantFrom(...TRAILERS)
})
const rightBearer = { scheme: 'Bearer', separator: ' ', value: TOKEN, trailer: '' }

const credentials: fc.Arbitrary<Credentials> = fc.oneof(
  { weight: 5, arbitrary: fc.constant<Credentials>({ query: [TOKEN], bearer: null }) },
  { weight: 2, arbitrary: fc.constant<Credentials>({ query: [], bearer: rightBearer }) },
  { weight: 1, arbitrary: fc.constant<Credentials>({ query: [TOKEN], bearer: rightBearer }) },
  {
    weight: 4,
    arbitrary: fc.record({
      query: fc.array(fc.constantFrom(TOKEN, WRONG, '', TOKEN.slice(1), TOKEN + 'x', TOKEN.toUpperCase()), { maxLength: 3 }),
      bearer: fc.option(bearerHeader)
    })
  }
)

const printable = fc.string({ unit: 'grapheme-ascii', maxLength: 30 })

const sample: fc.Arbitrary<Sample> = fc.record({
  credentials,
  extraQuery: fc.array(fc.tuple(printable.filter((key) => key !== 'token' && key !== ''), printable), { maxLength: 3 }),
  contentType: fc.oneof(
    { weight: 14, arbitrary: fc.constantFrom(...SUPPORTED_TYPES).map((value) => ({ kind: 'supported' as const, value })) },
    { weight: 1, arbitrary: fc.constantFrom(...UNSUPPORTED_TYPES).map((value) => ({ kind: 'unsupported' as const, value })) },
    { weight: 1, arbitrary: printable.map((value) => ({ kind: 'arbitrary' as const, value })) },
    { weight: 1, arbitrary: fc.constant({ kind: 'none' as const }) }
  ),
  encoding: fc.oneof({ weight: 8, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.constantFrom('gzip', 'br', 'deflate', 'identity', 'x-custom') }),
  extraHeaders: fc.dictionary(
    fc.constantFrom('x-forwarded-for', 'user-agent', 'accept', 'x-request-id', 'cookie', 'x-langgraph', 'expect', 'accept-encoding'),
    printable,
    { maxKeys: 3 }
  ),
  body,
  mode: fc.constantFrom<ListenerMode>('ok', 'ok', 'ok', 'async ok', 'throw', 'reject', 'throw a non-error', 'return a thenable that throws')
})

// ---------------------------------------------------------------- the model

interface Prediction {
  /** The statuses the reply may have. */
  statuses: number[]
  /** The run a listener should get, for a valid delivery. */
  run?: Record<string, unknown>
}

function predict (s: Sample, ack: 'handled' | 'received'): Prediction {
  if (!credentialsValid(s.credentials)) return { statuses: [401] }
  if (s.encoding !== null && s.encoding !== 'identity') return { statuses: [415] }
  const parsed = parseLikeAJsonParser(s.body.toString('utf8'))
  const valid = parsed !== undefined && runCheck.Check(parsed.value)
  const success = ack === 'received' ? 202 : FAILING.has(s.mode) ? 500 : 204
  const ifBody = valid ? success : 400
  switch (s.contentType.kind) {
    case 'supported': return { statuses: [ifBody], run: valid ? parsed.value as Record<string, unknown> : undefined }
    case 'unsupported': return { statuses: [415] }
    case 'none': return { statuses: [s.body.length === 0 ? 400 : 415] }
    // An arbitrary string may happen to name a supported type ("text/plain;…").
    case 'arbitrary': return { statuses: [415, ifBody], run: valid ? parsed.value as Record<string, unknown> : undefined }
  }
}

function buildUrl (s: Sample): string {
  const params = [
    ...s.credentials.query.map((value) => `token=${encodeURIComponent(value)}`),
    ...s.extraQuery.map(([key, value]) => `${encodeURIComponent(key)}=${encodeURIComponent(value)}`)
  ]
  // Shuffle deterministically: the token need not come first.
  params.sort((a, b) => (a.length % 3) - (b.length % 3))
  return params.length === 0 ? PATH : `${PATH}?${params.join('&')}`
}

function buildHeaders (s: Sample): Record<string, string> {
  const headers: Record<string, string> = { ...s.extraHeaders }
  if (s.contentType.value !== undefined) headers['content-type'] = s.contentType.value
  if (s.encoding !== null) headers['content-encoding'] = s.encoding
  const b = s.credentials.bearer
  if (b !== null) headers.authorization = `${b.scheme}${b.separator}${b.value}${b.trailer}`
  return headers
}

// ---------------------------------------------------------------- the harness

interface Call { run: RunWebhook, request: FastifyRequest, credentialsValid: boolean, validRun: boolean }

async function receiver (options: Partial<LanggraphWebhooksOptions>) {
  const lines: string[] = []
  const app: FastifyInstance = Fastify({ logger: { level: 'trace', stream: { write: (line: string) => { lines.push(line) } } } })
  await app.register(langgraphWebhooks, { token: TOKEN, ...options })
  const calls: Call[] = []
  let mode: ListenerMode = 'ok'
  app.langgraphWebhooks.onRun((run, { request }) => {
    calls.push({ run, request: request!, credentialsValid: requestCredentialsValid(request!), validRun: runCheck.Check(run) })
    switch (mode) {
      case 'ok': return
      case 'async ok': return new Promise((resolve) => setImmediate(resolve))
      case 'throw': throw new Error('listener threw')
      case 'reject': return Promise.reject(new Error('listener rejected'))
      case 'throw a non-error': throw null // eslint-disable-line no-throw-literal
      case 'return a thenable that throws': return { then () { throw new Error('then threw') } }
    }
  })
  return { app, lines, calls, setMode: (next: ListenerMode) => { mode = next } }
}

const configurations: Array<[string, Partial<LanggraphWebhooksOptions>]> = [
  ['default options (ack: handled)', {}],
  ['ack: received', { ack: 'received' }],
  ['dedupe: true', { dedupe: true }]
]

for (const [name, options] of configurations) {
  test(`arbitrary requests, ${name}: the predicted reply, no 5xx but from a failing listener, no listener without a valid token and run, no token in the logs`, async (t) => {
    const { app, lines, calls, setMode } = await receiver(options)
    t.teardown(() => app.close())
    const ack = options.ack ?? 'handled'
    /** dedupe: keys of deliveries handled successfully (204). */
    const handled = new Set<string>()
    let replies = 0
    let duplicates = 0
    const statuses = new Map<number, number>()

    const send = async (s: Sample, expected: number[], expectedCalls: (status: number) => number) => {
      const before = calls.length
      const reply = await app.inject({ method: 'POST', url: buildUrl(s), headers: buildHeaders(s), payload: s.body })
      replies++
      statuses.set(reply.statusCode, (statuses.get(reply.statusCode) ?? 0) + 1)
      const made = calls.slice(before)
      if (!expected.includes(reply.statusCode)) {
        throw new Error(`reply ${reply.statusCode} (${reply.body}), expected one of ${expected.join(', ')}`)
      }
      if (reply.statusCode >= 500 && made.length === 0) throw new Error(`a ${reply.statusCode} without a listener call`)
      if (made.length !== expectedCalls(reply.statusCode)) throw new Error(`${made.length} listener calls for a ${reply.statusCode}`)
      for (const call of made) {
        if (!call.credentialsValid) throw new Error('a listener ran for a request without valid credentials')
        if (!call.validRun) throw new Error('a listener ran with an invalid run')
      }
      if (lines.some((line) => line.includes(TOKEN) || line.includes(WRONG))) throw new Error('a log line holds a token')
      return reply.statusCode
    }
    const reachesListeners = (status: number) => (status === 204 || status === 202 || status === 500 ? 1 : 0)

    await fc.assert(fc.asyncProperty(sample, fc.boolean(), async (s, resend) => {
      setMode(s.mode)
      const prediction = predict(s, ack)
      const key = prediction.run === undefined ? undefined : `${String(prediction.run.run_id)}:${String(prediction.run.status)}`
      const duplicate = options.dedupe === true && key !== undefined && handled.has(key)
      if (duplicate) duplicates++
      const status = duplicate
        ? await send(s, prediction.statuses.map((status) => (status === 500 ? 204 : status)), () => 0)
        : await send(s, prediction.statuses, reachesListeners)
      if (status === 204 && key !== undefined) handled.add(key)

      // The sender retries the same bytes, now to a listener that succeeds.
      if (resend && options.dedupe === true) {
        setMode('ok')
        if (status === 204) {
          duplicates++
          await send(s, [204], () => 0)
        } else if (status === 500) {
          await send(s, [204], () => 1)
          handled.add(key!)
        } else {
          await send(s, [status], () => 0)
        }
      }
    }), { numRuns: NUM_RUNS })

    t.ok(replies >= NUM_RUNS, `${replies} requests; replies seen: ${JSON.stringify(Object.fromEntries(statuses))}`)
    t.ok([400, 401, 415].every((status) => statuses.has(status)), 'the samples reached 400, 401 and 415')
    t.ok(statuses.has(ack === 'received' ? 202 : 204), 'and valid deliveries')
    if (options.dedupe === true) t.ok(duplicates > 0, `${duplicates} duplicates of handled deliveries were acknowledged without a listener call`)

    setMode('ok')
    const next = await deliverRun(app, buildRunWebhook(), { token: TOKEN })
    t.equal(next.statusCode, ack === 'received' ? 202 : 204, 'the next valid delivery is served')
  })
}

test('arbitrary query strings built from token-like pieces: a listener runs only when ?token= is exactly the token, once', async (t) => {
  const { app, calls } = await receiver({ tokenSources: ['query'] })
  t.teardown(() => app.close())
  const piece = fc.constantFrom('token', 'TOKEN', '%74oken', 'tok%65n', '=', '&', '[]', '[0]', '%', '%2', '+', ';', '.', TOKEN, WRONG, TOKEN.slice(0, 10), '%3D', '%26', '#')
  const query = fc.tuple(fc.array(piece, { maxLength: 6 }), fc.boolean(), fc.array(piece, { maxLength: 6 }))
    .map(([before, withToken, after]) => [...before, ...(withToken ? [`&token=${TOKEN}&`] : []), ...after].join(''))
  const payload = JSON.stringify(buildRunWebhook())
  let accepted = 0

  await fc.assert(fc.asyncProperty(query, async (q) => {
    const before = calls.length
    const reply = await app.inject({ method: 'POST', url: `${PATH}?${q}`, headers: { 'content-type': 'application/json' }, payload })
    const made = calls.slice(before)
    const parsed = (reply.statusCode === 204 ? made[0]?.request.query : undefined) as Record<string, unknown> | undefined
    if (reply.statusCode === 204) {
      accepted++
      if (made.length !== 1 || parsed?.token !== TOKEN) throw new Error(`204 for ?${q}, token seen: ${String(parsed?.token)}`)
    } else {
      if (reply.statusCode !== 401) throw new Error(`reply ${reply.statusCode} for ?${q}`)
      if (made.length !== 0) throw new Error(`a listener ran for ?${q}`)
    }
  }), { numRuns: NUM_RUNS * 2 })
  t.pass(`${accepted} of ${NUM_RUNS * 2} query strings were accepted`)
  t.equal((await deliverRun(app, buildRunWebhook(), { token: TOKEN })).statusCode, 204, 'the next valid delivery is served')
})
