import Fastify from 'fastify'
import { Client } from '@langchain/langgraph-sdk'
import { expectError, expectType } from 'tsd'
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
expectError(app.register(langgraphWebhooks, { token: 'x', langgraph: { client } }))
expectError(app.register(langgraphWebhooks, { token: 'x', langgraph: { client: {}, webhookUrl: 'https://x' } }))

const run = await app.langgraphWebhooks.runs.create('thread-id', 'agent', { input: { messages: [{ role: 'user', content: 'hi' }] }, config: { tags: ['a'] } })
expectType<LanggraphRun>(run)
expectType<string>(run.run_id)
await app.langgraphWebhooks.runs.create(null, 'agent')
// The plugin sets the webhook.
expectError(app.langgraphWebhooks.runs.create(null, 'agent', { webhook: 'https://elsewhere' }))

expectType<LanggraphRun[]>(await app.langgraphWebhooks.runs.createBatch([{ assistantId: 'agent', input: {} }, { assistantId: 'agent' }]))
expectError(app.langgraphWebhooks.runs.createBatch([{ input: {} }]))
expectError(app.langgraphWebhooks.runs.createBatch([{ assistantId: 'agent', webhook: 'https://elsewhere' }]))

for await (const chunk of app.langgraphWebhooks.runs.stream('thread-id', 'agent', { input: {}, streamMode: 'values' })) {
  expectType<LanggraphStreamChunk>(chunk)
  expectType<string>(chunk.event)
}

const delivered = await app.langgraphWebhooks.waitForRun(run.run_id, { timeoutMs: 60_000, signal: AbortSignal.timeout(1000) })
expectType<RunWebhook>(delivered)
expectError(app.langgraphWebhooks.waitForRun(run.run_id, { timeout: 5 }))
expectType<string>(app.langgraphWebhooks.webhookUrl)
// A webhook for the SDK calls the plugin does not wrap.
await client.runs.wait(null, 'agent', { input: {}, webhook: app.langgraphWebhooks.webhookUrl })
