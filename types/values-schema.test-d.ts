import Fastify from 'fastify'
import { Type as Type034 } from '@sinclair/typebox'
import Type from 'typebox'
import { z } from 'zod'
import * as v from 'valibot'
import { type } from 'arktype'
import { expectAssignable, expectError, expectType } from 'tsd'
import langgraphWebhooks, {
  openApiSecuritySchemes,
  type LanggraphWebhooksOptions,
  type OpenApiOptions,
  type StandardSchemaV1,
  type ValuesOf,
  type ValuesSchema
} from 'fastify-langgraph-webhooks'

const app = Fastify()

// TypeBox 0.34 (@sinclair/typebox): Static.
const Legacy = Type034.Object({ messages: Type034.Array(Type034.String()), step: Type034.Optional(Type034.Number()) })
app.langgraphWebhooks.withValues(Legacy).onRun((run) => {
  expectType<{ messages: string[], step?: number } | null | undefined>(run.values)
})

// TypeBox 1.x (typebox): Static, and a codec's decoded type.
const Modern = Type.Object({
  messages: Type.Array(Type.String()),
  at: Type.Codec(Type.String()).Decode((text) => new Date(text)).Encode((date) => date.toISOString())
})
app.langgraphWebhooks.withValues(Modern).onRun('success', (run) => {
  expectType<string[] | undefined>(run.values?.messages)
  expectType<Date | undefined>(run.values?.at)
})

// Zod: the output type, defaults and transforms applied.
const State = z.object({
  messages: z.array(z.string()),
  step: z.number().default(0),
  topic: z.string().transform((topic) => topic.length)
})
app.langgraphWebhooks.withValues(State).onRun(['success', 'interrupted'], (run) => {
  expectType<'success' | 'interrupted'>(run.status)
  expectType<{ messages: string[], step: number, topic: number } | null | undefined>(run.values)
})
expectType<z.output<typeof State>>({} as ValuesOf<typeof State>)

// Valibot and ArkType: StandardSchemaV1.InferOutput.
const Valibot = v.object({ count: v.pipe(v.string(), v.transform(Number)) })
app.langgraphWebhooks.withValues(Valibot).onRun((run) => {
  expectType<number | undefined>(run.values?.count)
})
const Ark = type({ name: 'string', 'tags?': 'string[]' })
app.langgraphWebhooks.withValues(Ark).onRun((run) => {
  expectType<string | undefined>(run.values?.name)
  expectType<string[] | undefined>(run.values?.tags)
})
expectAssignable<StandardSchemaV1>(State)
expectAssignable<ValuesSchema>(Modern)
expectType<{ count: number }>({} as StandardSchemaV1.InferOutput<typeof Valibot>)

// The onRun option follows valuesSchema for each kind.
const zodOptions: LanggraphWebhooksOptions<typeof State> = {
  token: 'x',
  valuesSchema: State,
  onRun: (run) => { expectType<number | undefined>(run.values?.step) }
}
await app.register(langgraphWebhooks, zodOptions)
const typeboxOptions: LanggraphWebhooksOptions<typeof Modern> = {
  token: 'x',
  valuesSchema: Modern,
  onRun: (run) => { expectType<Date | undefined>(run.values?.at) }
}
await app.register(langgraphWebhooks, typeboxOptions)
await app.register(langgraphWebhooks, { token: 'x', valuesSchema: Ark })

// Wrong uses do not compile.
expectError(app.langgraphWebhooks.withValues({ type: 'object' }))
expectError(app.langgraphWebhooks.withValues(State).onRun((run) => { run.values?.messages.push(1) }))
expectError(app.register(langgraphWebhooks, { token: 'x', valuesSchema: 'State' }))
expectError<LanggraphWebhooksOptions<typeof State>>({ token: 'x', valuesSchema: Legacy })

// OpenAPI.
expectAssignable<OpenApiOptions>({ summary: 's', description: 'd', tags: ['a'], hide: false })
expectError(app.register(langgraphWebhooks, { token: 'x', openapi: { summery: 's' } }))
expectType<'apiKey'>(openApiSecuritySchemes.langgraphWebhookToken.type)
expectType<'bearer'>(openApiSecuritySchemes.langgraphWebhookBearer.scheme)
