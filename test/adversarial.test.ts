// Adversarial requests, one by one, each with the reply a plugin user should
// expect. The rule behind every expectation: bad input is a 4xx that names
// the problem, never a 5xx, a crash or a listener call; input that a sender
// could legitimately produce (a BOM, odd bytes in a string, deep `values`)
// is delivered.
import { test, type Test } from 'tap'
import { request as httpRequest } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import { gzipSync, deflateSync, brotliCompressSync } from 'node:zlib'
import Fastify, { type FastifyInstance, type FastifyServerOptions, type InjectOptions, type LightMyRequestResponse } from 'fastify'
import { Type } from '@sinclair/typebox'
import langgraphWebhooks, { serializeRequest, type LanggraphWebhooksOptions, type RunWebhook } from '../lib/index.js'
import { buildRunWebhook } from '../lib/testing.js'

const TOKEN = 'adversarial-token-6f1d0c2b9a8e7d6c5b4a39281706f5e4'
const PATH = '/webhooks/langgraph'
const URL = `${PATH}?token=${TOKEN}`

interface Harness {
  app: FastifyInstance
  runs: RunWebhook[]
  lines: string[]
  post: (payload: InjectOptions['payload'], options?: Partial<InjectOptions>) => Promise<LightMyRequestResponse>
}

async function harness (
  t: Test,
  options: Partial<LanggraphWebhooksOptions> = {},
  server: FastifyServerOptions = {}
): Promise<Harness> {
  const lines: string[] = []
  const app = Fastify({ logger: { level: 'trace', stream: { write: (line: string) => { lines.push(line) } } }, ...server })
  await app.register(langgraphWebhooks, { token: TOKEN, ...options })
  const runs: RunWebhook[] = []
  app.langgraphWebhooks.onRun((run) => { runs.push(run) })
  t.teardown(() => app.close())
  const post: Harness['post'] = (payload, more = {}) => app.inject({
    method: 'POST',
    url: URL,
    payload,
    ...more,
    headers: { 'content-type': 'application/json', ...more.headers }
  })
  return { app, runs, lines, post }
}

const validText = (overrides: Record<string, unknown> = {}) => JSON.stringify(buildRunWebhook(overrides))

/** A valid run with `"values": <raw JSON text>`. */
function withRawValues (raw: string): string {
  const body = validText({ values: { placeholder: 0 } })
  return body.replace('{"placeholder":0}', raw)
}

test('prototype poisoning', async (t) => {
  const { post, runs } = await harness(t)

  const proto = await post(validText().replace('{', '{"__proto__":{"polluted":true},'))
  t.equal(proto.statusCode, 400, 'a top-level "__proto__" key: 400')
  t.match(proto.json().message, /__proto__/)

  const nested = await post(withRawValues('{"deep":{"__proto__":{"polluted":true}}}'))
  t.equal(nested.statusCode, 400, 'a "__proto__" key deep inside values: 400')

  const escaped = await post(validText().replace('{', '{"\\u005f_proto__":{"polluted":true},'))
  t.equal(escaped.statusCode, 400, 'a "__proto__" key spelt with a unicode escape: 400')

  const ctor = await post(validText().replace('{', '{"constructor":{"prototype":{"polluted":true}},'))
  t.equal(ctor.statusCode, 400, 'a "constructor": { "prototype": … } key: 400')

  const ctorInValues = await post(withRawValues('{"constructor":{"prototype":{"polluted":true}}}'))
  t.equal(ctorInValues.statusCode, 400, 'constructor.prototype inside values: 400')

  const plainCtor = await post(withRawValues('{"constructor":"a user field","prototype":1}'))
  t.equal(plainCtor.statusCode, 204, 'a "constructor" key without "prototype" under it is an ordinary field: 204')

  const query = await post(validText(), { url: `${URL}&__proto__=x&constructor[prototype][polluted]=1` })
  t.equal(query.statusCode, 204, '__proto__ and constructor keys in the query string: ignored, 204')

  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype is untouched')
  t.equal(runs.length, 2, 'only the two good deliveries reached the listener')
})

