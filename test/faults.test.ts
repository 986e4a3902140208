// Faults: listeners that throw, reject or never settle, shutdowns with
// deliveries in flight, senders that hang up, and a failing dedupe store.
// The rule: every delivery is either handled or answered so that the sender
// retries (5xx), nothing is lost silently, and with dedupe nothing runs twice.
import { test, type Test } from 'tap'
import { request as httpRequest } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify, { type FastifyInstance } from 'fastify'
import langgraphWebhooks, {
  createMemoryDedupeStore, RETRY_AFTER_SECONDS, type DedupeStore, type LanggraphWebhooksOptions, type RunListener
} from '../lib/index.js'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'

const TOKEN = 'faults-token-3e8a1c5f7b9d2e4a6c8e0f1a3b5c7d9e'
const PATH = '/webhooks/langgraph'

interface LogEntry { level: number, msg: string, run_id?: string, err?: { message?: string, type?: string }, [key: string]: unknown }

async function receiver (t: Test, options: Partial<LanggraphWebhooksOptions> = {}) {
  const lines: string[] = []
  const app = Fastify({ logger: { level: 'info', stream: { write: (line: string) => { lines.push(line) } } } })
  await app.register(langgraphWebhooks, { token: TOKEN, ...options })
  let closed = false
  t.teardown(async () => { if (!closed) await app.close() })
  const logs = () => lines.map((line) => JSON.parse(line) as LogEntry)
  return {
    app,
    logs,
    errors: () => logs().filter((entry) => entry.level >= 50),
    deliver: (run = buildRunWebhook()) => deliverRun(app, run, { token: TOKEN }),
    close: async () => { closed = true; await app.close() }
  }
}

/** A promise with its resolve and reject functions. */
function deferred<T = void> () {
  let resolve!: (value: T) => void
  let reject!: (error: unknown) => void
  const promise = new Promise<T>((_resolve, _reject) => { resolve = _resolve; reject = _reject })
  return { promise, resolve, reject }
}

/** Whether `promise` is still pending after `ms`. */
async function pendingAfter (promise: Promise<unknown>, ms: number): Promise<boolean> {
  const marker = Symbol('pending')
  return await Promise.race([promise, sleep(ms, marker)]) === marker
}

async function listen (app: FastifyInstance): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
}

/** POSTs a run over its own connection; resolves with the status, or the network error's code. */
function post (base: string, run: unknown): Promise<number | string> {
  return new Promise((resolve) => {
    const req = httpRequest(`${base}${PATH}?token=${TOKEN}`, { method: 'POST', agent: false, headers: { 'content-type': 'text/plain;charset=UTF-8' } }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode!))
    })
    req.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message))
    req.end(JSON.stringify(run))
  })
}

test('listeners that fail: 500 with a generic message, the error logged with run_id, the other listeners still run', async (t) => {
  const failures: Array<[string, RunListener<any>]> = [
    ['throws synchronously', () => { throw new Error('sync failure') }],
    ['rejects', async () => { throw new Error('async failure') }],
    ['throws a string', () => { throw 'a string' }], // eslint-disable-line no-throw-literal
    ['throws null', () => { throw null }], // eslint-disable-line no-throw-literal
    ['throws undefined', () => { throw undefined }], // eslint-disable-line no-throw-literal
    ['rejects with undefined', () => Promise.reject(undefined)], // eslint-disable-line prefer-promise-reject-errors
    ['returns a thenable whose then throws', () => ({ then () { throw new Error('then threw') } })],
    ['returns an object whose then getter throws', () => ({ get then () { throw new Error('getter threw') } })],
    ['returns a thenable that rejects synchronously', () => ({ then (_: unknown, reject: (e: unknown) => void) { reject(new Error('thenable rejected')) } })],
    ['throws after an await', async () => { await sleep(5); throw new Error('late async failure') }]
  ]
  for (const [name, failing] of failures) {
    const { app, deliver, errors } = await receiver(t)
    const ran: string[] = []
    app.langgraphWebhooks.onRun(() => { ran.push('before') })
    app.langgraphWebhooks.onRun(failing)
    app.langgraphWebhooks.onRun(async () => { await sleep(1); ran.push('after') })
    const run = buildRunWebhook()
    const reply = await deliver(run)
    t.equal(reply.statusCode, 500, `a listener that ${name}: 500`)
    t.same(reply.json(), { statusCode: 500, code: 'FST_LANGGRAPH_WEBHOOKS_LISTENER_FAILED', error: 'Internal Server Error', message: 'The application failed to handle the run webhook' }, `${name}: the reply says nothing of the error`)
    t.same(ran.sort(), ['after', 'before'], `${name}: the other listeners ran to the end`)
    const logged = errors().find((entry) => entry.msg === 'run webhook listeners failed')
    t.equal(logged?.run_id, run.run_id, `${name}: logged with run_id`)
    t.equal((await deliver()).statusCode, 500, 'the next delivery is handled the same way (the receiver is intact)')
  }
})

