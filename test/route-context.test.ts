/**
 * The route's own context: whatever parsers the host registered, before or
 * after the plugin, only application/json and text/plain reach the webhook
 * route; Fastify's register options (prefix, logLevel, logSerializers) are
 * honoured; other methods are answered 405 by the plugin, token masked.
 */
import { test, type Test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import langgraphWebhooks, { type LanggraphWebhooksOptions } from '../lib/index.js'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'
import { TOKEN } from './helpers/app.js'

const PATH = '/webhooks/langgraph'

function logged (level = 'trace') {
  const lines: string[] = []
  const app = Fastify({ logger: { level, stream: { write: (line: string) => { lines.push(line) } } } })
  return { app, lines }
}

type HostParsers = (app: FastifyInstance, calls: string[]) => void

const vendorJson: HostParsers = (app, calls) => {
  // Plain JSON.parse: no prototype-poisoning check.
  app.addContentTypeParser('application/vnd.api+json', { parseAs: 'string' }, (request, body, done) => {
    calls.push('vendor')
    done(null, JSON.parse(body as string))
  })
}
const catchAll: HostParsers = (app, calls) => {
  app.addContentTypeParser('*', { parseAs: 'string' }, (request, body, done) => {
    calls.push('*')
    done(null, JSON.parse(body as string))
  })
}

async function hostWith (t: Test, parsers: HostParsers, order: 'before' | 'after' | 'after await') {
  const calls: string[] = []
  const runs: unknown[] = []
  const app = Fastify()
  t.teardown(() => app.close())
  if (order === 'before') parsers(app, calls)
  const registered = app.register(langgraphWebhooks, { token: TOKEN, onRun: (run) => { runs.push(run) } })
  if (order === 'after') parsers(app, calls)
  await registered
  if (order === 'after await') parsers(app, calls)
  app.post('/host', async (request) => ({ parsed: request.body }))
  await app.ready()
  return { app, calls, runs }
}

test('host parsers never reach the webhook route, registered before or after the plugin', async (t) => {
  const poisoned = JSON.stringify(buildRunWebhook()).replace(/^\{/, '{"__proto__":{"polluted":true},')
  for (const [name, parsers, type] of [['a vendor JSON parser', vendorJson, 'application/vnd.api+json'], ['a \'*\' catch-all', catchAll, 'application/x-anything']] as const) {
    for (const order of ['before', 'after', 'after await'] as const) {
      t.test(`${name}, ${order}`, async (t) => {
        const { app, calls, runs } = await hostWith(t, parsers, order)
        for (const body of [JSON.stringify(buildRunWebhook()), poisoned]) {
          const res = await app.inject({ method: 'POST', url: `${PATH}?token=${TOKEN}`, headers: { 'content-type': type }, payload: body })
          t.equal(res.statusCode, 415)
          t.same(res.json(), {
            statusCode: 415,
            code: 'FST_LANGGRAPH_WEBHOOKS_UNSUPPORTED_MEDIA_TYPE',
            error: 'Unsupported Media Type',
            message: 'Unsupported content type: send the run webhook as application/json or text/plain (a charset parameter is fine)'
          }, 'the 415 names the accepted types')
        }
        t.same(calls, [], 'the host parser never saw a webhook body')
        t.equal(runs.length, 0, 'no listener call')

        // Authentication still comes first.
        const unauthorized = await app.inject({ method: 'POST', url: `${PATH}?token=wrong`, headers: { 'content-type': type }, payload: '{}' })
        t.equal(unauthorized.statusCode, 401)

        // Our two types still work, parameters included.
        for (const accepted of ['application/json', 'application/json; charset=utf-8', 'text/plain', 'text/plain;charset=UTF-8', 'Text/Plain; charset=utf-8']) {
          const res = await app.inject({ method: 'POST', url: `${PATH}?token=${TOKEN}`, headers: { 'content-type': accepted }, payload: JSON.stringify(buildRunWebhook()) })
          t.equal(res.statusCode, 204, accepted)
        }
        t.equal(runs.length, 5)

        // The host's own routes keep its parser.
        const host = await app.inject({ method: 'POST', url: '/host', headers: { 'content-type': type }, payload: '{"a":1}' })
        t.same(host.json(), { parsed: { a: 1 } }, 'the host route still parses with its own parser')
        t.same(calls, [parsers === catchAll ? '*' : 'vendor'])
      })
    }
  }
})

test('a body without a content type is refused with the same 415', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  catchAll(app, [])
  await app.register(langgraphWebhooks, { token: TOKEN })
  const res = await app.inject({ method: 'POST', url: `${PATH}?token=${TOKEN}`, payload: Buffer.from(JSON.stringify(buildRunWebhook())) })
  t.equal(res.statusCode, 415)
  t.match(res.json().message, /application\/json or text\/plain/)
})

test('prefix: the route is registered under it and app.langgraphWebhooks.path includes it', async (t) => {
  const cases: Array<[string, Partial<LanggraphWebhooksOptions> & { prefix?: string }, string | undefined, string]> = [
    ['prefix option', { prefix: '/api' }, undefined, '/api/webhooks/langgraph'],
    ['prefix option with a trailing slash', { prefix: '/api/' }, undefined, '/api/webhooks/langgraph'],
    ['prefix option without a leading slash', { prefix: 'api' }, undefined, '/api/webhooks/langgraph'],
    ['prefix option and path /', { prefix: '/hook', path: '/' }, undefined, '/hook'],
    ['surrounding prefix', {}, '/v1', '/v1/webhooks/langgraph'],
    ['surrounding prefix with a trailing slash', {}, '/v1/', '/v1/webhooks/langgraph'],
    ['surrounding prefix and path /', { path: '/' }, '/v1', '/v1'],
    ['both', { prefix: 'api', path: '/hooks' }, '/v1', '/v1/api/hooks']
  ]
  for (const [name, options, surrounding, expected] of cases) {
    t.test(name, async (t) => {
      const runs: unknown[] = []
      const app = Fastify()
      t.teardown(() => app.close())
      let scope: FastifyInstance = app
      if (surrounding === undefined) {
        await app.register(langgraphWebhooks, { token: TOKEN, ...options, onRun: (run) => { runs.push(run) } })
      } else {
        await app.register(async (child) => {
          await child.register(langgraphWebhooks, { token: TOKEN, ...options, onRun: (run) => { runs.push(run) } })
          scope = child
        }, { prefix: surrounding })
      }
      await app.ready()
      t.equal(scope.langgraphWebhooks.path, expected, 'the decorator gives the full path')
      t.equal((await deliverRun(app, buildRunWebhook(), { token: TOKEN, path: expected })).statusCode, 204)
      t.equal((await deliverRun(scope, buildRunWebhook(), { token: TOKEN })).statusCode, 204, 'deliverRun defaults to the decorator\'s path')
      t.equal(runs.length, 2)
      if (expected !== PATH) {
        t.equal((await deliverRun(app, buildRunWebhook(), { token: TOKEN, path: PATH })).statusCode, 404, 'nothing at the unprefixed path')
      }
      if (surrounding !== undefined) {
        t.equal((await deliverRun(app, buildRunWebhook(), { token: TOKEN })).statusCode, 404, 'an instance without the plugin: the default path')
      }
    })
  }
})

test('logLevel: the route logs at its own level; the host keeps its own', async (t) => {
  const { app, lines } = logged('info')
  t.teardown(() => app.close())
  await app.register(langgraphWebhooks, { token: TOKEN, logLevel: 'warn', onRun: () => { throw new Error('boom') } })
  app.get('/host', async () => 'ok')
  await app.inject({ method: 'POST', url: `${PATH}?token=wrong`, headers: { 'content-type': 'application/json' }, payload: '{}' })
  const failed = await deliverRun(app, buildRunWebhook(), { token: TOKEN })
  t.equal(failed.statusCode, 500)
  const entries = lines.map((line) => JSON.parse(line))
  const route = entries.filter((entry) => entry.req?.url?.startsWith(PATH) || entry.reqId !== undefined)
  t.ok(route.length > 0)
  t.ok(route.every((entry) => entry.level >= 40), 'no info line from the route')
  t.ok(route.some((entry) => entry.level === 50 && /listeners failed/.test(entry.msg)), 'errors are still logged')
  lines.length = 0
  await app.inject({ method: 'GET', url: '/host' })
  t.ok(lines.some((line) => JSON.parse(line).msg === 'incoming request'), 'the host\'s routes log at info')
})

test('logSerializers: applied to the route\'s log lines; a req serializer, which would unmask the token, is refused', async (t) => {
  const { app, lines } = logged('info')
  t.teardown(() => app.close())
  await app.register(langgraphWebhooks, { token: TOKEN, logSerializers: { res: (reply: { statusCode: number }) => ({ code: reply.statusCode, tagged: true }) as any } })
  await deliverRun(app, buildRunWebhook(), { token: TOKEN })
  const completed = lines.map((line) => JSON.parse(line)).find((entry) => entry.msg === 'request completed')
  t.same(completed.res, { code: 204, tagged: true })
  t.notOk(lines.some((line) => line.includes(TOKEN)), 'the URL is still masked')

  await t.rejects(async () => { await Fastify().register(langgraphWebhooks, { token: TOKEN, logSerializers: { req: () => ({}) as any } }) }, {
    code: 'FST_LANGGRAPH_WEBHOOKS_INVALID_OPTION',
    message: /logSerializers\.req would replace the serializer that masks the token/
  })
})

test('register options of the wrong type are refused', async (t) => {
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['numeric prefix', { prefix: 5 }, /^prefix must be a URL path such as "\/api", got 5$/],
    ['prefix with a query', { prefix: '/api?x' }, /prefix must be a URL path/],
    ['empty logLevel', { logLevel: '' }, /^logLevel must be a log level such as "warn", got the string ""$/],
    ['numeric logLevel', { logLevel: 30 }, /logLevel must be a log level/],
    ['logSerializers of strings', { logSerializers: { res: 'x' } }, /^logSerializers must be an object of functions/],
    ['logSerializers as a function', { logSerializers: () => {} }, /logSerializers must be an object of functions.*got a function/]
  ]
  for (const [name, options, message] of cases) {
    await t.rejects(async () => { await Fastify().register(langgraphWebhooks, { token: TOKEN, ...options } as any) }, { code: 'FST_LANGGRAPH_WEBHOOKS_INVALID_OPTION', message }, name)
  }
})