test('deep nesting', async (t) => {
  const depth = 100_000
  const { post, runs } = await harness(t)

  const arrays = await post('['.repeat(depth) + ']'.repeat(depth))
  t.equal(arrays.statusCode, 400, 'arrays nested 100 000 deep as the body: 400 (parsed, then not a run)')
  t.match(arrays.json().message, /body: expected object/)

  const objects = await post('{"a":'.repeat(depth) + '1' + '}'.repeat(depth))
  t.equal(objects.statusCode, 400, 'objects nested 100 000 deep as the body: 400 naming the missing fields')
  t.match(objects.json().message, /run_id is required/)

  const poisoned = await post('{"constructor":' + '{"a":'.repeat(depth) + '{"__proto__":{}}' + '}'.repeat(depth) + '}')
  t.equal(poisoned.statusCode, 400, 'a __proto__ key 100 000 levels down is still found: 400')

  const inValues = await post(withRawValues('{"tree":' + '['.repeat(depth) + ']'.repeat(depth) + '}'))
  t.equal(inValues.statusCode, 204, 'a valid run with values nested 100 000 deep: 204, delivered (depth within values is the listener\'s business)')
  let level: unknown = runs[0]?.values?.tree
  let levels = 0
  while (Array.isArray(level) && level.length === 1) { level = level[0]; levels++ }
  t.equal(levels, depth - 1, 'the listener got the values intact')
})

test('deep nesting against a recursive valuesSchema is a 400, not a 500 from a stack overflow', async (t) => {
  const Tree = Type.Recursive((Self) => Type.Object({ child: Type.Optional(Self) }))
  const { post, runs } = await harness(t, { valuesSchema: Type.Object({ tree: Tree }) })
  const nested = (depth: number, leaf: string) => withRawValues('{"tree":' + '{"child":'.repeat(depth) + leaf + '}'.repeat(depth) + '}')

  t.equal((await post(nested(100, '{}'))).statusCode, 204, 'a tree 100 deep: 204')

  t.equal((await post(nested(1_000, '{}'))).statusCode, 204, 'a tree 1 000 deep: 204')
  // Describing why a deep tree is invalid recurses deeper than checking it.
  const cases: Array<[number, string, string]> = [[1_000, '5', 'an invalid'], [100_000, '{}', 'a valid'], [100_000, '5', 'an invalid']]
  for (const [depth, leaf, kind] of cases) {
    const reply = await post(nested(depth, leaf))
    t.equal(reply.statusCode, 400, `${kind} tree ${depth} deep: 400`)
    t.match(reply.json(), { code: 'FST_LANGGRAPH_WEBHOOKS_INVALID_RUN', message: /^Invalid run webhook: values/ })
  }
  t.equal(runs.length, 2)
  t.equal((await post(nested(10, '{}'))).statusCode, 204, 'the next delivery is served')
})

test('very long strings and large bodies', async (t) => {
  const { post, runs } = await harness(t, { bodyLimit: 4 * 1024 * 1024 })

  const longValue = 'x'.repeat(3 * 1024 * 1024)
  const long = await post(validText({ values: { text: longValue } }))
  t.equal(long.statusCode, 204, 'a 3 MiB string within bodyLimit: 204')
  t.equal((runs[0]?.values?.text as string).length, longValue.length)

  const longStatus = await post(validText({ status: 's'.repeat(1024 * 1024) }))
  t.equal(longStatus.statusCode, 204, 'a 1 MiB status (an unknown status reaches catch-all listeners): 204')

  const longKey = await post(validText({ ['k'.repeat(1024 * 1024)]: 1 }))
  t.equal(longKey.statusCode, 204, 'a 1 MiB unknown key: 204')

  const tooBig = await post(validText({ values: { text: 'x'.repeat(4 * 1024 * 1024) } }))
  t.equal(tooBig.statusCode, 413, 'a body over bodyLimit: 413')

  const longRunId = await post(validText({ run_id: '' }))
  t.equal(longRunId.statusCode, 400, 'an empty run_id: 400')

  const bearer = await post(validText(), { url: PATH, headers: { authorization: `Bearer ${'t'.repeat(1024 * 1024)}` } })
  t.equal(bearer.statusCode, 401, 'a 1 MiB bearer token (inject has no header limit): 401')
  const query = await post(validText(), { url: `${PATH}?token=${'t'.repeat(1024 * 1024)}` })
  t.equal(query.statusCode, 401, 'a 1 MiB ?token=: 401')
  t.equal(runs.length, 3)
})

