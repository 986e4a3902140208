import { test } from 'tap'
import Fastify from 'fastify'
import langgraphWebhooks, { serializeRequest } from '../lib/index.js'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'
import { TOKEN, buildApp, jsServerBody } from './helpers/app.js'
import { logSink } from './helpers/log.js'

const PATH = '/webhooks/langgraph'

test('authentication decides before the body is read: a 1 MiB body with a bad token never reaches the parser', async (t) => {
  const { app } = await buildApp()
  let parsed = 0
  app.addHook('preParsing', async () => { parsed++ })
  let calls = 0
  app.langgraphWebhooks.onRun(() => { calls++ })
  const big = JSON.stringify(buildRunWebhook({ values: { big: 'x'.repeat(1024 * 1024) } }))
  const res = await app.inject({ method: 'POST', url: `${PATH}?token=wrong`, headers: { 'content-type': 'text/plain;charset=UTF-8' }, payload: big })
  t.equal(res.statusCode, 401)
  t.equal(res.json().code, 'FST_LANGGRAPH_WEBHOOKS_UNAUTHORIZED', 'a clean 401')
  t.equal(parsed, 0, 'the body parser never ran')
  t.equal(calls, 0)

  const ok = await app.inject({ method: 'POST', url: `${PATH}?token=${TOKEN}`, headers: { 'content-type': 'text/plain;charset=UTF-8' }, payload: big })
  t.equal(ok.statusCode, 204)
  t.equal(parsed, 1, 'an authenticated body is parsed')
})

test('the token appears in no log line, at trace level, whatever happens to the delivery', async (t) => {
  for (const where of ['query', 'bearer'] as const) {
    const { app, lines } = await buildApp()
    app.langgraphWebhooks.onRun('error', () => { throw new Error('listener failed') })
    app.langgraphWebhooks.onRun((run, { log }) => { log.info({ run }, 'listener logs the whole run') })
    const send = (body: unknown, token = TOKEN) => app.inject({
      method: 'POST',
      url: where === 'query' ? `${PATH}?token=${token}` : PATH,
      headers: {
        'content-type': 'text/plain;charset=UTF-8',
        ...(where === 'bearer' ? { authorization: `Bearer ${token}` } : {})
      },
      payload: typeof body === 'string' ? body : JSON.stringify(body)
    })
    t.equal((await send(jsServerBody())).statusCode, 204, `${where}: valid`)
    t.equal((await send(jsServerBody(), `${TOKEN}x`)).statusCode, 401, `${where}: unauthenticated, with a near-miss token`)
    t.equal((await send({ ...jsServerBody(), status: 1 })).statusCode, 400, `${where}: invalid body`)
    t.equal((await send(`{"run_id":"${TOKEN}`)).statusCode, 400, `${where}: broken JSON that holds the token`)
    t.equal((await send({ ...jsServerBody(), status: 'error', error: 'x' })).statusCode, 500, `${where}: failing listener`)
    t.ok(lines.length > 15, `${where}: the requests were logged (${lines.length} lines)`)
    t.ok(lines.some((line) => line.includes('[REDACTED]')), `${where}: the masked token is visible`)
    const leaks = lines.filter((line) => line.includes(TOKEN))
    t.same(leaks, [], `${where}: no line holds the token`)
  }
})

test('listeners see kwargs.webhook with the token masked (redactToken, on by default)', async (t) => {
  const { app } = await buildApp()
  let seen: any
  app.langgraphWebhooks.onRun((run, { request }) => {
    seen = { run: JSON.stringify(run), body: JSON.stringify(request!.body), url: request!.url }
  })
  await deliverRun(app, jsServerBody(), { token: TOKEN })
  t.notMatch(seen.run, TOKEN)
  t.match(seen.run, 'http://127.0.0.1:9911/webhooks/langgraph?token=[REDACTED]')
  t.notMatch(seen.body, TOKEN, 'request.body is the same, masked object')
  t.match(seen.url, TOKEN, 'request.url still holds the token, as the README warns')

  const { app: raw } = await buildApp({ redactToken: false })
  raw.langgraphWebhooks.onRun((run) => { seen = run.kwargs.webhook })
  await deliverRun(raw, jsServerBody(), { token: TOKEN })
  t.equal(seen, `http://127.0.0.1:9911/webhooks/langgraph?token=${TOKEN}`, 'redactToken: false leaves the body as sent')
})

test('maxAgeMs refuses deliveries sent too long ago or too far ahead', async (t) => {
  const { app } = await buildApp({ maxAgeMs: 60_000 })
  let calls = 0
  app.langgraphWebhooks.onRun(() => { calls++ })
  const at = (offsetMs: number) => new Date(Date.now() + offsetMs).toISOString()
  t.equal((await deliverRun(app, buildRunWebhook({ webhook_sent_at: at(-30_000) }), { token: TOKEN })).statusCode, 204)
  const stale = await deliverRun(app, buildRunWebhook({ webhook_sent_at: at(-120_000) }), { token: TOKEN })
  t.equal(stale.statusCode, 400)
  t.equal(stale.json().code, 'FST_LANGGRAPH_WEBHOOKS_STALE_DELIVERY')
  t.equal((await deliverRun(app, buildRunWebhook({ webhook_sent_at: at(120_000) }), { token: TOKEN })).statusCode, 400, 'from the future (clock skew beyond the window)')
  t.equal((await deliverRun(app, buildRunWebhook({ webhook_sent_at: '2026-11-28T06:52:05.326118+00:00'.replace('2026', '2001') }), { token: TOKEN })).statusCode, 400)
  t.equal(calls, 1)

  const { app: open } = await buildApp()
  t.equal((await deliverRun(open, buildRunWebhook({ webhook_sent_at: '2001-01-01T00:00:00Z' }), { token: TOKEN })).statusCode, 204, 'off by default')
})

test('the Quick start\'s setup keeps the token out of the log of a mistyped path', async (t) => {
  const mistyped = `${PATH}/?token=${TOKEN}`
  for (const quickStart of [false, true]) {
    const { lines, logger } = logSink('trace')
    const app = Fastify({ logger: { ...logger, serializers: { req: serializeRequest } } })
    if (quickStart) app.setNotFoundHandler((request, reply) => { reply.code(404).send() })
    await app.register(langgraphWebhooks, { token: TOKEN })
    const res = await app.inject({ method: 'POST', url: mistyped, headers: { 'content-type': 'application/json' }, payload: '{}' })
    await app.close()
    t.equal(res.statusCode, 404)
    const leaked = lines.some((line) => JSON.stringify(line).includes(TOKEN))
    t.equal(leaked, !quickStart, quickStart ? 'with the not-found handler, no line holds the token' : 'Fastify\'s own 404 logs the URL, token included')
  }
})
