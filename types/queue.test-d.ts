import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { expectTypeOf } from 'expect-type'
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
// @ts-expect-error
app.register(langgraphWebhooks, { token: 'x', redis: 6379 })
// @ts-expect-error
app.register(langgraphWebhooks, { token: 'x', queue: { connection, worker: 'no' } })
// @ts-expect-error
app.register(langgraphWebhooks, { token: 'x', queue: { connection, attemps: 3 } })

expectTypeOf(await app.langgraphWebhooks.queue.failed()).toEqualTypeOf<FailedRun[]>()
expectTypeOf(await app.langgraphWebhooks.queue.failed({ offset: 10, limit: 10 })).toEqualTypeOf<FailedRun[]>()
expectTypeOf(await app.langgraphWebhooks.queue.retry('run-id', 'error')).toEqualTypeOf<boolean>()
expectTypeOf(await app.langgraphWebhooks.queue.counts()).toEqualTypeOf<QueueCounts>()
const [failed] = await app.langgraphWebhooks.queue.failed()
expectTypeOf(failed!.run).toEqualTypeOf<RunWebhook>()
expectTypeOf(failed!.error).toEqualTypeOf<string>()
expectTypeOf(failed!.attempts).toEqualTypeOf<number>()
expectTypeOf(failed!.failedAt).toEqualTypeOf<Date>()

// A worker process: the plugin's onRun, typed the same way.
const worker = createRunWorker({ connection, name: 'hooks', concurrency: 8, lockMs: 30_000 })
expectTypeOf(worker).toEqualTypeOf<RunWorker>()
const off = worker.onRun('error', (run, context) => {
  expectTypeOf(run.status).toEqualTypeOf<'error'>()
  expectTypeOf(run.error).toEqualTypeOf<RunError | undefined>()
  expectTypeOf(context).toEqualTypeOf<RunContext>()
  expectTypeOf(context.attempt).toEqualTypeOf<number>()
})
off()
worker.onRun(['success', 'interrupted'], (run) => { expectTypeOf(run.status).toEqualTypeOf<'success' | 'interrupted'>() })
// @ts-expect-error
worker.onRun('sucess', () => {})
// @ts-expect-error
createRunWorker({ name: 'hooks' })
expectTypeOf(worker.close()).toEqualTypeOf<Promise<void>>()

// A worker process given the web process's valuesSchema: listeners get its output.
const State = z.object({ at: z.string().transform((at) => new Date(at)), step: z.number().default(0) })
const typed = createRunWorker({ connection, valuesSchema: State })
expectTypeOf(typed).toEqualTypeOf<RunWorker<{ at: Date, step: number }>>()
typed.onRun('success', (run) => {
  expectTypeOf(run.values?.at).toEqualTypeOf<Date | undefined>()
  expectTypeOf(run.values?.step).toEqualTypeOf<number | undefined>()
})
createRunWorker({ connection, valuesSchema: State, onRun: (run) => { expectTypeOf(run.values?.at).toEqualTypeOf<Date | undefined>() } })
// Without one, the values are untyped; the type argument of earlier versions still compiles.
createRunWorker({ connection }).onRun((run) => { expectTypeOf(run.values).toEqualTypeOf<Record<string, unknown> | null | undefined>() })
expectTypeOf(createRunWorker<{ step: number }>({ connection })).toEqualTypeOf<RunWorker<{ step: number }>>()
// @ts-expect-error
createRunWorker({ connection, valuesSchema: { type: 'object' } })

// Operating the dead letters: bulk replay and alerts.
expectTypeOf(await app.langgraphWebhooks.queue.retryFailed()).toEqualTypeOf<number>()
expectTypeOf(await app.langgraphWebhooks.queue.retryFailed({ status: 'error', since: new Date(), limit: 100 })).toEqualTypeOf<number>()
expectTypeOf(await app.langgraphWebhooks.queue.retryFailed({ since: Date.now() - 3_600_000 })).toEqualTypeOf<number>()
// @ts-expect-error
app.langgraphWebhooks.queue.retryFailed({ since: '09:00' })
// @ts-expect-error
app.langgraphWebhooks.queue.retryFailed({ sinse: new Date() })
const unsubscribe = app.langgraphWebhooks.queue.onDeadLetter((failedRun, { log }) => {
  expectTypeOf(failedRun).toEqualTypeOf<FailedRun>()
  expectTypeOf(failedRun.run.run_id).toEqualTypeOf<string>()
  log.error({ run_id: failedRun.run.run_id, error: failedRun.error }, 'a run webhook exhausted its attempts')
})
expectTypeOf(unsubscribe).toEqualTypeOf<() => void>()
expectTypeOf(worker.onDeadLetter(async (failedRun: FailedRun) => { await Promise.resolve(failedRun.attempts) })).toEqualTypeOf<() => void>()
// @ts-expect-error
worker.onDeadLetter('alert')
const listener: DeadLetterListener = (failedRun) => failedRun.failedAt
worker.onDeadLetter(listener)
