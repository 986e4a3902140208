/**
 * Bodies stripped by the Python server's webhooks.allowed_fields: with the
 * same list as allowedFields they reach the listeners; without it the 400
 * says what to do. Features that read a stripped field refuse to register.
 */
import { test } from 'tap'
import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import langgraphWebhooks, { RUN_WEBHOOK_FIELDS, RunWebhookSchema, runWebhookSchemaFor, type RunWebhookField } from '../lib/index.js'
import { RUN_KEY_FIELDS, requireRunFields } from '../lib/options.js'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'
import { createRunValidator } from '../lib/schemas.js'
import { TOKEN, buildApp, pythonServerBody } from './helpers/app.js'

const STRIPPED: RunWebhookField[] = ['run_id', 'status', 'values', 'error', 'webhook_sent_at']

/** A Python body as the server sends it with webhooks.allowed_fields = `fields`. */
function stripped (status: string, fields: readonly string[] = STRIPPED): Record<string, unknown> {
  const body = pythonServerBody(status)
  return Object.fromEntries(Object.entries(body).filter(([key]) => fields.includes(key)))
}

test('the field list is the run webhook schema\'s top-level fields', async (t) => {
  t.same([...RUN_WEBHOOK_FIELDS].sort(), Object.keys(RunWebhookSchema.properties).sort())
})

test('without allowedFields, a stripped body is 400 and the message names allowedFields', async (t) => {
  const { app } = await buildApp()
  const res = await deliverRun(app, stripped('success'), { token: TOKEN })
  t.equal(res.statusCode, 400)
  t.match(res.json().message, /^Invalid run webhook: thread_id is required; assistant_id is required; created_at is required; updated_at is required; metadata is required; and 1 more field failed \(if the LangGraph server strips webhook bodies \(webhooks\.allowed_fields\), give the same list as the allowedFields option\)$/)

  // A body with every field but a wrong type gets no such hint.
  const wrong = await deliverRun(app, buildRunWebhook({ status: 5 as any }), { token: TOKEN })
  t.equal(wrong.statusCode, 400)
  t.equal(wrong.json().message, 'Invalid run webhook: status: expected string')
})

test('with allowedFields, a stripped Python body reaches catch-all and status listeners', async (t) => {
  const seen: string[] = []
  const { app } = await buildApp({ allowedFields: STRIPPED })
  app.langgraphWebhooks.onRun((run) => { seen.push(`all:${run.status}`) })
  app.langgraphWebhooks.onRun('error', (run) => { seen.push(`error:${JSON.stringify(run.error)}`) })
  app.langgraphWebhooks.onRun(['success', 'interrupted'], (run) => { seen.push(`done:${run.status}`) })
  for (const status of ['success', 'error', 'interrupted']) {
    t.equal((await deliverRun(app, stripped(status), { token: TOKEN })).statusCode, 204, status)
  }
  t.same(seen, ['all:success', 'done:success', 'all:error', 'error:{"error":"ValueError","message":"node failed"}', 'all:interrupted', 'done:interrupted'])
  // A full body still passes.
  t.equal((await deliverRun(app, buildRunWebhook(), { token: TOKEN })).statusCode, 204)
})

test('with allowedFields, the listed fields are required and every field present is type-checked', async (t) => {
  const { app } = await buildApp({ allowedFields: ['run_id', 'status', 'values'] })
  const send = (body: unknown) => deliverRun(app, body, { token: TOKEN })
  const missing = await send({ status: 'success' })
  t.equal(missing.statusCode, 400)
  t.equal(missing.json().message, 'Invalid run webhook: run_id is required', 'no allowedFields hint once the option is set')
  t.equal((await send({ run_id: 'r1', status: 'success' })).statusCode, 204, 'values stays optional: stateless runs have none')
  t.equal((await send({ run_id: 'r2', status: 'success', values: null })).statusCode, 204)
  t.match((await send({ run_id: 'r3', status: 'success', values: [] })).json().message, /values: expected union value/, 'a listed field keeps its type')
  t.match((await send({ run_id: 'r4', status: 'success', thread_id: 7 })).json().message, /thread_id: expected string/, 'a field not listed is checked when present')
  t.match((await send({ run_id: '', status: 'success' })).json().message, /run_id: expected string length greater or equal to 1/)
  t.match((await send({ run_id: 'r5', status: 'success', webhook_sent_at: 'yesterday' })).json().message, /webhook_sent_at: expected string to match/)
})

