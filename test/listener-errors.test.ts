// Whatever a listener throws or rejects with (a revoked Proxy, getters that
// throw, a Symbol, null) is logged as far as it can be described, and never
// escapes: the process survives and the app answers the next delivery.
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { Queue } from 'bullmq'
import type { LanggraphClient } from '../lib/index.js'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'
import { buildApp, TOKEN } from './helpers/app.js'
import { startRedisServer, type RedisServer } from './helpers/redis-server.js'
import { instance, queueName, token as queueToken, until } from './helpers/queue.js'
import { watchProcess } from './helpers/process.js'

const UNPRINTABLE = '[unprintable value]'

function throwing (): never {
  throw new Error('getter')
}

/** Each hostile value, made fresh, with the message its log line carries. */
const HOSTILE: Array<{ name: string, make: () => unknown, message: string }> = [
  { name: 'an Error whose message getter throws', make: () => Object.defineProperty(new Error('x'), 'message', { get: throwing, enumerable: true }), message: UNPRINTABLE },
  { name: 'an Error whose stack getter throws', make: () => Object.defineProperty(new Error('bad stack'), 'stack', { get: throwing, enumerable: true }), message: 'bad stack' },
  { name: 'an Error whose name getter throws', make: () => Object.defineProperty(new Error('bad name'), 'name', { get: throwing, enumerable: true }), message: 'bad name' },
  { name: 'an object with a throwing message getter', make: () => ({ get message () { return throwing() } }), message: '[object Object]' },
  {
    name: 'a revoked Proxy',
    make: () => {
      const { proxy, revoke } = Proxy.revocable({}, {})
      revoke()
      return proxy
    },
    message: UNPRINTABLE
  },
  { name: 'an object whose toString throws', make: () => ({ toString: throwing }), message: UNPRINTABLE },
  { name: 'a Symbol', make: () => Symbol('hostile'), message: 'Symbol(hostile)' },
  { name: 'null', make: () => null, message: 'null' },
  { name: 'undefined', make: () => undefined, message: 'undefined' }
]

function parsed (lines: string[]): Array<Record<string, any>> {
  return lines.map((line) => JSON.parse(line))
}

async function logged (lines: string[], msg: string): Promise<Record<string, any>> {
  await until(() => parsed(lines).some((line) => line.msg === msg), 30_000, `log line "${msg}"`)
  return parsed(lines).find((line) => line.msg === msg)!
}

/** The listener fails only for runs of status 'error': a following 'success' delivery is handled. */
function failOnError (app: FastifyInstance, fail: () => unknown): void {
  app.langgraphWebhooks.onRun((run) => {
    if (run.status === 'error') return fail()
  })
}

async function answersNext (t: Test, app: FastifyInstance, expected: number, escaped: unknown[]): Promise<void> {
  t.equal((await deliverRun(app, buildRunWebhook(), { token: TOKEN })).statusCode, expected, 'the app answers the next delivery')
  t.same(escaped, [], 'nothing escaped to the process')
}

function assertDescribed (t: Test, line: Record<string, any>, message: string): void {
  t.equal(line.err.aggregateErrors.length, 1)
  t.equal(line.err.aggregateErrors[0].message, message, 'the thrown value is described')
  t.type(line.err.aggregateErrors[0].stack, 'string')
}

t.test('ack: handled, a listener rejects at once: 500, logged', async (t) => {
  for (const hostile of HOSTILE) {
    t.test(hostile.name, async (t) => {
      const escaped = watchProcess(t)
      const { app, lines } = await buildApp()
      t.teardown(() => app.close())
      failOnError(app, () => Promise.reject(hostile.make()))
      t.equal((await deliverRun(app, buildRunWebhook({ status: 'error' }), { token: TOKEN })).statusCode, 500)
      assertDescribed(t, await logged(lines, 'run webhook listeners failed'), hostile.message)
      await answersNext(t, app, 204, escaped)
    })
  }
})

t.test('ack: handled, a listener throws synchronously: 500, logged', async (t) => {
  for (const hostile of HOSTILE) {
    t.test(hostile.name, async (t) => {
      const escaped = watchProcess(t)
      const { app, lines } = await buildApp()
      t.teardown(() => app.close())
      failOnError(app, () => { throw hostile.make() })
      t.equal((await deliverRun(app, buildRunWebhook({ status: 'error' }), { token: TOKEN })).statusCode, 500)
      assertDescribed(t, await logged(lines, 'run webhook listeners failed'), hostile.message)
      await answersNext(t, app, 204, escaped)
    })
  }
})

t.test('ack: handled, a listener returns a value whose then cannot be read: 500, logged, and the run can be sent again', async (t) => {
  const revoked = (): unknown => {
    const { proxy, revoke } = Proxy.revocable({}, {})
    revoke()
    return proxy
  }
  for (const [name, make] of [['a revoked Proxy', revoked], ['an object whose then getter throws', () => ({ get then () { return throwing() } })]] as const) {
    t.test(name, async (t) => {
      const escaped = watchProcess(t)
      const { app, lines } = await buildApp({ dedupe: true })
      t.teardown(() => app.close())
      let fail = true
      app.langgraphWebhooks.onRun(() => fail ? make() : undefined)
      const run = buildRunWebhook()
      t.equal((await deliverRun(app, run, { token: TOKEN })).statusCode, 500)
      t.equal((await logged(lines, 'run webhook listeners failed')).err.aggregateErrors[0].type, 'Error', 'logged as a listener failure')
      fail = false
      t.equal((await deliverRun(app, run, { token: TOKEN })).statusCode, 204, 'the failed run is released: its retry runs the listeners')
      t.same(escaped, [], 'nothing escaped to the process')
    })
  }
})

