// The `langgraph` option, and app.langgraphWebhooks.runs / webhookUrl without it or misused.
import t from 'tap'
import { createRequire } from 'node:module'
import { inspect } from 'node:util'
import Fastify from 'fastify'
import langgraphWebhooks from '../lib/index.js'
import { errorOf, webhookBody } from '../lib/runs/reconcile.js'
import { RunWaiters } from '../lib/runs/waiters.js'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'
import { TOKEN, buildApp } from './helpers/app.js'

// The SDK's CommonJS build (see examples/langgraph-server.ts for why).
const { Client } = createRequire(import.meta.url)('@langchain/langgraph-sdk') as typeof import('@langchain/langgraph-sdk')
// Nothing listens there: these tests make no call to a server.
const client = new Client({ apiUrl: 'http://127.0.0.1:9' })
const webhookUrl = 'https://api.example.com/webhooks/langgraph'

async function refused (langgraph: unknown, extra: Record<string, unknown> = {}): Promise<string> {
  const app = Fastify()
  try {
    await app.register(langgraphWebhooks, { token: TOKEN, langgraph, ...extra } as any)
    await app.ready()
  } catch (error) {
    const { code, message } = error as { code: string, message: string }
    return `${code}: ${message}`
  } finally {
    await app.close()
  }
  throw new Error('registered')
}

t.test('the langgraph option is checked strictly', async (t) => {
  t.match(await refused('yes'), /FST_LANGGRAPH_WEBHOOKS_INVALID_OPTION: langgraph must be an object \{ client, webhookUrl, reconcileAfterMs, reconcileEveryMs \}, got the string "yes"/)
  t.match(await refused({ client, webhookUrl, reconcileAfter: 5 }), /unknown option "langgraph.reconcileAfter"/)
  t.match(await refused({ webhookUrl }), /langgraph.client must be a @langchain\/langgraph-sdk Client.*npm install @langchain\/langgraph-sdk/)
  t.match(await refused({ client: { runs: {} }, webhookUrl }), /langgraph.client must be/)
  t.match(await refused({ client, webhookUrl }, { tokenSources: ['bearer'] }), /tokenSources to include "query"/)
  t.match(await refused({ client }), /langgraph.webhookUrl must be the absolute public URL.*got undefined/)
  t.match(await refused({ client, webhookUrl: '/webhooks/langgraph' }), /got the string "\/webhooks\/langgraph"/)
  t.match(await refused({ client, webhookUrl: 'ftp://example.com/hook' }), /http: or https: URL, got ftp:/)
  const withToken = await refused({ client, webhookUrl: `${webhookUrl}?token=${TOKEN}` })
  t.match(withToken, /must not hold a token: the plugin adds it/)
  t.notOk(withToken.includes(TOKEN), 'the message does not repeat the token')
  t.match(await refused({ client, webhookUrl, reconcileAfterMs: '5000' }), /langgraph.reconcileAfterMs must be a positive integer.*the string "5000"/)
  t.match(await refused({ client, webhookUrl, reconcileEveryMs: 0 }), /langgraph.reconcileEveryMs must be a positive integer/)
  t.match(await refused({ client, webhookUrl }, { allowedFields: ['status', 'values'] }), /langgraph reads run_id from every webhook body, but allowedFields does not list run_id/)
})

t.test('webhookUrl is the URL with the first token, encoded', async (t) => {
  const token = 'new+token/0123456789abcdef0123456789abcdef'
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(langgraphWebhooks, { token: [token, TOKEN], langgraph: { client, webhookUrl: `${webhookUrl}?tenant=a` } })
  const url = new URL(app.langgraphWebhooks.webhookUrl)
  t.equal(url.searchParams.get('token'), token, 'the newest token while rotating')
  t.equal(url.searchParams.get('tenant'), 'a', 'the URL\'s own query is kept')
  t.equal(`${url.origin}${url.pathname}`, webhookUrl)
  t.notMatch(JSON.stringify(app.langgraphWebhooks), 'token', 'serializing the decorator leaves the secret URL out')
  t.notMatch(inspect(app.langgraphWebhooks, { getters: true }), token)
})

t.test('without the langgraph option: runs and webhookUrl say what is missing; waitForRun works', async (t) => {
  const { app } = await buildApp()
  t.teardown(() => app.close())
  await t.rejects(app.langgraphWebhooks.runs.create(null, 'agent'), { code: 'FST_LANGGRAPH_WEBHOOKS_NO_LANGGRAPH', message: /^runs.create needs the langgraph option/ })
  await t.rejects(app.langgraphWebhooks.runs.stream(null, 'agent').next(), { code: 'FST_LANGGRAPH_WEBHOOKS_NO_LANGGRAPH', message: /^runs.stream needs/ })
  await t.rejects(app.langgraphWebhooks.runs.createBatch([{ assistantId: 'agent' }]), { code: 'FST_LANGGRAPH_WEBHOOKS_NO_LANGGRAPH', message: /^runs.createBatch needs/ })
  t.throws(() => app.langgraphWebhooks.webhookUrl, { code: 'FST_LANGGRAPH_WEBHOOKS_NO_LANGGRAPH' })
  t.equal(typeof app.langgraphWebhooks.waitForRun, 'function')
})