test('a listener that never settles: 503 with Retry-After after listenerTimeoutMs; it goes on, and app.close() waits for it', async (t) => {
  const { app, deliver, errors, close } = await receiver(t, { listenerTimeoutMs: 100 })
  const gate = deferred()
  let finished = false
  app.langgraphWebhooks.onRun(async () => { await gate.promise; finished = true })
  const started = Date.now()
  const reply = await deliver()
  t.equal(reply.statusCode, 503, '503: the sender retries')
  t.ok(Date.now() - started >= 95, 'after listenerTimeoutMs')
  t.equal(reply.headers['retry-after'], String(RETRY_AFTER_SECONDS), 'with Retry-After')
  t.equal(reply.json().code, 'FST_LANGGRAPH_WEBHOOKS_LISTENER_TIMEOUT')
  t.ok(errors().some((entry) => /did not settle in time/.test(entry.msg)), 'the timeout is logged')

  const closing = close()
  t.ok(await pendingAfter(closing, 200), 'app.close() waits for the listener')
  t.notOk(finished)
  gate.resolve()
  await closing
  t.ok(finished, 'the listener finished before app.close() resolved')
})

test('deliveries that time out one after the other each get their 503 at their own deadline', async (t) => {
  const { app, deliver, close } = await receiver(t, { listenerTimeoutMs: 150 })
  const gate = deferred()
  app.langgraphWebhooks.onRun(() => gate.promise)
  const started = Date.now()
  const first = deliver().then((reply) => ({ status: reply.statusCode, at: Date.now() - started }))
  await sleep(75)
  const second = deliver().then((reply) => ({ status: reply.statusCode, at: Date.now() - started }))
  const [a, b] = await Promise.all([first, second])
  t.equal(a.status, 503)
  t.equal(b.status, 503)
  t.ok(a.at >= 145 && a.at <= b.at, `the first at its deadline (${a.at} ms), not after the second`)
  t.ok(b.at >= 220, `the second at its own, later deadline (${b.at} ms)`)
  gate.resolve()
  await close()
})

test('a listener that fails after its timeout: the failure is logged, not lost', async (t) => {
  const { app, deliver, errors, close } = await receiver(t, { listenerTimeoutMs: 50 })
  const gate = deferred()
  app.langgraphWebhooks.onRun(async () => { await gate.promise; throw new Error('failed late') })
  const run = buildRunWebhook()
  t.equal((await deliver(run)).statusCode, 503)
  gate.resolve()
  await close()
  const late = errors().find((entry) => entry.msg === 'run webhook listeners failed after the delivery timed out')
  t.ok(late, 'logged after the reply')
  t.equal(late?.run_id, run.run_id, 'with run_id')
  t.match(late?.err?.message, /1 listener failed/)
})

test('with dedupe, a timed-out delivery is retried without running twice', async (t) => {
  const { app, deliver, close } = await receiver(t, { listenerTimeoutMs: 50, dedupe: true })
  const gates = [deferred(), deferred()]
  let calls = 0
  const outcomes = ['fails', 'succeeds']
  app.langgraphWebhooks.onRun(async () => {
    const gate = gates[calls]
    const outcome = outcomes[calls++]
    await gate.promise
    if (outcome === 'fails') throw new Error('slow and failing')
  })
  const run = buildRunWebhook()

  t.equal((await deliver(run)).statusCode, 503, 'first attempt: the listener outlives listenerTimeoutMs: 503')
  const inFlight = await deliver(run)
  t.equal(inFlight.statusCode, 503, 'a retry while the first still runs: 503')
  t.equal(inFlight.json().code, 'FST_LANGGRAPH_WEBHOOKS_IN_FLIGHT')
  t.equal(inFlight.headers['retry-after'], String(RETRY_AFTER_SECONDS))
  t.equal(calls, 1, 'the listener did not run a second time')

  gates[0].resolve()
  await sleep(10)
  t.equal((await deliver(run)).statusCode, 503, 'the first run failed late, its key was released: the retry runs the listener again, which is slow too')
  t.equal(calls, 2)
  gates[1].resolve()
  await sleep(10)
  t.equal((await deliver(run)).statusCode, 204, 'once a run succeeded, a retry is acknowledged: 204')
  t.equal(calls, 2, 'without running the listener again')
  await close()
})