test('the subset check is compiled once and walks no open object key by key', async (t) => {
  const schema = runWebhookSchemaFor(['run_id', 'status', 'metadata', 'values', 'kwargs'])
  t.notMatch(TypeCompiler.Code(schema, [], { language: 'javascript' }), /Object\.entries\(/)
  t.same(schema.required, ['run_id', 'status', 'metadata', 'kwargs'], 'only listed fields that a full body requires are required')
  const validate = createRunValidator(['run_id', 'status'])
  t.equal(validate({ run_id: 'r', status: 'success', metadata: { any: 'keys' } }), undefined)
  t.match(String(validate({ run_id: 'r' })), /status is required/)
})

test('without status in allowedFields, runs reach catch-all listeners and filtering by status is refused', async (t) => {
  const seen: unknown[] = []
  const { app } = await buildApp({ allowedFields: ['run_id', 'values'], onRun: (run) => { seen.push(run) } })
  t.throws(() => app.langgraphWebhooks.onRun('success' as never, () => {}), { name: 'TypeError', message: /allowedFields does not list "status"/ })
  t.equal((await deliverRun(app, { run_id: 'r1', values: { a: 1 } }, { token: TOKEN })).statusCode, 204)
  t.same(seen, [{ run_id: 'r1', values: { a: 1 } }])
})

test('features that read stripped fields refuse to register', async (t) => {
  const register = async (options: Record<string, unknown>) => { await Fastify().register(langgraphWebhooks, { token: TOKEN, ...options }) }
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['dedupe without status', { dedupe: true, allowedFields: ['run_id', 'values'] }, /^dedupe reads run_id and status from every webhook body, but allowedFields does not list status: add status to allowedFields and to the server's webhooks\.allowed_fields$/],
    ['dedupe without either', { dedupe: { ttlMs: 1000 }, allowedFields: ['values'] }, /^dedupe reads run_id and status from every webhook body, but allowedFields does not list run_id or status: add run_id and status/],
    ['maxAgeMs without webhook_sent_at', { maxAgeMs: 60_000, allowedFields: ['run_id', 'status'] }, /^maxAgeMs reads webhook_sent_at from every webhook body/],
    ['valuesSchema without values', { valuesSchema: Type.Object({}), allowedFields: ['run_id', 'status'] }, /^valuesSchema reads values from every webhook body/],
    ['not an array', { allowedFields: 'run_id' }, /^allowedFields must be a non-empty array of the fields the server keeps \(its webhooks\.allowed_fields\), e\.g\. \['run_id', 'status', 'values'\], got the string "run_id"$/],
    ['empty', { allowedFields: [] }, /allowedFields must be a non-empty array/],
    ['an unknown field', { allowedFields: ['run_id', 'run-id'] }, /^allowedFields: "run-id" is not a run webhook field; the fields are: run_id, thread_id, /],
    ['a non-string field', { allowedFields: ['run_id', 5] }, /^allowedFields: 5 is not a run webhook field/]
  ]
  for (const [name, options, message] of cases) {
    await t.rejects(register(options), { code: 'FST_LANGGRAPH_WEBHOOKS_INVALID_OPTION', message }, name)
  }
  await t.resolves(register({ dedupe: true, maxAgeMs: 60_000, valuesSchema: Type.Object({}), allowedFields: ['values', 'run_id', 'status', 'webhook_sent_at', 'status'] }))
  // The check other run-keyed features (a queue) reuse.
  t.throws(() => requireRunFields(['values'], RUN_KEY_FIELDS, 'queue'), { message: /^queue reads run_id and status from every webhook body/ })
  t.doesNotThrow(() => requireRunFields(undefined, RUN_KEY_FIELDS, 'queue'))
})

test('dedupe works on stripped bodies', async (t) => {
  let calls = 0
  const { app } = await buildApp({ dedupe: true, allowedFields: ['run_id', 'status'], onRun: () => { calls++ } })
  const body = { run_id: 'r1', status: 'success' }
  t.equal((await deliverRun(app, body, { token: TOKEN })).statusCode, 204)
  t.equal((await deliverRun(app, body, { token: TOKEN })).statusCode, 204)
  t.equal(calls, 1)
})

test('withFields returns the decorator for the registered list only', async (t) => {
  const { app } = await buildApp({ allowedFields: ['run_id', 'status'] })
  t.equal(app.langgraphWebhooks.withFields(['status', 'run_id']), app.langgraphWebhooks, 'any order')
  for (const fields of [['run_id'], ['run_id', 'status', 'values'], ['run_id', 'values'], 'run_id']) {
    t.throws(() => app.langgraphWebhooks.withFields(fields as any), { code: 'FST_LANGGRAPH_WEBHOOKS_ALLOWED_FIELDS_MISMATCH' }, JSON.stringify(fields))
  }
  const { app: full } = await buildApp()
  t.throws(() => full.langgraphWebhooks.withFields(['run_id']), { code: 'FST_LANGGRAPH_WEBHOOKS_ALLOWED_FIELDS_MISMATCH' }, 'without allowedFields')
})

test('a 400 that stops at its field limit says how many more fields failed', async (t) => {
  const validate = createRunValidator()
  const eight = buildRunWebhook({ run_id: 1, thread_id: 2, assistant_id: 3, status: 4, created_at: 5, updated_at: 6, metadata: 7, webhook_sent_at: 8 } as any)
  t.equal(validate(eight)?.message, 'Invalid run webhook: run_id: expected string; thread_id: expected string; assistant_id: expected string; status: expected string; created_at: expected string; and 3 more fields failed')
  const five = buildRunWebhook({ run_id: 1, thread_id: 2, assistant_id: 3, status: 4, created_at: 5 } as any)
  t.notMatch(String(validate(five)), /more/, 'five failing fields: all named, nothing more')
  const many = buildRunWebhook({ kwargs: { config: { tags: Array.from({ length: 5000 }, (_, i) => i) } } } as any)
  t.match(String(validate(many)), /kwargs\.config\.tags\.4: expected string; and 1000\+ more fields failed$/, 'counting stops at 1000')
})