t.test('runs.create and runs.stream set the webhook themselves', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(langgraphWebhooks, { token: TOKEN, langgraph: { client, webhookUrl } })
  const create = app.langgraphWebhooks.runs.create as (...args: unknown[]) => Promise<unknown>
  await t.rejects(create('thread', 'agent', { webhook: 'https://elsewhere' }), { name: 'TypeError', code: 'FST_LANGGRAPH_WEBHOOKS_INVALID_ARGUMENT', message: /payload.webhook is set by the plugin/ })
  await t.rejects(create('thread', 'agent', null), { name: 'TypeError', message: /runs.create: payload must be an object/ })
  const stream = app.langgraphWebhooks.runs.stream as (...args: unknown[]) => AsyncGenerator
  await t.rejects(stream('thread', 'agent', 'input').next(), { message: /runs.stream: payload must be an object/ })
  const createBatch = app.langgraphWebhooks.runs.createBatch as (...args: unknown[]) => Promise<unknown>
  await t.rejects(createBatch({ assistantId: 'agent' }), { code: 'FST_LANGGRAPH_WEBHOOKS_INVALID_ARGUMENT', message: /runs.createBatch: payloads must be an array/ })
  await t.rejects(createBatch([{ assistantId: 'agent' }, { assistantId: 'agent', webhook: 'https://elsewhere' }]), { code: 'FST_LANGGRAPH_WEBHOOKS_INVALID_ARGUMENT', message: /runs.createBatch: payload.webhook is set by the plugin/ })
  await t.rejects(createBatch([null]), { message: /runs.createBatch: payload must be an object/ })
})

t.test('the error of a failed run, from the thread state\'s tasks', async (t) => {
  t.equal(errorOf(undefined), undefined)
  t.equal(errorOf([{}, { error: '' }, { error: null }]), undefined)
  t.equal(errorOf([{ error: '{"message":"boom","name":"Error"}' }]), 'boom', 'the JS server\'s JSON')
  t.equal(errorOf([{ error: "ValueError('boom')" }]), "ValueError('boom')", 'a plain string')
  t.equal(errorOf([{ error: '{"name":"Error"}' }]), '{"name":"Error"}', 'JSON without a message')
  t.equal(errorOf([{ error: 'null' }]), 'null')
})

t.test('waiters ignore deliveries heard after close', async (t) => {
  const waiters = new RunWaiters()
  await waiters.close()
  const run = buildRunWebhook()
  waiters.heard(run)
  await t.rejects(waiters.wait(run.run_id), { code: 'FST_LANGGRAPH_WEBHOOKS_SHUTTING_DOWN' })
})

t.test('the webhook body of a fetched run', async (t) => {
  const run = { run_id: 'r', thread_id: 't', assistant_id: 'a', created_at: '2026-12-01T00:00:00.000Z', updated_at: '2026-12-01T00:00:01.000Z', status: 'success', metadata: {} }
  const before = Date.now()
  const body = webhookBody(run, { values: { messages: ['hi'] } })
  t.match(body, { ...run, values: { messages: ['hi'] } })
  t.ok(Date.parse(body.webhook_sent_at) >= before, 'sent now')
  t.equal(body.error, undefined)
  t.equal(webhookBody(run, undefined).values, undefined, 'no state: no values')
  t.equal(webhookBody(run, { values: null }).values, undefined)
  t.equal(webhookBody(run, { values: [{ role: 'user' }] }).values, undefined, 'values that are not an object are left out (the schema wants an object)')
  const failed = { ...run, status: 'error' }
  t.equal(webhookBody(failed, { values: {}, tasks: [{ error: '{"message":"boom"}' }] }).error, 'boom')
  t.equal(webhookBody(failed, { values: {}, tasks: [] }).error, 'the run failed; the LangGraph server did not say why', 'a failure the state does not explain')
  t.equal(webhookBody(failed, undefined).error, 'the run failed; the LangGraph server did not say why')
})

t.test('with the langgraph option, a second webhook of a run handled a moment ago goes through untracked', async (t) => {
  const { app } = await buildApp({ langgraph: { client, webhookUrl } })
  t.teardown(() => app.close())
  let calls = 0
  app.langgraphWebhooks.onRun(() => { calls++ })
  const body = buildRunWebhook()
  t.equal((await deliverRun(app, body, { token: TOKEN })).statusCode, 204)
  t.equal((await deliverRun(app, body, { token: TOKEN })).statusCode, 204)
  t.equal(calls, 2, 'without dedupe, a repeated webhook runs the listeners again, as before')
})