test('ack: received — a failing listener is logged after the 202, and app.close() waits for slow ones', async (t) => {
  const { app, deliver, errors, close } = await receiver(t, { ack: 'received' })
  const gate = deferred()
  let finished = 0
  app.langgraphWebhooks.onRun('error', () => { throw new Error('failed after the ack') })
  app.langgraphWebhooks.onRun('success', async () => { await gate.promise; finished++ })

  const failed = buildRunWebhook({ status: 'error', error: 'boom' })
  t.equal((await deliver(failed)).statusCode, 202, 'a failing listener: still 202 (the reply went first)')
  await sleep(5)
  const logged = errors().find((entry) => entry.msg === 'run webhook listeners failed after the delivery was acknowledged')
  t.equal(logged?.run_id, failed.run_id, 'the failure is logged with run_id')

  for (let i = 0; i < 3; i++) t.equal((await deliver()).statusCode, 202)
  const closing = close()
  t.ok(await pendingAfter(closing, 100), 'app.close() waits for the listeners still running')
  gate.resolve()
  await closing
  t.equal(finished, 3, 'all of them finished')
})

test('app.close() with deliveries in flight over HTTP: each is finished and answered 204, later ones are refused so the sender retries, and close does not wait for idle keep-alive connections', async (t) => {
  const store = createMemoryDedupeStore()
  const completed: string[] = []
  const watched: DedupeStore = {
    reserve: (key, leaseMs, owner) => store.reserve(key, leaseMs, owner),
    complete: (key, ttlMs) => { completed.push(key); return store.complete(key, ttlMs) },
    release: (key, owner) => store.release(key, owner)
  }
  const { app, close } = await receiver(t, { dedupe: { store: watched } })
  const gate = deferred()
  let started = 0
  let finished = 0
  app.langgraphWebhooks.onRun(async () => { started++; await gate.promise; finished++ })
  const base = await listen(app)

  // Node's fetch keeps connections alive, as the LangGraph JS server does.
  const url = `${base}${PATH}?token=${TOKEN}`
  const send = (run: unknown) => fetch(url, { method: 'POST', body: JSON.stringify(run) })
  const runs = Array.from({ length: 8 }, () => buildRunWebhook())
  const replies = runs.map(send)

  // One more on a raw connection, on which a second request follows once closing has begun.
  const raw = connect((app.server.address() as AddressInfo).port, '127.0.0.1')
  let received = ''
  raw.on('data', (chunk: Buffer) => { received += chunk.toString() })
  const rawClosed = new Promise((resolve) => raw.on('close', resolve))
  const rawRequest = (run: unknown) => {
    const body = JSON.stringify(run)
    return `POST ${PATH}?token=${TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  }
  raw.write(rawRequest(buildRunWebhook()))
  while (started < runs.length + 1) await sleep(5)

  const closing = close()
  while (app.server.listening) await sleep(5)
  t.equal(await post(base, buildRunWebhook()), 'ECONNREFUSED', 'a new connection during close is refused (the sender retries)')
  raw.write(rawRequest(buildRunWebhook()))
  t.ok(await pendingAfter(closing, 50), 'close waits for the deliveries in flight')

  const released = Date.now()
  gate.resolve()
  const answers = await Promise.all(replies)
  t.same(answers.map((reply) => reply.status), runs.map(() => 204), 'every delivery in flight was answered 204')
  t.ok(answers.every((reply) => reply.headers.get('connection') === 'close'), 'with Connection: close, as the server is going away')
  await rawClosed
  t.match(received, /^HTTP\/1\.1 204 No Content\r\nconnection: close\r\n/i, 'the raw connection: 204, then closed')
  t.equal(received.match(/HTTP\/1\.1/g)?.length, 1, 'the request sent on it after close began got no reply: the sender sees the connection close, and retries')
  await closing
  // Fastify's keep-alive timeout is 72 s: a bound far below it tells the two apart on a loaded machine.
  t.ok(Date.now() - released < 30_000, `app.close() resolved ${Date.now() - released} ms after the last reply (not after the senders' keep-alive timeout)`)
  t.equal(started, runs.length + 1, 'no listener ran for a request that came after close began')
  t.equal(finished, started, 'every listener that started has finished')
  t.equal(completed.length, finished, 'and each delivery was marked handled in the dedupe store before close resolved')
})

test('a sender that hangs up while listeners run: the listeners finish; with dedupe its retry does not run them twice', async (t) => {
  const { app, close } = await receiver(t, { dedupe: true })
  const gate = deferred()
  const listenerStarted = deferred()
  let calls = 0
  let finished = 0
  app.langgraphWebhooks.onRun(async () => { calls++; listenerStarted.resolve(); await gate.promise; finished++ })
  const base = await listen(app)
  const run = buildRunWebhook()

  const aborted = await new Promise<string>((resolve) => {
    const req = httpRequest(`${base}${PATH}?token=${TOKEN}`, { method: 'POST', agent: false, headers: { 'content-type': 'application/json' } })
    req.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message))
    req.end(JSON.stringify(run))
    listenerStarted.promise.then(() => req.destroy(), () => {})
  })
  t.ok(aborted, `the sender saw ${aborted} and will retry`)
  t.equal(await post(base, run), 503, 'a retry while the first delivery still runs: 503 in flight')
  gate.resolve()
  await sleep(20)
  t.equal(finished, 1, 'the listener of the abandoned request finished')
  t.equal(await post(base, run), 204, 'the next retry: 204')
  t.equal(calls, 1, 'the listener ran once in all')
  await close()
})

