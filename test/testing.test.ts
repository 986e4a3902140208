import { test } from 'tap'
import { Value } from '@sinclair/typebox/value'
import { RunWebhookSchema } from '../lib/index.js'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'
import { TOKEN, buildApp } from './helpers/app.js'

test('buildRunWebhook returns a valid payload with fresh ids', async (t) => {
  const a = buildRunWebhook()
  const b = buildRunWebhook()
  t.ok(Value.Check(RunWebhookSchema, a))
  t.not(a.run_id, b.run_id)
  t.equal(a.status, 'success')
  t.ok(Date.parse(a.run_started_at!) < Date.parse(a.run_ended_at!))
})

test('buildRunWebhook applies overrides, merges kwargs and drops undefined fields', async (t) => {
  const run = buildRunWebhook({ status: 'error', error: 'boom', values: undefined, kwargs: { command: { resume: 'ok' } }, extra: 1 })
  t.ok(Value.Check(RunWebhookSchema, run))
  t.equal(run.status, 'error')
  t.equal(run.error, 'boom')
  t.notOk('values' in run)
  t.same(run.kwargs.command, { resume: 'ok' })
  t.same(run.kwargs.stream_mode, ['values'], 'other kwargs kept')
  t.equal((run as any).extra, 1)
})

test('deliverRun sends the payload as the JS server does', async (t) => {
  const { app } = await buildApp({ path: '/custom' })
  let seen: { contentType?: string, query?: unknown } = {}
  app.langgraphWebhooks.onRun((run, { request }) => {
    seen = { contentType: request!.headers['content-type'], query: request!.query }
  })
  const res = await deliverRun(app, buildRunWebhook(), { token: TOKEN, path: '/custom' })
  t.equal(res.statusCode, 204)
  t.equal(seen.contentType, 'text/plain;charset=UTF-8')
  t.same(seen.query, { token: TOKEN })
  t.equal((await deliverRun(app, JSON.stringify(buildRunWebhook()), { token: TOKEN, path: '/custom' })).statusCode, 204, 'a string payload is sent as is')
})

test('deliverRun sends the payload as the Python server does', async (t) => {
  const { app } = await buildApp()
  let seen: { contentType?: string, authorization?: string, query?: unknown } = {}
  app.langgraphWebhooks.onRun((run, { request }) => {
    seen = { contentType: request!.headers['content-type'], authorization: request!.headers.authorization, query: request!.query }
  })
  const res = await deliverRun(app, buildRunWebhook(), { token: TOKEN, sender: 'python' })
  t.equal(res.statusCode, 204)
  t.same(seen, { contentType: 'application/json', authorization: `Bearer ${TOKEN}`, query: {} })
  t.equal((await deliverRun(app, buildRunWebhook(), { token: 'wrong-token-0123456789', sender: 'python' })).statusCode, 401)
})
