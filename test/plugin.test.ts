import { test } from 'tap'
import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import langgraphWebhooks, { fastifyLanggraphWebhooks, type RunWebhook } from '../lib/index.js'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'
import { TOKEN, buildApp, jsServerBody, pythonServerBody } from './helpers/app.js'

const PATH = '/webhooks/langgraph'

test('the default export and the named export are the same plugin', async (t) => {
  t.equal(langgraphWebhooks, fastifyLanggraphWebhooks)
})

test('replies table', async (t) => {
  t.test('204 once every matching listener settled', async (t) => {
    const { app } = await buildApp()
    const order: string[] = []
    app.langgraphWebhooks.onRun(async () => {
      await new Promise((resolve) => setTimeout(resolve, 20))
      order.push('listener')
    })
    const res = await deliverRun(app, buildRunWebhook(), { token: TOKEN })
    order.push('reply')
    t.equal(res.statusCode, 204)
    t.equal(res.body, '')
    t.same(order, ['listener', 'reply'])
  })

  t.test('202 before the listeners with ack: received', async (t) => {
    const { app } = await buildApp({ ack: 'received' })
    let release!: () => void
    const gate = new Promise<void>((resolve) => { release = resolve })
    let finished = false
    app.langgraphWebhooks.onRun(async () => { await gate; finished = true })
    const res = await deliverRun(app, buildRunWebhook(), { token: TOKEN })
    t.equal(res.statusCode, 202)
    t.notOk(finished, 'the reply did not wait for the listener')
    release()
    await app.close()
    t.ok(finished)
  })

  t.test('401 with one body for a missing, wrong, repeated or non-string token', async (t) => {
    const { app } = await buildApp()
    let calls = 0
    app.langgraphWebhooks.onRun(() => { calls++ })
    const payload = JSON.stringify(buildRunWebhook())
    const headers = { 'content-type': 'text/plain;charset=UTF-8' }
    const urls = [PATH, `${PATH}?token=wrong`, `${PATH}?token=${TOKEN}&token=${TOKEN}`, `${PATH}?token=`, `${PATH}?token`]
    const bodies = new Set<string>()
    for (const url of urls) {
      const res = await app.inject({ method: 'POST', url, headers, payload })
      t.equal(res.statusCode, 401, url.replace(TOKEN, 'TOKEN'))
      bodies.add(res.body)
    }
    t.equal(bodies.size, 1, 'the same body whatever was wrong')
    t.same(JSON.parse([...bodies][0]), {
      statusCode: 401,
      code: 'FST_LANGGRAPH_WEBHOOKS_UNAUTHORIZED',
      error: 'Unauthorized',
      message: 'Missing or invalid webhook token'
    })
    t.equal(calls, 0)
  })

  t.test('400 naming the field for a body that is not JSON or not a run', async (t) => {
    const { app } = await buildApp()
    let calls = 0
    app.langgraphWebhooks.onRun(() => { calls++ })
    const cases: Array<[unknown, RegExp]> = [
      ['{not json', /body is not valid JSON/],
      ['', /body is empty/],
      ['null', /body: expected object/],
      ['[1,2]', /body: expected object/],
      [{ ...buildRunWebhook(), status: 7 }, /status: expected string/],
      [{ ...buildRunWebhook(), run_id: undefined }, /run_id is required/],
      [{ ...buildRunWebhook(), created_at: 'yesterday' }, /created_at: /],
      [{ ...buildRunWebhook(), error: 42 }, /^Invalid run webhook: error: expected union value$/],
      [{ ...buildRunWebhook(), kwargs: { webhook: 3 } }, /kwargs\.webhook: expected union value/]
    ]
    for (const [payload, message] of cases) {
      const res = await deliverRun(app, payload, { token: TOKEN })
      t.equal(res.statusCode, 400)
      t.match(res.json(), { code: 'FST_LANGGRAPH_WEBHOOKS_INVALID_RUN', message }, String(message))
    }
    t.equal(calls, 0)
  })

  t.test('no type coercion: null, numbers and booleans are not turned into strings', async (t) => {
    const { app } = await buildApp()
    for (const status of [null, 0, true]) {
      const res = await deliverRun(app, { ...buildRunWebhook(), status }, { token: TOKEN })
      t.equal(res.statusCode, 400, String(status))
    }
    const res = await deliverRun(app, { ...buildRunWebhook(), run_id: 12345 }, { token: TOKEN })
    t.match(res.json().message, /run_id: expected string/)
  })

  t.test('413 over bodyLimit', async (t) => {
    const { app } = await buildApp({ bodyLimit: 1024 })
    const res = await deliverRun(app, buildRunWebhook({ values: { big: 'x'.repeat(2048) } }), { token: TOKEN })
    t.equal(res.statusCode, 413)
    t.equal(res.json().code, 'FST_ERR_CTP_BODY_TOO_LARGE')
  })

  t.test('the default bodyLimit is 10 MiB', async (t) => {
    const { app } = await buildApp()
    const big = buildRunWebhook({ values: { big: 'x'.repeat(9 * 1024 * 1024) } })
    t.equal((await deliverRun(app, big, { token: TOKEN })).statusCode, 204)
    const tooBig = buildRunWebhook({ values: { big: 'x'.repeat(10 * 1024 * 1024) } })
    t.equal((await deliverRun(app, tooBig, { token: TOKEN })).statusCode, 413)
  })

  t.test('415 for a content type other than application/json or text/plain', async (t) => {
    const { app } = await buildApp()
    for (const type of ['application/xml', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
      const res = await app.inject({ method: 'POST', url: `${PATH}?token=${TOKEN}`, headers: { 'content-type': type }, payload: JSON.stringify(buildRunWebhook()) })
      t.equal(res.statusCode, 415, type)
    }
  })

  t.test('500 with a generic message when a listener fails, logged with run_id', async (t) => {
    const { app, lines } = await buildApp()
    app.langgraphWebhooks.onRun(() => { throw new Error('database down: secret detail') })
    app.langgraphWebhooks.onRun(async () => { throw new Error('second failure') })
    const run = buildRunWebhook()
    const res = await deliverRun(app, run, { token: TOKEN })
    t.equal(res.statusCode, 500)
    t.same(res.json(), {
      statusCode: 500,
      code: 'FST_LANGGRAPH_WEBHOOKS_LISTENER_FAILED',
      error: 'Internal Server Error',
      message: 'The application failed to handle the run webhook'
    })
    t.notMatch(res.body, /secret detail/)
    const logged = lines.map((line) => JSON.parse(line)).find((entry) => entry.level === 50)
    t.equal(logged.run_id, run.run_id)
    t.equal(logged.thread_id, run.thread_id)
    t.equal(logged.status, 'success')
    t.match(logged.err.message, /2 listeners failed for run/)
    t.match(JSON.stringify(logged.err), /database down: secret detail/)
    t.match(JSON.stringify(logged.err), /second failure/)
  })
})

test('a JS-style delivery reaches the right listeners exactly once', async (t) => {
  const { app } = await buildApp()
  const seen: Record<string, RunWebhook[]> = { all: [], success: [], error: [] }
  app.langgraphWebhooks.onRun((run) => { seen.all.push(run) })
  app.langgraphWebhooks.onRun('success', (run) => { seen.success.push(run) })
  app.langgraphWebhooks.onRun('error', (run) => { seen.error.push(run) })

  const body = jsServerBody()
  const res = await deliverRun(app, body, { token: TOKEN })
  t.equal(res.statusCode, 204)
  t.equal(seen.all.length, 1)
  t.equal(seen.success.length, 1)
  t.equal(seen.error.length, 0)
  t.same(seen.success[0].values, { messages: ['hi', 'echo:1'] })

  const stateless = jsServerBody()
  delete stateless.values
  stateless.status = 'error'
  stateless.error = 'rollback'
  t.equal((await deliverRun(app, stateless, { token: TOKEN })).statusCode, 204)
  t.equal(seen.error.length, 1)
  t.equal(seen.error[0].error, 'rollback')
  t.notOk('values' in seen.error[0], 'values stays absent')
  t.equal(seen.all.length, 2)
})

test('a Python-style delivery (application/json, +00:00 microseconds, values null, error object) reaches the right listeners exactly once', async (t) => {
  const { app } = await buildApp()
  const calls: Record<string, string[]> = {}
  const record = (name: string) => (run: RunWebhook) => { (calls[name] ??= []).push(run.status) }
  app.langgraphWebhooks.onRun(record('all'))
  app.langgraphWebhooks.onRun('error', record('error'))
  app.langgraphWebhooks.onRun(['rollback', 'timeout'], record('rollback|timeout'))
  app.langgraphWebhooks.onRun('interrupted', record('interrupted'))
  let errorRun: RunWebhook | undefined
  app.langgraphWebhooks.onRun('error', (run) => { errorRun = run })

  for (const status of ['error', 'rollback', 'timeout', 'interrupted']) {
    const res = await app.inject({
      method: 'POST',
      url: PATH,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
      payload: JSON.stringify(pythonServerBody(status))
    })
    t.equal(res.statusCode, 204, status)
  }
  t.same(calls, {
    all: ['error', 'rollback', 'timeout', 'interrupted'],
    error: ['error'],
    'rollback|timeout': ['rollback', 'timeout'],
    interrupted: ['interrupted']
  })
  t.same(errorRun?.error, { error: 'ValueError', message: 'node failed' })
  t.equal(errorRun?.values, null)
  t.equal(errorRun?.webhook_sent_at, '2026-11-28T06:52:05.326118+00:00')
})

test('a run of an unknown future status reaches the catch-all listeners only', async (t) => {
  const { app } = await buildApp()
  const seen: string[] = []
  app.langgraphWebhooks.onRun((run) => { seen.push(`all:${run.status}`) })
  app.langgraphWebhooks.onRun('success', () => { seen.push('success') })
  const res = await deliverRun(app, buildRunWebhook({ status: 'archived', cancel_reason: 'later field' }), { token: TOKEN })
  t.equal(res.statusCode, 204)
  t.same(seen, ['all:archived'])
})

test('unknown properties are kept', async (t) => {
  const { app } = await buildApp()
  let run: any
  app.langgraphWebhooks.onRun((r) => { run = r })
  await deliverRun(app, buildRunWebhook({ langsmith_session_name: 'abc', kwargs: { feedback_keys: ['x'], extra: 1 } }), { token: TOKEN })
  t.equal(run.langsmith_session_name, 'abc')
  t.same(run.kwargs.feedback_keys, ['x'])
  t.equal(run.kwargs.extra, 1)
})

test('the listener gets the request, a logger bound with run_id, thread_id and status, attempt 1, and reconciled false', async (t) => {
  const { app, lines } = await buildApp()
  app.langgraphWebhooks.onRun((run, { request, log, attempt, reconciled }) => {
    t.equal(request?.method, 'POST')
    t.equal(attempt, 1, 'the first attempt: a webhook is handled once per delivery')
    t.equal(reconciled, false, 'received as a webhook')
    log.info({ run }, 'got it')
  })
  const run = buildRunWebhook({ status: 'interrupted' })
  await deliverRun(app, run, { token: TOKEN })
  const entry = lines.map((line) => JSON.parse(line)).find((e) => e.msg === 'got it')
  t.match(entry, { run_id: run.run_id, thread_id: run.thread_id, status: 'interrupted' })
  t.ok(entry.reqId, 'bound to the request logger')
})

test('the route path is configurable, and the host keeps its own parsers and routes', async (t) => {
  const { app } = await buildApp({ path: '/hooks/lg' })
  app.post('/echo', async (request) => ({ type: typeof request.body, body: request.body }))
  t.equal(app.langgraphWebhooks.path, '/hooks/lg')
  t.equal((await deliverRun(app, buildRunWebhook(), { token: TOKEN, path: '/hooks/lg' })).statusCode, 204)
  t.equal((await deliverRun(app, buildRunWebhook(), { token: TOKEN })).statusCode, 204, 'deliverRun defaults to app.langgraphWebhooks.path')
  t.equal((await deliverRun(app, buildRunWebhook(), { token: TOKEN, path: '/webhooks/langgraph' })).statusCode, 404)
  const res = await app.inject({ method: 'POST', url: '/echo', headers: { 'content-type': 'text/plain' }, payload: '{"a":1}' })
  t.same(res.json(), { type: 'string', body: '{"a":1}' }, 'the host still receives text/plain as a string')
  const hostError = await app.inject({ method: 'POST', url: '/echo', headers: { 'content-type': 'application/json' }, payload: '{bad' })
  t.equal(hostError.json().code, 'FST_ERR_CTP_INVALID_JSON_BODY', 'the host keeps its own error handler')
})

test('the onRun option subscribes a catch-all listener', async (t) => {
  const seen: string[] = []
  const { app } = await buildApp({ onRun: (run) => { seen.push(run.run_id) } })
  const run = buildRunWebhook()
  await deliverRun(app, run, { token: TOKEN })
  t.same(seen, [run.run_id])
})

test('unsubscribing stops the listener', async (t) => {
  const { app } = await buildApp()
  let calls = 0
  const off = app.langgraphWebhooks.onRun(['success', 'error'], () => { calls++ })
  await deliverRun(app, buildRunWebhook(), { token: TOKEN })
  off()
  off()
  await deliverRun(app, buildRunWebhook(), { token: TOKEN })
  await deliverRun(app, buildRunWebhook({ status: 'error', error: 'x' }), { token: TOKEN })
  t.equal(calls, 1)
})

test('valuesSchema validates run.values and types it through withValues', async (t) => {
  const State = Type.Object({ messages: Type.Array(Type.String()) })
  const { app } = await buildApp({ valuesSchema: State })
  const seen: string[][] = []
  app.langgraphWebhooks.withValues(State).onRun('success', (run) => {
    seen.push(run.values?.messages ?? [])
  })
  t.equal((await deliverRun(app, buildRunWebhook({ values: { messages: ['a', 'b'] } }), { token: TOKEN })).statusCode, 204)
  const bad = await deliverRun(app, buildRunWebhook({ values: { messages: [1] } }), { token: TOKEN })
  t.equal(bad.statusCode, 400)
  t.match(bad.json().message, /values\.messages\.0: expected string/)
  t.equal((await deliverRun(app, buildRunWebhook({ values: null }), { token: TOKEN })).statusCode, 204, 'null values are not checked')
  t.equal((await deliverRun(app, buildRunWebhook({ values: undefined }), { token: TOKEN })).statusCode, 204, 'absent values are not checked')
  t.same(seen, [['a', 'b'], [], []])
  t.throws(() => app.langgraphWebhooks.withValues(Type.Object({})), { code: 'FST_LANGGRAPH_WEBHOOKS_VALUES_SCHEMA_MISMATCH' })
})

test('two registrations: supported in separate encapsulated contexts, refused in the same one', async (t) => {
  const app = Fastify()
  const seen: string[] = []
  await app.register(async (scope) => {
    await scope.register(langgraphWebhooks, { token: 'a'.repeat(32), path: '/hooks/a' })
    scope.langgraphWebhooks.onRun(() => { seen.push('a') })
  })
  await app.register(async (scope) => {
    await scope.register(langgraphWebhooks, { token: 'b'.repeat(32), path: '/hooks/b' })
    scope.langgraphWebhooks.onRun(() => { seen.push('b') })
  })
  t.equal((await deliverRun(app, buildRunWebhook(), { token: 'a'.repeat(32), path: '/hooks/a' })).statusCode, 204)
  t.equal((await deliverRun(app, buildRunWebhook(), { token: 'b'.repeat(32), path: '/hooks/b' })).statusCode, 204)
  t.equal((await deliverRun(app, buildRunWebhook(), { token: 'a'.repeat(32), path: '/hooks/b' })).statusCode, 401, 'each route has its own token')
  t.same(seen, ['a', 'b'])

  const same = Fastify()
  await same.register(langgraphWebhooks, { token: 'a'.repeat(32) })
  await t.rejects(async () => { await same.register(langgraphWebhooks, { token: 'b'.repeat(32), path: '/other' }) }, {
    code: 'FST_LANGGRAPH_WEBHOOKS_ALREADY_REGISTERED'
  })
})

test('ack: received logs listener failures, and close() waits for listeners still running', async (t) => {
  const { app, lines } = await buildApp({ ack: 'received' })
  let finished = 0
  let release!: () => void
  const gate = new Promise<void>((resolve) => { release = resolve })
  app.langgraphWebhooks.onRun(async () => {
    await gate
    finished++
  })
  app.langgraphWebhooks.onRun('error', async () => { throw new Error('late failure') })
  const run = buildRunWebhook({ status: 'error', error: 'x' })
  t.equal((await deliverRun(app, run, { token: TOKEN })).statusCode, 202)
  t.equal((await deliverRun(app, buildRunWebhook(), { token: TOKEN })).statusCode, 202)
  t.equal(finished, 0)
  // Released while close() runs: it must still be waiting for them then.
  setTimeout(release, 50)
  await app.close()
  t.equal(finished, 2, 'close waited for both deliveries')
  const failure = lines.map((line) => JSON.parse(line)).find((e) => e.level === 50)
  t.equal(failure.run_id, run.run_id)
  t.match(failure.msg, /after the delivery was acknowledged/)
})

test('ack: received with only synchronous listeners', async (t) => {
  const { app } = await buildApp({ ack: 'received' })
  let calls = 0
  app.langgraphWebhooks.onRun(() => { calls++ })
  t.equal((await deliverRun(app, buildRunWebhook(), { token: TOKEN })).statusCode, 202)
  t.equal(calls, 1)
})

test('registering does not mutate the options object', async (t) => {
  const options = Object.freeze({
    token: Object.freeze(['a'.repeat(32), 'b'.repeat(32)]),
    path: '/hooks',
    dedupe: Object.freeze({ ttlMs: 1000 })
  })
  const copy = JSON.stringify(options)
  const app = Fastify()
  await app.register(langgraphWebhooks, options)
  await app.ready()
  t.equal(JSON.stringify(options), copy)
})

test('errors from the host application\'s hooks keep their status and hide 5xx details', async (t) => {
  const app = Fastify()
  app.addHook('preHandler', async (request) => {
    if (request.headers['x-fail'] === 'teapot') throw Object.assign(new Error('short and stout'), { statusCode: 418 })
    if (request.headers['x-fail'] === 'crash') throw new Error('internal detail')
  })
  await app.register(langgraphWebhooks, { token: TOKEN })
  const send = (fail: string) => app.inject({
    method: 'POST',
    url: `${PATH}?token=${TOKEN}`,
    headers: { 'content-type': 'application/json', 'x-fail': fail },
    payload: JSON.stringify(buildRunWebhook())
  })
  const teapot = await send('teapot')
  t.equal(teapot.statusCode, 418)
  t.equal(teapot.json().message, 'short and stout')
  const crash = await send('crash')
  t.equal(crash.statusCode, 500)
  t.equal(crash.json().message, 'Internal Server Error')
})
