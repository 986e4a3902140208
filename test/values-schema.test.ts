import { test } from 'tap'
import { Type as Type034 } from '@sinclair/typebox'
import Type from 'typebox'
import { z } from 'zod'
import * as v from 'valibot'
import { type } from 'arktype'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'
import { createValuesValidator, type ValuesSchema } from '../lib/values-schema.js'
import { buildApp, TOKEN } from './helpers/app.js'

// The same state, { messages: string[] }, in each library a user may have.
const kinds: Array<[string, ValuesSchema, RegExp]> = [
  ['TypeBox 0.34', Type034.Object({ messages: Type034.Array(Type034.String()) }), /values\.messages\.1: expected string/],
  ['TypeBox 1.x', Type.Object({ messages: Type.Array(Type.String()) }), /values\.messages\.1: must be string/],
  ['Zod', z.object({ messages: z.array(z.string()) }), /values\.messages\.1: invalid input: expected string, received number/],
  ['Valibot', v.object({ messages: v.array(v.string()) }), /values\.messages\.1: invalid type: Expected string but received 1/],
  ['ArkType', type({ messages: 'string[]' }), /values\.messages\.1: messages\[1\] must be a string/]
]

for (const [name, schema, failure] of kinds) {
  test(`${name} valuesSchema: valid values 204, invalid 400 naming the field, null and absent values delivered`, async (t) => {
    const { app } = await buildApp({ valuesSchema: schema })
    const seen: unknown[] = []
    app.langgraphWebhooks.withValues(schema).onRun((run) => { seen.push(run.values) })

    t.equal((await deliverRun(app, buildRunWebhook({ values: { messages: ['a', 'b'] } }), { token: TOKEN })).statusCode, 204)
    const bad = await deliverRun(app, buildRunWebhook({ values: { messages: ['a', 1] } }), { token: TOKEN })
    t.equal(bad.statusCode, 400)
    t.match(bad.json(), { code: 'FST_LANGGRAPH_WEBHOOKS_INVALID_RUN', message: failure })
    const missing = await deliverRun(app, buildRunWebhook({ values: {} }), { token: TOKEN })
    t.equal(missing.statusCode, 400)
    t.match(missing.json().message, /^Invalid run webhook: values\.messages/, 'a missing field is named too')
    t.equal((await deliverRun(app, buildRunWebhook({ values: null }), { token: TOKEN })).statusCode, 204, 'null values are not checked')
    t.equal((await deliverRun(app, buildRunWebhook({ values: undefined }), { token: TOKEN })).statusCode, 204, 'absent values are not checked')
    t.same(seen, [{ messages: ['a', 'b'] }, null, undefined], 'listeners never saw the invalid values')
  })
}

test('listeners get the schema\'s output: Zod defaults and transforms, TypeBox 1.x codecs', async (t) => {
  const State = z.object({
    messages: z.array(z.string()),
    step: z.number().default(0),
    topic: z.string().transform((topic) => topic.toUpperCase()).optional()
  })
  const { app } = await buildApp({ valuesSchema: State })
  const seen: Array<z.output<typeof State> | null | undefined> = []
  app.langgraphWebhooks.withValues(State).onRun((run) => { seen.push(run.values) })
  t.equal((await deliverRun(app, buildRunWebhook({ values: { messages: ['a'], topic: 'news' } }), { token: TOKEN })).statusCode, 204)
  t.same(seen, [{ messages: ['a'], step: 0, topic: 'NEWS' }])

  const At = Type.Codec(Type.String({ format: 'date-time' })).Decode((text) => new Date(text)).Encode((date) => date.toISOString())
  const Timed = Type.Object({ at: At })
  const timed = await buildApp({ valuesSchema: Timed })
  const dates: unknown[] = []
  timed.app.langgraphWebhooks.withValues(Timed).onRun((run) => { dates.push(run.values?.at) })
  t.equal((await deliverRun(timed.app, buildRunWebhook({ values: { at: '2026-11-28T06:52:05.326Z' } }), { token: TOKEN })).statusCode, 204)
  t.ok(dates[0] instanceof Date, 'a TypeBox 1.x codec decoded the value')
  t.equal((dates[0] as Date).toISOString(), '2026-11-28T06:52:05.326Z')
})

test('an asynchronous Standard Schema validator is awaited', async (t) => {
  const known = new Set(['alice'])
  const State = z.object({
    user: z.string().refine(async (user) => {
      await new Promise((resolve) => setTimeout(resolve, 5))
      return known.has(user)
    }, 'unknown user')
  })
  const { app } = await buildApp({ valuesSchema: State })
  const seen: unknown[] = []
  app.langgraphWebhooks.onRun((run) => { seen.push(run.values) })
  t.equal((await deliverRun(app, buildRunWebhook({ values: { user: 'alice' } }), { token: TOKEN })).statusCode, 204)
  const bad = await deliverRun(app, buildRunWebhook({ values: { user: 'mallory' } }), { token: TOKEN })
  t.equal(bad.statusCode, 400)
  t.match(bad.json().message, /values\.user: unknown user/)
  t.same(seen, [{ user: 'alice' }])
})