test('other methods get 405 with Allow: POST from the plugin; no log line holds the token, at trace level', async (t) => {
  const { app, lines } = logged('trace')
  t.teardown(() => app.close())
  let calls = 0
  await app.register(langgraphWebhooks, { token: TOKEN, prefix: '/api', onRun: () => { calls++ } })
  const body = JSON.stringify(buildRunWebhook())
  for (const method of ['GET', 'HEAD', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const) {
    for (const credentials of [{ url: `/api${PATH}?token=${TOKEN}` }, { url: `/api${PATH}`, headers: { authorization: `Bearer ${TOKEN}` } }, { url: `/api${PATH}?token=wrong` }, { url: `/api${PATH}` }]) {
      const hasBody = method !== 'GET' && method !== 'HEAD'
      const res = await app.inject({ method, ...credentials, headers: { ...credentials.headers, ...(hasBody ? { 'content-type': 'application/json' } : {}) }, payload: hasBody ? body : undefined })
      t.equal(res.statusCode, 405, `${method} ${credentials.url}`)
      t.equal(res.headers.allow, 'POST')
      if (method !== 'HEAD') {
        t.same(res.json(), { statusCode: 405, code: 'FST_LANGGRAPH_WEBHOOKS_METHOD_NOT_ALLOWED', error: 'Method Not Allowed', message: 'Method not allowed: run webhooks are sent with POST' })
      }
    }
  }
  t.equal(calls, 0)
  t.ok(lines.length > 24, 'the requests were logged')
  t.ok(lines.some((line) => line.includes('[REDACTED]')), 'the URL was logged, masked')
  t.notOk(lines.some((line) => line.includes(TOKEN)), 'no line holds the token')
  // Trailing-slash and case variants stay the host router's.
  t.equal((await app.inject({ method: 'GET', url: `/api${PATH}/` })).statusCode, 404)
  t.equal((await app.inject({ method: 'GET', url: `/API${PATH}` })).statusCode, 404)
})
