import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import { expectAssignable, expectError, expectType } from 'tsd'
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
expectError(app.register(langgraphWebhooks, {}))
expectError(app.register(langgraphWebhooks, { token: 'x', ack: 'later' }))
expectError(app.register(langgraphWebhooks, { token: 'x', tokenSources: ['cookie'] }))
await app.register(langgraphWebhooks, { token: 'x', tokenSources: ['query', { header: 'x-webhook-token' }] })
expectError(app.register(langgraphWebhooks, { token: 'x', tokenSources: [{ name: 'x-webhook-token' }] }))

// A catch-all listener sees every status, known or future.
const off = app.langgraphWebhooks.onRun((run, context) => {
  expectType<RunWebhook>(run)
  expectAssignable<RunStatus | (string & {})>(run.status)
  expectType<RunContext>(context)
  expectType<string>(run.run_id)
  expectType<Record<string, unknown> | null | undefined>(run.values)
})
expectType<Unsubscribe>(off)

// A status narrows the run.
app.langgraphWebhooks.onRun('error', (run) => {
  expectType<'error'>(run.status)
  expectType<RunError | undefined>(run.error)
})
app.langgraphWebhooks.onRun(['success', 'interrupted'], (run, { request, log }) => {
  expectType<'success' | 'interrupted'>(run.status)
  request?.url.toString()
  log.info('ok')
})
app.langgraphWebhooks.onRun(['rollback', 'timeout'], async (run) => {
  expectType<'rollback' | 'timeout'>(run.status)
})

// Only known statuses type-check.
expectError(app.langgraphWebhooks.onRun('sucess', () => {}))
expectError(app.langgraphWebhooks.onRun(['success', 'done'], () => {}))
expectError(app.langgraphWebhooks.onRun('success'))

// valuesSchema: run.values typed through withValues(schema).
const State = Type.Object({ messages: Type.Array(Type.String()) })
const typed = app.langgraphWebhooks.withValues(State)
typed.onRun('success', (run) => {
  expectType<{ messages: string[] } | null | undefined>(run.values)
})
typed.onRun((run) => {
  expectType<{ messages: string[] } | null | undefined>(run.values)
})
// The onRun option is typed from valuesSchema too.
const options: LanggraphWebhooksOptions<typeof State> = {
  token: 'x',
  valuesSchema: State,
  onRun: (run) => { expectType<{ messages: string[] } | null | undefined>(run.values) }
}
await app.register(langgraphWebhooks, options)

expectAssignable<RunWebhookOf<'success'>>({ ...buildRunWebhook(), status: 'success' as const })
expectType<(candidate: unknown) => boolean>(createTokenVerifier(['a', 'b']))
expectType<Promise<import('fastify').LightMyRequestResponse>>(deliverRun(app, buildRunWebhook(), { token: 'x' }))
expectType<Promise<import('fastify').LightMyRequestResponse>>(deliverRun(app, buildRunWebhook(), { token: 'x', tokenSource: { header: 'x-webhook-token' } }))
expectError(deliverRun(app, buildRunWebhook(), { token: 'x', tokenSource: 'cookie' }))

// A store of your own: methods may be synchronous or async.
const held = new Map<string, 'lease' | 'done'>()
const store: DedupeStore = {
  async reserve (key, leaseMs, owner) {
    expectType<number>(leaseMs)
    expectType<string | undefined>(owner)
    const state = held.get(key)
    if (state === undefined) held.set(key, 'lease')
    return state === undefined ? 'reserved' : state === 'done' ? 'done' : 'in-flight'
  },
  complete (key) { held.set(key, 'done') },
  async release (key) { held.delete(key) }
}
expectError<DedupeStore>({ reserve: () => 'maybe', complete () {}, release () {} })
await app.register(langgraphWebhooks, { token: 'x', dedupe: { store, ttlMs: 1000 } })