t.test('ack: handled, a listener rejects after listenerTimeoutMs: 503, then logged', async (t) => {
  for (const hostile of HOSTILE) {
    t.test(hostile.name, async (t) => {
      const escaped = watchProcess(t)
      const { app, lines } = await buildApp({ listenerTimeoutMs: 50 })
      t.teardown(() => app.close())
      let reject!: (error: unknown) => void
      failOnError(app, () => new Promise((_resolve, _reject) => { reject = _reject }))
      t.equal((await deliverRun(app, buildRunWebhook({ status: 'error' }), { token: TOKEN })).statusCode, 503)
      reject(hostile.make())
      assertDescribed(t, await logged(lines, 'run webhook listeners failed after the delivery timed out'), hostile.message)
      await answersNext(t, app, 204, escaped)
    })
  }
})

t.test('ack: received, a listener rejects after the 202: logged', async (t) => {
  for (const hostile of HOSTILE) {
    t.test(hostile.name, async (t) => {
      const escaped = watchProcess(t)
      const { app, lines } = await buildApp({ ack: 'received' })
      t.teardown(() => app.close())
      let reject!: (error: unknown) => void
      failOnError(app, () => new Promise((_resolve, _reject) => { reject = _reject }))
      t.equal((await deliverRun(app, buildRunWebhook({ status: 'error' }), { token: TOKEN })).statusCode, 202)
      reject(hostile.make())
      assertDescribed(t, await logged(lines, 'run webhook listeners failed after the delivery was acknowledged'), hostile.message)
      await answersNext(t, app, 202, escaped)
    })
  }
})

t.test('reconciliation: a reconciled run whose listener fails is logged', async (t) => {
  const run = buildRunWebhook({ status: 'error' })
  // A LangGraph server whose runs never send their webhook.
  const client: LanggraphClient = {
    runs: {
      create: async () => ({ ...run, status: 'pending' }),
      stream: async function * () {},
      get: async () => ({ ...run, status: 'error' })
    },
    threads: { getState: async () => ({ values: {} }) }
  }
  for (const ack of ['handled', 'received'] as const) {
    for (const hostile of HOSTILE) {
      t.test(`ack: ${ack}, ${hostile.name}`, async (t) => {
        const escaped = watchProcess(t)
        const { app, lines } = await buildApp({
          ack,
          langgraph: { client, webhookUrl: 'https://api.example.com/webhooks/langgraph', reconcileAfterMs: 20, reconcileEveryMs: 60_000 }
        })
        t.teardown(() => app.close())
        app.langgraphWebhooks.onRun((_run, { reconciled }) => {
          if (reconciled) return Promise.reject(hostile.make())
        })
        await app.ready()
        await app.langgraphWebhooks.runs.create(run.thread_id, run.assistant_id)
        const msg = ack === 'handled' ? 'run webhook listeners failed' : 'run webhook listeners failed after the delivery was acknowledged'
        const line = await logged(lines, msg)
        t.equal(line.run_id, run.run_id)
        assertDescribed(t, line, hostile.message)
        await answersNext(t, app, ack === 'handled' ? 204 : 202, escaped)
      })
    }
  }
})

t.test('queue worker: the job ends in the failed set with a describable error', async (t) => {
  const server: RedisServer = await startRedisServer()
  t.teardown(() => server.stop())
  for (const hostile of HOSTILE) {
    t.test(hostile.name, async (t) => {
      const escaped = watchProcess(t)
      const name = queueName()
      const { app, client, lines } = await instance(t, server, { name, attempts: 1 })
      app.langgraphWebhooks.onRun((run) => {
        if (run.status === 'error') return Promise.reject(hostile.make())
      })
      await app.ready()
      const run = buildRunWebhook({ status: 'error' })
      t.equal((await deliverRun(app, run, { token: queueToken })).statusCode, 202)
      const queue = new Queue(name, { connection: client })
      t.teardown(() => queue.close())
      await until(async () => (await queue.getFailedCount()) === 1, 30_000, 'a failed job')
      const [job] = await queue.getFailed()
      t.equal(job!.failedReason, `1 listener failed for run ${run.run_id} (error): ${hostile.message}`)
      const line = lines.find((l) => l.msg === 'run webhook listeners failed for the last time: the run is in the failed set (queue.failed(), queue.retry())')
      t.ok(line, 'the failure is logged')
      t.equal(line!.err.aggregateErrors[0].message, hostile.message)

      const next = buildRunWebhook()
      t.equal((await deliverRun(app, next, { token: queueToken })).statusCode, 202, 'the app answers the next delivery')
      await until(async () => (await queue.getCompletedCount()) === 1, 30_000, 'the next job completed')
      t.same(escaped, [], 'nothing escaped to the process')
    })
  }
})