test('encodings: BOM, invalid UTF-8, lone surrogates, UTF-16', async (t) => {
  const { post, runs } = await harness(t)
  const body = validText()

  const bom = await post(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(body)]))
  t.equal(bom.statusCode, 204, 'a UTF-8 BOM before the JSON: 204, ignored as JSON parsers may (RFC 8259 §8.1)')

  const bomPlain = await post(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(body)]), { headers: { 'content-type': 'text/plain;charset=UTF-8' } })
  t.equal(bomPlain.statusCode, 204, 'the same as text/plain;charset=UTF-8 (the JS server\'s type): 204')

  const invalid = Buffer.concat([Buffer.from(body.slice(0, -1) + ',"note":"'), Buffer.from([0xff, 0xc3, 0x28]), Buffer.from('"}')])
  const bad = await post(invalid)
  t.equal(bad.statusCode, 204, 'invalid UTF-8 inside a string: 204, decoded with U+FFFD replacement characters')
  t.match((runs.at(-1) as Record<string, unknown> | undefined)?.note, /^\uFFFD+\(?$/)

  const invalidOutside = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(body)])
  t.equal((await post(invalidOutside)).statusCode, 400, 'invalid UTF-8 bytes outside any string: 400')

  const surrogate = await post(body.slice(0, -1) + ',"note":"\\ud800"}')
  t.equal(surrogate.statusCode, 204, 'an escaped lone surrogate: 204 (valid JSON)')

  const utf16 = await post(Buffer.from(body, 'utf16le'), { headers: { 'content-type': 'application/json; charset=utf-16le' } })
  t.equal(utf16.statusCode, 400, 'a UTF-16 body: 400 (bodies are read as UTF-8)')

  const nul = await post(body.slice(0, -1) + ',"note":"a\\u0000b"}')
  t.equal(nul.statusCode, 204, 'an escaped NUL character inside a string: 204')

  const rawNul = await post(Buffer.concat([Buffer.from(body), Buffer.from([0])]))
  t.equal(rawNul.statusCode, 400, 'a raw NUL byte after the JSON: 400')
  t.equal(runs.length, 5)
})

test('bodies that are not a run object', async (t) => {
  const { post, app, runs } = await harness(t)
  const cases: Array<[string, InjectOptions['payload'], RegExp]> = [
    ['an empty body (application/json)', '', /body is empty/],
    ['whitespace only', ' \n\t ', /not valid JSON/],
    ['null', 'null', /body: expected object/],
    ['an array', '[]', /body: expected object/],
    ['an array holding a valid run', `[${validText()}]`, /body: expected object/],
    ['a number', '42', /body: expected object/],
    ['a string', '"run"', /body: expected object/],
    ['true', 'true', /body: expected object/],
    ['an empty object', '{}', /run_id is required/],
    ['JSON followed by garbage', validText() + 'x', /not valid JSON/],
    ['two JSON documents', validText() + validText(), /not valid JSON/],
    ['a truncated document', validText().slice(0, -1), /not valid JSON/],
    ['single-quoted JSON5', "{'run_id':'x'}", /not valid JSON/],
    ['a form body sent as JSON', 'run_id=x&status=success', /not valid JSON/]
  ]
  for (const [name, payload, message] of cases) {
    const reply = await post(payload)
    t.equal(reply.statusCode, 400, `${name}: 400`)
    t.match(reply.json().message, message, `${name}: the message says why`)
  }

  const emptyPlain = await post('', { headers: { 'content-type': 'text/plain;charset=UTF-8' } })
  t.equal(emptyPlain.statusCode, 400, 'an empty body as text/plain: 400')
  const noType = await app.inject({ method: 'POST', url: URL })
  t.equal(noType.statusCode, 400, 'no body and no content type: 400')
  t.match(noType.json().message, /body: expected object/)
  t.equal(runs.length, 0)
})

