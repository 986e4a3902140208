import Fastify from 'fastify'
import { Type as Type034 } from '@sinclair/typebox'
import Type from 'typebox'
import { z } from 'zod'
import * as v from 'valibot'
import { type } from 'arktype'
import { expectTypeOf } from 'expect-type'
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
  expectTypeOf(run.values).toEqualTypeOf<{ messages: string[], step?: number } | null | undefined>()
})

// TypeBox 1.x (typebox): Static, and a codec's decoded type.
const Modern = Type.Object({
  messages: Type.Array(Type.String()),
  at: Type.Codec(Type.String()).Decode((text) => new Date(text)).Encode((date) => date.toISOString())
})
app.langgraphWebhooks.withValues(Modern).onRun('success', (run) => {
  expectTypeOf(run.values?.messages).toEqualTypeOf<string[] | undefined>()
  expectTypeOf(run.values?.at).toEqualTypeOf<Date | undefined>()
})

// Zod: the output type, defaults and transforms applied.
const State = z.object({
  messages: z.array(z.string()),
  step: z.number().default(0),
  topic: z.string().transform((topic) => topic.length)
})
app.langgraphWebhooks.withValues(State).onRun(['success', 'interrupted'], (run) => {
  expectTypeOf(run.status).toEqualTypeOf<'success' | 'interrupted'>()
  expectTypeOf(run.values).toEqualTypeOf<{ messages: string[], step: number, topic: number } | null | undefined>()
})
expectTypeOf({} as ValuesOf<typeof State>).toEqualTypeOf<z.output<typeof State>>()

// Valibot and ArkType: StandardSchemaV1.InferOutput.
const Valibot = v.object({ count: v.pipe(v.string(), v.transform(Number)) })
app.langgraphWebhooks.withValues(Valibot).onRun((run) => {
  expectTypeOf(run.values?.count).toEqualTypeOf<number | undefined>()
})
const Ark = type({ name: 'string', 'tags?': 'string[]' })
app.langgraphWebhooks.withValues(Ark).onRun((run) => {
  expectTypeOf(run.values?.name).toEqualTypeOf<string | undefined>()
  expectTypeOf(run.values?.tags).toEqualTypeOf<string[] | undefined>()
})
expectTypeOf(State).toExtend<StandardSchemaV1>()
expectTypeOf(Modern).toExtend<ValuesSchema>()
expectTypeOf({} as StandardSchemaV1.InferOutput<typeof Valibot>).toEqualTypeOf<{ count: number }>()

// The onRun option follows valuesSchema for each kind.
const zodOptions: LanggraphWebhooksOptions<typeof State> = {
  token: 'x',
  valuesSchema: State,
  onRun: (run) => { expectTypeOf(run.values?.step).toEqualTypeOf<number | undefined>() }
}
await app.register(langgraphWebhooks, zodOptions)
const typeboxOptions: LanggraphWebhooksOptions<typeof Modern> = {
  token: 'x',
  valuesSchema: Modern,
  onRun: (run) => { expectTypeOf(run.values?.at).toEqualTypeOf<Date | undefined>() }
}
await app.register(langgraphWebhooks, typeboxOptions)
await app.register(langgraphWebhooks, { token: 'x', valuesSchema: Ark })

// Wrong uses do not compile.
// @ts-expect-error
app.langgraphWebhooks.withValues({ type: 'object' })
// @ts-expect-error
app.langgraphWebhooks.withValues(State).onRun((run) => { run.values?.messages.push(1) })
// @ts-expect-error
app.register(langgraphWebhooks, { token: 'x', valuesSchema: 'State' })
// @ts-expect-error
expectTypeOf<LanggraphWebhooksOptions<typeof State>>({ token: 'x', valuesSchema: Legacy })

// OpenAPI.
expectTypeOf({ summary: 's', description: 'd', tags: ['a'], hide: false }).toExtend<OpenApiOptions>()
// @ts-expect-error
app.register(langgraphWebhooks, { token: 'x', openapi: { summery: 's' } })
expectTypeOf(openApiSecuritySchemes.langgraphWebhookToken.type).toEqualTypeOf<'apiKey'>()
expectTypeOf(openApiSecuritySchemes.langgraphWebhookBearer.scheme).toEqualTypeOf<'bearer'>()
