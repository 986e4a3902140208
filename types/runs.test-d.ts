import Fastify from 'fastify'
import { Client } from '@langchain/langgraph-sdk'
import { expectTypeOf } from 'expect-type'
import langgraphWebhooks, {
  type LanggraphRun,
  type LanggraphStreamChunk,
  type RunWebhook
} from 'fastify-langgraph-webhooks'

const app = Fastify()
// The SDK's own Client is what `langgraph.client` takes.
const client = new Client({ apiUrl: 'http://localhost:2024' })
await app.register(langgraphWebhooks, {
  token: 'x'.repeat(32),
  langgraph: { client, webhookUrl: 'https://api.example.com/webhooks/langgraph', reconcileAfterMs: 60_000, reconcileEveryMs: 30_000 }
})
// @ts-expect-error
app.register(langgraphWebhooks, { token: 'x', langgraph: { client } })
// @ts-expect-error
app.register(langgraphWebhooks, { token: 'x', langgraph: { client: {}, webhookUrl: 'https://x' } })

const run = await app.langgraphWebhooks.runs.create('thread-id', 'agent', { input: { messages: [{ role: 'user', content: 'hi' }] }, config: { tags: ['a'] } })
expectTypeOf(run).toEqualTypeOf<LanggraphRun>()
expectTypeOf(run.run_id).toEqualTypeOf<string>()
await app.langgraphWebhooks.runs.create(null, 'agent')
// The plugin sets the webhook.
// @ts-expect-error
app.langgraphWebhooks.runs.create(null, 'agent', { webhook: 'https://elsewhere' })

expectTypeOf(await app.langgraphWebhooks.runs.createBatch([{ assistantId: 'agent', input: {} }, { assistantId: 'agent' }])).toEqualTypeOf<LanggraphRun[]>()
// @ts-expect-error
app.langgraphWebhooks.runs.createBatch([{ input: {} }])
// @ts-expect-error
app.langgraphWebhooks.runs.createBatch([{ assistantId: 'agent', webhook: 'https://elsewhere' }])

for await (const chunk of app.langgraphWebhooks.runs.stream('thread-id', 'agent', { input: {}, streamMode: 'values' })) {
  expectTypeOf(chunk).toEqualTypeOf<LanggraphStreamChunk>()
  expectTypeOf(chunk.event).toEqualTypeOf<string>()
}

const delivered = await app.langgraphWebhooks.waitForRun(run.run_id, { timeoutMs: 60_000, signal: AbortSignal.timeout(1000) })
expectTypeOf(delivered).toEqualTypeOf<RunWebhook>()
// @ts-expect-error
app.langgraphWebhooks.waitForRun(run.run_id, { timeout: 5 })
expectTypeOf(app.langgraphWebhooks.webhookUrl).toEqualTypeOf<string>()
// A webhook for the SDK calls the plugin does not wrap.
await client.runs.wait(null, 'agent', { input: {}, webhook: app.langgraphWebhooks.webhookUrl })