test('duplicate keys: the last one wins, as with JSON.parse, and validation sees that one', async (t) => {
  const { post, runs } = await harness(t)
  const body = validText()

  const goodLast = await post(body.replace('{', '{"status":123,'))
  t.equal(goodLast.statusCode, 204, 'a bad status first, a good one last: 204')
  t.equal(runs[0]?.status, 'success')

  const badLast = await post(body.slice(0, -1) + ',"status":123}')
  t.equal(badLast.statusCode, 400, 'a good status first, a bad one last: 400 naming status')
  t.match(badLast.json().message, /status: expected string/)

  const otherRun = await post(body.slice(0, -1) + ',"run_id":"the-last-run-id"}')
  t.equal(otherRun.statusCode, 204)
  t.equal(runs[1]?.run_id, 'the-last-run-id', 'the listener sees the last run_id (and dedupe would key on it)')
})

test('Content-Encoding: compressed bodies are refused with 415 and Accept-Encoding: identity', async (t) => {
  const { post, runs } = await harness(t)
  const body = validText()
  const cases: Array<[string, string, Buffer | string]> = [
    ['gzip', 'gzip', gzipSync(body)],
    ['deflate', 'deflate', deflateSync(body)],
    ['br', 'br', brotliCompressSync(body)],
    ['gzip declared over a plain body', 'gzip', body],
    ['an unknown coding', 'x-rot13', body],
    ['a list of codings', 'identity, gzip', gzipSync(body)]
  ]
  for (const [name, encoding, payload] of cases) {
    const reply = await post(payload, { headers: { 'content-encoding': encoding } })
    t.equal(reply.statusCode, 415, `${name}: 415`)
    t.equal(reply.headers['accept-encoding'], 'identity', `${name}: Accept-Encoding: identity (RFC 7694)`)
    t.equal(reply.json().code, 'FST_LANGGRAPH_WEBHOOKS_UNSUPPORTED_ENCODING')
  }
  t.equal(runs.length, 0, 'no listener ran')

  t.equal((await post(body, { headers: { 'content-encoding': 'identity' } })).statusCode, 204, 'identity: 204')
  t.equal((await post(body, { headers: { 'content-encoding': ' IDENTITY ' } })).statusCode, 204, 'identity in any case: 204')
  t.equal((await post(body, { headers: { 'content-encoding': '' } })).statusCode, 204, 'an empty Content-Encoding: 204')

  const unauthenticated = await post(gzipSync(body), { url: `${PATH}?token=wrong`, headers: { 'content-encoding': 'gzip' } })
  t.equal(unauthenticated.statusCode, 401, 'without a valid token the token is decided first: 401')
  t.equal(unauthenticated.headers['accept-encoding'], undefined, 'and the 401 says nothing about encodings')
})

