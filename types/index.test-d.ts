import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import { expectTypeOf } from 'expect-type'
import langgraphWebhooks, {
  createTokenVerifier,
  fastifyLanggraphWebhooks,
  type DedupeStore,
  type LanggraphWebhooksOptions,
  type RunContext,
  type RunError,
  type RunStatus,
  type RunWebhook,
  type RunWebhookOf,
  type Unsubscribe
} from 'fastify-langgraph-webhooks'
import { buildRunWebhook, deliverRun } from 'fastify-langgraph-webhooks/testing'

const app = Fastify()
await app.register(langgraphWebhooks, { token: 'x'.repeat(32) })
await app.register(fastifyLanggraphWebhooks, { token: ['new', 'old'], path: '/hooks', ack: 'received', dedupe: true })
// @ts-expect-error
app.register(langgraphWebhooks, {})
// @ts-expect-error
app.register(langgraphWebhooks, { token: 'x', ack: 'later' })
// @ts-expect-error
app.register(langgraphWebhooks, { token: 'x', tokenSources: ['cookie'] })
await app.register(langgraphWebhooks, { token: 'x', tokenSources: ['query', { header: 'x-webhook-token' }] })
// @ts-expect-error
app.register(langgraphWebhooks, { token: 'x', tokenSources: [{ name: 'x-webhook-token' }] })

// A catch-all listener sees every status, known or future.
const off = app.langgraphWebhooks.onRun((run, context) => {
  expectTypeOf(run).toEqualTypeOf<RunWebhook>()
  expectTypeOf(run.status).toExtend<RunStatus | (string & {})>()
  expectTypeOf(context).toEqualTypeOf<RunContext>()
  expectTypeOf(run.run_id).toEqualTypeOf<string>()
  expectTypeOf(run.values).toEqualTypeOf<Record<string, unknown> | null | undefined>()
})
expectTypeOf(off).toEqualTypeOf<Unsubscribe>()

// A status narrows the run.
app.langgraphWebhooks.onRun('error', (run) => {
  expectTypeOf(run.status).toEqualTypeOf<'error'>()
  expectTypeOf(run.error).toEqualTypeOf<RunError | undefined>()
})
app.langgraphWebhooks.onRun(['success', 'interrupted'], (run, { request, log }) => {
  expectTypeOf(run.status).toEqualTypeOf<'success' | 'interrupted'>()
  request?.url.toString()
  log.info('ok')
})
app.langgraphWebhooks.onRun(['rollback', 'timeout'], async (run) => {
  expectTypeOf(run.status).toEqualTypeOf<'rollback' | 'timeout'>()
})

// Only known statuses type-check.
// @ts-expect-error
app.langgraphWebhooks.onRun('sucess', () => {})
// @ts-expect-error
app.langgraphWebhooks.onRun(['success', 'done'], () => {})
// @ts-expect-error
app.langgraphWebhooks.onRun('success')

// valuesSchema: run.values typed through withValues(schema).
const State = Type.Object({ messages: Type.Array(Type.String()) })
const typed = app.langgraphWebhooks.withValues(State)
typed.onRun('success', (run) => {
  expectTypeOf(run.values).toEqualTypeOf<{ messages: string[] } | null | undefined>()
})
typed.onRun((run) => {
  expectTypeOf(run.values).toEqualTypeOf<{ messages: string[] } | null | undefined>()
})
// The onRun option is typed from valuesSchema too.
const options: LanggraphWebhooksOptions<typeof State> = {
  token: 'x',
  valuesSchema: State,
  onRun: (run) => { expectTypeOf(run.values).toEqualTypeOf<{ messages: string[] } | null | undefined>() }
}
await app.register(langgraphWebhooks, options)

expectTypeOf({ ...buildRunWebhook(), status: 'success' as const }).toExtend<RunWebhookOf<'success'>>()
expectTypeOf(createTokenVerifier(['a', 'b'])).toEqualTypeOf<(candidate: unknown) => boolean>()
expectTypeOf(deliverRun(app, buildRunWebhook(), { token: 'x' })).toEqualTypeOf<Promise<import('fastify').LightMyRequestResponse>>()
expectTypeOf(deliverRun(app, buildRunWebhook(), { token: 'x', tokenSource: { header: 'x-webhook-token' } })).toEqualTypeOf<Promise<import('fastify').LightMyRequestResponse>>()
// @ts-expect-error
deliverRun(app, buildRunWebhook(), { token: 'x', tokenSource: 'cookie' })

// A store of your own: methods may be synchronous or async.
const held = new Map<string, 'lease' | 'done'>()
const store: DedupeStore = {
  async reserve (key, leaseMs, owner) {
    expectTypeOf(leaseMs).toEqualTypeOf<number>()
    expectTypeOf(owner).toEqualTypeOf<string | undefined>()
    const state = held.get(key)
    if (state === undefined) held.set(key, 'lease')
    return state === undefined ? 'reserved' : state === 'done' ? 'done' : 'in-flight'
  },
  complete (key) { held.set(key, 'done') },
  async release (key) { held.delete(key) }
}
// @ts-expect-error
expectTypeOf<DedupeStore>({ reserve: () => 'maybe', complete () {}, release () {} })
await app.register(langgraphWebhooks, { token: 'x', dedupe: { store, ttlMs: 1000 } })
