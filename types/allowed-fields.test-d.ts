import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import { expectError, expectType } from 'tsd'
import langgraphWebhooks, {
  type LanggraphWebhooksOptions,
  type RunError,
  type RunWebhook,
  type RunWebhookField,
  type RunWebhookWith
} from 'fastify-langgraph-webhooks'

const app = Fastify()
await app.register(langgraphWebhooks, { token: 'x'.repeat(32), allowedFields: ['run_id', 'status', 'values'] })
expectError(app.register(langgraphWebhooks, { token: 'x', allowedFields: ['run-id'] }))
expectError(app.register(langgraphWebhooks, { token: 'x', allowedFields: 'run_id' }))

// Every field: the full run type.
expectType<RunWebhook>({} as RunWebhookWith<RunWebhookField>)

// The listener's run narrows to the listed fields.
const stripped = app.langgraphWebhooks.withFields(['run_id', 'status', 'error'])
stripped.onRun((run) => {
  expectType<string>(run.run_id)
  expectType<RunError | undefined>(run.error)
  expectError(run.thread_id)
  expectError(run.values)
})
// Status filtering still narrows when `status` is listed.
stripped.onRun('error', (run) => {
  expectType<'error'>(run.status)
  expectType<RunError | undefined>(run.error)
  expectError(run.kwargs)
})
stripped.onRun(['success', 'interrupted'], (run) => {
  expectType<'success' | 'interrupted'>(run.status)
})
expectError(stripped.onRun('sucess', () => {}))

// Without `status`, only catch-all listeners.
const noStatus = app.langgraphWebhooks.withFields(['run_id', 'values'])
noStatus.onRun((run) => {
  expectType<string>(run.run_id)
  expectType<Record<string, unknown> | null | undefined>(run.values)
  expectError(run.status)
})
expectError(noStatus.onRun('success', () => {}))

// withValues and withFields compose.
const State = Type.Object({ messages: Type.Array(Type.String()) })
app.langgraphWebhooks.withValues(State).withFields(['run_id', 'status', 'values']).onRun('success', (run) => {
  expectType<{ messages: string[] } | null | undefined>(run.values)
  expectError(run.thread_id)
})
app.langgraphWebhooks.withFields(['run_id', 'values']).withValues(State).onRun((run) => {
  expectType<{ messages: string[] } | null | undefined>(run.values)
  expectError(run.status)
})

// The onRun option, typed by the options' type parameters.
const options: LanggraphWebhooksOptions<undefined, 'run_id' | 'status'> = {
  token: 'x',
  allowedFields: ['run_id', 'status'],
  onRun (run) {
    expectType<string>(run.run_id)
    expectError(run.thread_id)
  }
}
await app.register(langgraphWebhooks, options)
expectError<LanggraphWebhooksOptions<undefined, 'run_id'>>({ token: 'x', allowedFields: ['run_id', 'status'] })