test('content types', async (t) => {
  const { post, runs } = await harness(t)
  const body = validText()
  const accepted = ['application/json', 'application/json; charset=utf-8', 'text/plain;charset=UTF-8', 'text/plain', 'TEXT/PLAIN', 'Application/JSON']
  for (const type of accepted) t.equal((await post(body, { headers: { 'content-type': type } })).statusCode, 204, `${type}: 204`)
  const refused = ['application/xml', 'text/html', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/vnd.api+json', 'application/jsonx', 'text', ';;;==', '*/*']
  for (const type of refused) t.equal((await post(body, { headers: { 'content-type': type } })).statusCode, 415, `${type}: 415`)
  t.equal(runs.length, accepted.length)
})

test('methods other than POST are 405 with Allow: POST; other spellings of the path are the host application\'s 404s', async (t) => {
  const { app, runs, lines } = await harness(t)
  const body = validText()
  for (const method of ['GET', 'HEAD', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const) {
    const reply = await app.inject({ method, url: URL, payload: method === 'GET' || method === 'HEAD' ? undefined : body, headers: { 'content-type': 'application/json' } })
    t.equal(reply.statusCode, 405, `${method}: 405`)
    t.equal(reply.headers.allow, 'POST', `${method}: Allow: POST`)
  }
  for (const url of [`${PATH}/?token=${TOKEN}`, `${PATH.toUpperCase()}?token=${TOKEN}`, `/Webhooks/Langgraph?token=${TOKEN}`, `${PATH}//?token=${TOKEN}`, `${PATH}.json?token=${TOKEN}`]) {
    const reply = await app.inject({ method: 'POST', url, payload: body, headers: { 'content-type': 'application/json' } })
    t.equal(reply.statusCode, 404, `POST ${url.replace(TOKEN, 'TOKEN')}: 404`)
  }
  t.equal(runs.length, 0)
  // Fastify's default logger shows these URLs as they came, token included:
  // the README tells host applications to use serializeRequest (below).
  t.ok(lines.some((line) => line.includes(TOKEN)), 'without serializeRequest, the host logs the raw URL of its 404s')
})

test('the host\'s 404 log lines: serializeRequest masks the request URL; Fastify\'s "Route … not found" message needs the host\'s own not-found handler', async (t) => {
  const body = validText()
  const post = (app: FastifyInstance) => app.inject({ method: 'POST', url: `${PATH}/?token=${TOKEN}`, payload: body, headers: { 'content-type': 'application/json' } })

  const lines: string[] = []
  const app = Fastify({ logger: { level: 'info', serializers: { req: serializeRequest }, stream: { write: (line: string) => { lines.push(line) } } } })
  await app.register(langgraphWebhooks, { token: TOKEN })
  t.teardown(() => app.close())
  t.equal((await post(app)).statusCode, 404)
  const incoming = lines.map((line) => JSON.parse(line)).find((entry) => entry.msg === 'incoming request')
  t.equal(incoming.req.url, `${PATH}/?token=[REDACTED]`, 'the "incoming request" line is masked')
  const notFound = lines.filter((line) => line.includes('not found'))
  t.equal(notFound.length, 1)
  t.ok(notFound[0].includes(TOKEN), 'known limitation: Fastify\'s default 404 handler puts the raw URL in its message')

  const quiet: string[] = []
  const fixed = Fastify({ logger: { level: 'info', serializers: { req: serializeRequest }, stream: { write: (line: string) => { quiet.push(line) } } } })
  fixed.setNotFoundHandler((request, reply) => { reply.code(404).send({ statusCode: 404, error: 'Not Found', message: 'Not Found' }) })
  await fixed.register(langgraphWebhooks, { token: TOKEN })
  t.teardown(() => fixed.close())
  const reply = await post(fixed)
  t.equal(reply.statusCode, 404)
  t.notOk(reply.body.includes(TOKEN), 'nor is the token echoed in the reply')
  t.equal(quiet.filter((line) => line.includes(TOKEN)).length, 0, 'with serializeRequest and a not-found handler of its own, no line of the host holds the token')
})

test('hosts that ignore trailing slashes or case reach the route with those spellings', async (t) => {
  const { app, runs } = await harness(t, {}, { routerOptions: { ignoreTrailingSlash: true, caseSensitive: false } })
  for (const url of [`${PATH}/?token=${TOKEN}`, `/Webhooks/LangGraph?token=${TOKEN}`]) {
    const reply = await app.inject({ method: 'POST', url, payload: validText(), headers: { 'content-type': 'application/json' } })
    t.equal(reply.statusCode, 204, `POST ${url.replace(TOKEN, 'TOKEN')}: 204`)
  }
  t.equal(runs.length, 2)
})

test('query strings with the token more than once, or in odd shapes', async (t) => {
  const { post, runs } = await harness(t)
  const body = validText()
  const refused: Array<[string, string]> = [
    ['the right token twice', `token=${TOKEN}&token=${TOKEN}`],
    ['the right token, then a wrong one', `token=${TOKEN}&token=wrong`],
    ['a wrong token, then the right one', `token=wrong&token=${TOKEN}`],
    ['an empty token, then the right one', `token=&token=${TOKEN}`],
    ['token[] (no bracket syntax)', `token[]=${TOKEN}`],
    ['token[0]', `token[0]=${TOKEN}`],
    ['an empty token', 'token='],
    ['a bare "token"', 'token'],
    ['the token with a trailing space', `token=${TOKEN}%20`],
    ['the token with a trailing NUL', `token=${TOKEN}%00`],
    ['the token in upper case', `token=${TOKEN.toUpperCase()}`],
    ['only TOKEN= (keys are case-sensitive)', `TOKEN=${TOKEN}`]
  ]
  for (const [name, query] of refused) {
    const reply = await post(body, { url: `${PATH}?${query}` })
    t.equal(reply.statusCode, 401, `${name}: 401`)
  }
  const accepted: Array<[string, string]> = [
    ['a percent-encoded key (%74oken)', `%74oken=${TOKEN}`],
    ['with other parameters around it', `a=1&token=${TOKEN}&b=2`],
    ['with an unrelated TOKEN parameter', `token=${TOKEN}&TOKEN=other`],
    ['followed by a fragment-like %23', `token=${TOKEN}&x=%23`]
  ]
  for (const [name, query] of accepted) {
    const reply = await post(body, { url: `${PATH}?${query}` })
    t.equal(reply.statusCode, 204, `${name}: 204`)
  }
  const bearerConflict = await post(body, { headers: { authorization: 'Bearer wrong' } })
  t.equal(bearerConflict.statusCode, 401, 'the right ?token= with a wrong bearer header: 401')
  t.equal(runs.length, accepted.length)
})

test('over real HTTP: oversized headers, a body cut short and a malformed request do not hurt the server', async (t) => {
  const { app, runs } = await harness(t)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as AddressInfo
  const base = `http://127.0.0.1:${port}`

  const longUrl = await fetch(`${base}${PATH}?token=${TOKEN}&pad=${'p'.repeat(32 * 1024)}`, { method: 'POST', body: validText(), headers: { 'content-type': 'application/json' } })
  t.equal(longUrl.status, 431, 'a URL over Node\'s header limit: 431 from Node, before Fastify')

  const cut = await new Promise<string>((resolve) => {
    const req = httpRequest(`${base}${URL}`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': '100000' } })
    req.on('error', (error) => resolve(error.message))
    req.on('response', (res) => resolve(String(res.statusCode)))
    req.write(validText().slice(0, 50))
    setTimeout(() => req.destroy(), 50)
  })
  t.ok(cut, `a body cut short by the client: the request ends (${cut})`)

  const raw = await new Promise<string>((resolve) => {
    const socket = connect(port, '127.0.0.1')
    let data = ''
    socket.on('data', (chunk: Buffer) => { data += chunk.toString() })
    socket.on('end', () => resolve(data))
    socket.on('error', () => resolve(data))
    socket.write(`POST ${URL} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`)
  })
  t.match(raw, /^HTTP\/1\.1 400/, 'Content-Length together with Transfer-Encoding (request smuggling): 400 from Node')

  const next = await fetch(`${base}${URL}`, { method: 'POST', body: validText(), headers: { 'content-type': 'text/plain;charset=UTF-8' } })
  t.equal(next.status, 204, 'the next delivery is served')
  t.equal(runs.length, 1)
})
