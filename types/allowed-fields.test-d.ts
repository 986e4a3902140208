import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import { expectTypeOf } from 'expect-type'
import langgraphWebhooks, {
  type LanggraphWebhooksOptions,
  type RunError,
  type RunWebhook,
  type RunWebhookField,
  type RunWebhookWith
} from 'fastify-langgraph-webhooks'

const app = Fastify()
await app.register(langgraphWebhooks, { token: 'x'.repeat(32), allowedFields: ['run_id', 'status', 'values'] })
// @ts-expect-error
app.register(langgraphWebhooks, { token: 'x', allowedFields: ['run-id'] })
// @ts-expect-error
app.register(langgraphWebhooks, { token: 'x', allowedFields: 'run_id' })

// Every field: the full run type.
expectTypeOf({} as RunWebhookWith<RunWebhookField>).toEqualTypeOf<RunWebhook>()

// The listener's run narrows to the listed fields.
const stripped = app.langgraphWebhooks.withFields(['run_id', 'status', 'error'])
stripped.onRun((run) => {
  expectTypeOf(run.run_id).toEqualTypeOf<string>()
  expectTypeOf(run.error).toEqualTypeOf<RunError | undefined>()
  expectTypeOf(run).not.toHaveProperty('thread_id')
  expectTypeOf(run).not.toHaveProperty('values')
})
// Status filtering still narrows when `status` is listed.
stripped.onRun('error', (run) => {
  expectTypeOf(run.status).toEqualTypeOf<'error'>()
  expectTypeOf(run.error).toEqualTypeOf<RunError | undefined>()
  expectTypeOf(run).not.toHaveProperty('kwargs')
})
stripped.onRun(['success', 'interrupted'], (run) => {
  expectTypeOf(run.status).toEqualTypeOf<'success' | 'interrupted'>()
})
// @ts-expect-error
stripped.onRun('sucess', () => {})

// Without `status`, only catch-all listeners.
const noStatus = app.langgraphWebhooks.withFields(['run_id', 'values'])
noStatus.onRun((run) => {
  expectTypeOf(run.run_id).toEqualTypeOf<string>()
  expectTypeOf(run.values).toEqualTypeOf<Record<string, unknown> | null | undefined>()
  expectTypeOf(run).not.toHaveProperty('status')
})
// @ts-expect-error
noStatus.onRun('success', () => {})

// withValues and withFields compose.
const State = Type.Object({ messages: Type.Array(Type.String()) })
app.langgraphWebhooks.withValues(State).withFields(['run_id', 'status', 'values']).onRun('success', (run) => {
  expectTypeOf(run.values).toEqualTypeOf<{ messages: string[] } | null | undefined>()
  expectTypeOf(run).not.toHaveProperty('thread_id')
})
app.langgraphWebhooks.withFields(['run_id', 'values']).withValues(State).onRun((run) => {
  expectTypeOf(run.values).toEqualTypeOf<{ messages: string[] } | null | undefined>()
  expectTypeOf(run).not.toHaveProperty('status')
})

// The onRun option, typed by the options' type parameters.
const options: LanggraphWebhooksOptions<undefined, 'run_id' | 'status'> = {
  token: 'x',
  allowedFields: ['run_id', 'status'],
  onRun (run) {
    expectTypeOf(run.run_id).toEqualTypeOf<string>()
    expectTypeOf(run).not.toHaveProperty('thread_id')
  }
}
await app.register(langgraphWebhooks, options)
// @ts-expect-error
expectTypeOf<LanggraphWebhooksOptions<undefined, 'run_id'>>({ token: 'x', allowedFields: ['run_id', 'status'] })
