import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { expectError, expectType } from 'tsd'
import { z } from 'zod'
import langgraphWebhooks, { type DeadLetterListener, type FailedRun, type QueueCounts, type RunContext, type RunError, type RunWebhook } from 'fastify-langgraph-webhooks'
import { createRunWorker, type RunWorker } from 'fastify-langgraph-webhooks/queue'

const connection = new Redis({ lazyConnect: true })
const app = Fastify()
await app.register(langgraphWebhooks, { token: 'x'.repeat(32), queue: { connection } })
await app.register(langgraphWebhooks, { token: 'x'.repeat(32), queue: { connection: 'redis://127.0.0.1:6379', name: 'hooks', attempts: 5, backoffMs: 500, concurrency: 4, worker: false, lockMs: 10_000 } })
await app.register(langgraphWebhooks, { token: 'x'.repeat(32), queue: { connection: { host: '127.0.0.1', port: 6379 } } })
// queue.connection may be left out when the plugin's redis is given (checked at registration).
await app.register(langgraphWebhooks, { token: 'x'.repeat(32), redis: connection, queue: {}, dedupe: false })
await app.register(langgraphWebhooks, { token: 'x'.repeat(32), redis: 'redis://127.0.0.1:6379', dedupe: true })
expectError(app.register(langgraphWebhooks, { token: 'x', redis: 6379 }))
expectError(app.register(langgraphWebhooks, { token: 'x', queue: { connection, worker: 'no' } }))
expectError(app.register(langgraphWebhooks, { token: 'x', queue: { connection, attemps: 3 } }))

expectType<FailedRun[]>(await app.langgraphWebhooks.queue.failed())
expectType<FailedRun[]>(await app.langgraphWebhooks.queue.failed({ offset: 10, limit: 10 }))
expectType<boolean>(await app.langgraphWebhooks.queue.retry('run-id', 'error'))
expectType<QueueCounts>(await app.langgraphWebhooks.queue.counts())
const [failed] = await app.langgraphWebhooks.queue.failed()
expectType<RunWebhook>(failed!.run)
expectType<string>(failed!.error)
expectType<number>(failed!.attempts)
expectType<Date>(failed!.failedAt)

// A worker process: the plugin's onRun, typed the same way.
const worker = createRunWorker({ connection, name: 'hooks', concurrency: 8, lockMs: 30_000 })
expectType<RunWorker>(worker)
const off = worker.onRun('error', (run, context) => {
  expectType<'error'>(run.status)
  expectType<RunError | undefined>(run.error)
  expectType<RunContext>(context)
  expectType<number>(context.attempt)
})
off()
worker.onRun(['success', 'interrupted'], (run) => { expectType<'success' | 'interrupted'>(run.status) })
expectError(worker.onRun('sucess', () => {}))
expectError(createRunWorker({ name: 'hooks' }))
expectType<Promise<void>>(worker.close())

// A worker process given the web process's valuesSchema: listeners get its output.
const State = z.object({ at: z.string().transform((at) => new Date(at)), step: z.number().default(0) })
const typed = createRunWorker({ connection, valuesSchema: State })
expectType<RunWorker<{ at: Date, step: number }>>(typed)
typed.onRun('success', (run) => {
  expectType<Date | undefined>(run.values?.at)
  expectType<number | undefined>(run.values?.step)
})
createRunWorker({ connection, valuesSchema: State, onRun: (run) => { expectType<Date | undefined>(run.values?.at) } })
// Without one, the values are untyped; the type argument of earlier versions still compiles.
createRunWorker({ connection }).onRun((run) => { expectType<Record<string, unknown> | null | undefined>(run.values) })
expectType<RunWorker<{ step: number }>>(createRunWorker<{ step: number }>({ connection }))
expectError(createRunWorker({ connection, valuesSchema: { type: 'object' } }))

// Operating the dead letters: bulk replay and alerts.
expectType<number>(await app.langgraphWebhooks.queue.retryFailed())
expectType<number>(await app.langgraphWebhooks.queue.retryFailed({ status: 'error', since: new Date(), limit: 100 }))
expectType<number>(await app.langgraphWebhooks.queue.retryFailed({ since: Date.now() - 3_600_000 }))
expectError(app.langgraphWebhooks.queue.retryFailed({ since: '09:00' }))
expectError(app.langgraphWebhooks.queue.retryFailed({ sinse: new Date() }))
const unsubscribe = app.langgraphWebhooks.queue.onDeadLetter((failedRun, { log }) => {
  expectType<FailedRun>(failedRun)
  expectType<string>(failedRun.run.run_id)
  log.error({ run_id: failedRun.run.run_id, error: failedRun.error }, 'a run webhook exhausted its attempts')
})
expectType<() => void>(unsubscribe)
expectType<() => void>(worker.onDeadLetter(async (failedRun: FailedRun) => { await Promise.resolve(failedRun.attempts) }))
expectError(worker.onDeadLetter('alert'))
const listener: DeadLetterListener = (failedRun) => failedRun.failedAt
worker.onDeadLetter(listener)