test('a 400 names a few fields and counts the rest', async (t) => {
  const State = z.object(Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`f${i}`, z.string()])))
  const { app } = await buildApp({ valuesSchema: State })
  const reply = await deliverRun(app, buildRunWebhook({ values: {} }), { token: TOKEN })
  t.equal(reply.statusCode, 400)
  const message: string = reply.json().message
  t.match(message, /values\.f0: .*values\.f4: /)
  t.notMatch(message, /values\.f5/)
  t.match(message, /; 3 more fields failed$/)
  const one = await buildApp({ valuesSchema: z.object(Object.fromEntries(Array.from({ length: 6 }, (_, i) => [`f${i}`, z.string()]))) })
  t.match((await deliverRun(one.app, buildRunWebhook({ values: {} }), { token: TOKEN })).json().message, /; 1 more field failed$/)
})

test('a validator that throws is the application\'s failure (500); a stack overflow is the sender\'s (400)', async (t) => {
  let failure: Error = new Error('broken validator')
  const Throwing = { '~standard': { version: 1 as const, vendor: 'test', validate: () => { throw failure } } }
  const { app } = await buildApp({ valuesSchema: Throwing })
  let calls = 0
  app.langgraphWebhooks.onRun(() => { calls++ })
  const broken = await deliverRun(app, buildRunWebhook({ values: { a: 1 } }), { token: TOKEN })
  t.equal(broken.statusCode, 500)
  t.equal(broken.json().message, 'Internal Server Error')
  failure = new RangeError('Maximum call stack size exceeded')
  const deep = await deliverRun(app, buildRunWebhook({ values: { a: 1 } }), { token: TOKEN })
  t.equal(deep.statusCode, 400)
  t.equal(deep.json().message, 'Invalid run webhook: values are nested too deeply to validate')
  t.equal(calls, 0)
})

test('Standard Schema issue paths: path segments as objects, symbols, and no path at all', async (t) => {
  const validate = await createValuesValidator({
    '~standard': {
      version: 1,
      vendor: 'test',
      validate: () => ({ issues: [{ message: 'Bad', path: [{ key: 'a' }, 0, Symbol.for('s')] }, { message: 'Whole thing wrong' }, { message: 'JSON expected', path: ['b'] }] })
    }
  })
  t.same(await validate({}), { issues: ['values.a.0.Symbol(s): bad', 'values: whole thing wrong', 'values.b: JSON expected'] })
})

test('refused at registration: anything that is not one of the accepted kinds, and TypeBox 1.x when typebox cannot be loaded', async (t) => {
  const cases: Array<[string, unknown]> = [
    ['a plain JSON schema', { type: 'object' }],
    ['null', null],
    ['a string', 'State'],
    ['a Standard Schema of another version', { '~standard': { version: 2, vendor: 'x', validate: () => ({ value: 1 }) } }],
    ['a Standard Schema without validate', { '~standard': { version: 1, vendor: 'x' } }],
    ['a function', () => true]
  ]
  for (const [name, valuesSchema] of cases) {
    await t.rejects(buildApp({ valuesSchema: valuesSchema as ValuesSchema }), {
      code: 'FST_LANGGRAPH_WEBHOOKS_INVALID_OPTION',
      message: /valuesSchema must be a TypeBox schema \(@sinclair\/typebox 0\.34 or typebox 1\.x\), or a Standard Schema v1 validator \(Zod/
    }, name)
  }
  // typebox missing: its import fails.
  const missing = { get Compile (): never { throw new Error("Cannot find package 'typebox'") } }
  const { createValuesValidator: withoutTypeBox } = await t.mockImport<typeof import('../lib/values-schema.js')>('../lib/values-schema.js', { 'typebox/compile': missing })
  await t.rejects(withoutTypeBox(Type.Object({})), {
    code: 'FST_LANGGRAPH_WEBHOOKS_INVALID_OPTION',
    message: /valuesSchema is a TypeBox 1\.x schema.*npm install typebox/
  })
})

test('TypeBox 1.x: a failing union is reported once, in its own words', async (t) => {
  const { app } = await buildApp({ valuesSchema: Type.Object({ id: Type.Union([Type.String(), Type.Number()]) }) })
  const reply = await deliverRun(app, buildRunWebhook({ values: { id: true } }), { token: TOKEN })
  t.equal(reply.statusCode, 400)
  t.equal(reply.json().message, 'Invalid run webhook: values.id: must match a schema in anyOf')
})
