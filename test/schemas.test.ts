import { test } from 'tap'
import Fastify from 'fastify'
import { Value } from '@sinclair/typebox/value'
import {
  MultitaskStrategySchema, RunKwargsSchema, RunSchema, RunStatusSchema, RunWebhookSchema, RUN_STATUSES
} from '../lib/index.js'
import { jsServerBody, pythonServerBody } from './helpers/app.js'

test('RunStatusSchema lists the known statuses, rollback included', async (t) => {
  for (const status of ['pending', 'running', 'error', 'success', 'timeout', 'interrupted', 'rollback']) {
    t.ok(Value.Check(RunStatusSchema, status), status)
  }
  t.same([...RUN_STATUSES].sort(), ['error', 'interrupted', 'pending', 'rollback', 'running', 'success', 'timeout'])
  t.notOk(Value.Check(RunStatusSchema, 'sucess'))
  t.ok(Value.Check(MultitaskStrategySchema, 'enqueue'))
  t.notOk(Value.Check(MultitaskStrategySchema, 'later'))
})

test('RunWebhookSchema accepts what both servers send', async (t) => {
  t.ok(Value.Check(RunWebhookSchema, jsServerBody()), 'the JS server\'s real body')
  for (const status of ['error', 'rollback', 'timeout', 'interrupted', 'success']) {
    t.ok(Value.Check(RunWebhookSchema, pythonServerBody(status)), `a Python ${status} body`)
  }
  const stateless = jsServerBody()
  delete stateless.values
  t.ok(Value.Check(RunWebhookSchema, stateless), 'values absent')
  t.ok(Value.Check(RunWebhookSchema, { ...jsServerBody(), run_ended_at: null, metadata: null, multitask_strategy: null }), 'nullable fields')
  t.ok(Value.Check(RunWebhookSchema, { ...jsServerBody(), created_at: '2026-11-28T06:52:05+00:00', updated_at: '2026-11-28T06:52:05.1-05:30' }), 'no fraction, other offsets')
  t.ok(Value.Check(RunWebhookSchema, { ...jsServerBody(), status: 'archived' }), 'a future status')
  t.ok(Value.Check(RunSchema, jsServerBody()))
  t.ok(Value.Check(RunKwargsSchema, { stream_mode: 'values', command: { resume: 'yes' }, webhook: null }))
})

test('RunWebhookSchema refuses what is not a run', async (t) => {
  const cases: Array<[string, Record<string, unknown>]> = [
    ['empty status', { status: '' }],
    ['date without time', { created_at: '2026-11-28' }],
    ['date with a space', { webhook_sent_at: '2026-11-28 06:52:05Z' }],
    ['error as a number', { error: 1 }],
    ['error object without message', { error: { error: 'ValueError' } }],
    ['values as an array', { values: [1] }],
    ['kwargs as a string', { kwargs: 'x' }],
    ['unknown multitask strategy', { multitask_strategy: 'later' }]
  ]
  for (const [name, change] of cases) t.notOk(Value.Check(RunWebhookSchema, { ...jsServerBody(), ...change }), name)
})

test('the exported schema works with Fastify\'s own validator too (a route a user writes by hand)', async (t) => {
  const app = Fastify()
  app.post('/by-hand', { schema: { body: RunWebhookSchema } }, async () => 'ok')
  const send = (body: unknown) => app.inject({ method: 'POST', url: '/by-hand', payload: body as any })
  t.equal((await send(jsServerBody())).statusCode, 200)
  t.equal((await send(pythonServerBody('error'))).statusCode, 200)
  t.equal((await send({ ...jsServerBody(), created_at: 'yesterday' })).statusCode, 400)
})