test('a failing dedupe store', async (t) => {
  const healthy = createMemoryDedupeStore()
  const faults: { reserve?: 'throw' | 'reject', complete?: 'throw' | 'reject', release?: 'throw' | 'reject' } = {}
  const fail = (step: keyof typeof faults) => {
    if (faults[step] === 'throw') throw new Error(`${step} threw`)
    if (faults[step] === 'reject') return Promise.reject(new Error(`${step} rejected`))
  }
  const store: DedupeStore = {
    reserve: (key, leaseMs, owner) => fail('reserve') ?? healthy.reserve(key, leaseMs, owner),
    complete: (key, ttlMs) => fail('complete') ?? healthy.complete(key, ttlMs),
    release: (key, owner) => fail('release') ?? healthy.release(key, owner)
  }
  const { app, deliver, errors } = await receiver(t, { dedupe: { store, leaseMs: 200 } })
  let calls = 0
  let failing = false
  app.langgraphWebhooks.onRun(() => { calls++; if (failing) throw new Error('listener failed') })

  for (const mode of ['throw', 'reject'] as const) {
    faults.reserve = mode
    const reply = await deliver()
    t.equal(reply.statusCode, 503, `reserve ${mode}s: 503`)
    t.equal(reply.headers['retry-after'], String(RETRY_AFTER_SECONDS), `reserve ${mode}s: with Retry-After`)
    t.equal(reply.json().code, 'FST_LANGGRAPH_WEBHOOKS_DEDUPE_UNAVAILABLE')
  }
  t.equal(calls, 0, 'no listener ran unguarded')
  t.equal(errors().filter((entry) => entry.msg === 'dedupe store failed to reserve a run webhook').length, 2, 'each failure logged')
  delete faults.reserve

  const run = buildRunWebhook()
  t.equal((await deliver(run)).statusCode, 204, 'the store is back: the retry is handled')
  t.equal(calls, 1)

  faults.complete = 'reject'
  const unmarked = buildRunWebhook()
  t.equal((await deliver(unmarked)).statusCode, 204, 'complete fails after the listeners ran: 204 (a retry would run them again)')
  t.ok(errors().some((entry) => entry.msg === 'dedupe store failed to complete a run webhook'), 'logged')
  delete faults.complete

  failing = true
  faults.release = 'throw'
  const stuck = buildRunWebhook()
  t.equal((await deliver(stuck)).statusCode, 500, 'the listener fails and release fails too: 500')
  t.ok(errors().some((entry) => entry.msg === 'dedupe store failed to release a run webhook'), 'logged')
  delete faults.release
  failing = false
  t.equal((await deliver(stuck)).statusCode, 503, 'a retry within the lease: 503 in flight (the key was not released)')
  await sleep(250)
  t.equal((await deliver(stuck)).statusCode, 204, 'a retry after leaseMs: handled')
})
