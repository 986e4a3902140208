import { Type, type Static, type TObject, type TOptional, type TSchema, type TUnknown } from '@sinclair/typebox'
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'
import { InvalidRunError } from './errors.js'

/**
 * Statuses a LangGraph server sends. `rollback` comes from the Python server;
 * the JS server reports a rollback as `error` with `error: "rollback"`.
 */
export const RUN_STATUSES = ['pending', 'running', 'error', 'success', 'timeout', 'interrupted', 'rollback'] as const

export const RunStatusSchema = Type.Union(RUN_STATUSES.map((status) => Type.Literal(status)), { $id: 'LanggraphRunStatus', description: 'A status a LangGraph server reports for a run' })
export type RunStatus = (typeof RUN_STATUSES)[number]

export const MultitaskStrategySchema = Type.Union((['reject', 'rollback', 'interrupt', 'enqueue'] as const).map((strategy) => Type.Literal(strategy)))
export type MultitaskStrategy = Static<typeof MultitaskStrategySchema>

// A pattern rather than `format: 'date-time'`: it needs no format registry
// (TypeBox's is global) and means the same under Ajv. JS sends
// `2026-11-28T06:52:05.263Z`, Python `2026-11-28T06:52:05.263118+00:00`.
const DateTime = Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(?:\\.\\d{1,9})?(?:Z|[+-]\\d{2}:\\d{2})$', description: 'ISO 8601 date-time, ending in Z or an offset such as +00:00' })
const Id = Type.String({ minLength: 1 })
// Any object, typed as a record. Declared as an object without properties
// rather than `Type.Record(Type.String(), Type.Unknown())`: both accept the
// same values, but TypeBox compiles a record into a walk over every key
// (that cannot fail) and this into one typeof check (bench/README.md).
const OpenObject = Type.Unsafe<Record<string, unknown>>(Type.Object({}))

/** Optional fields of any value: the plugin passes them on as they are. */
const anything = <K extends string>(...keys: K[]) => Object.fromEntries(keys.map((key) => [key, Type.Optional(Type.Unknown())])) as Record<K, TOptional<TUnknown>>

export const RunConfigSchema = Type.Object({
  configurable: Type.Optional(OpenObject),
  metadata: Type.Optional(OpenObject),
  tags: Type.Optional(Type.Array(Type.String())),
  recursion_limit: Type.Optional(Type.Number())
})

/** The arguments the run was created with (`kwargs`). */
export const RunKwargsSchema = Type.Object({
  ...anything('input', 'command'),
  config: Type.Optional(RunConfigSchema),
  ...anything('context'),
  stream_mode: Type.Optional(Type.Union([Type.Array(Type.String()), Type.String()])),
  /** The webhook URL, token included unless the plugin redacted it. */
  webhook: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  temporary: Type.Optional(Type.Boolean()),
  subgraphs: Type.Optional(Type.Boolean()),
  resumable: Type.Optional(Type.Boolean()),
  ...anything('interrupt_before', 'interrupt_after', 'feedback_keys', 'checkpoint_during', 'durability')
})
export type RunKwargs = Static<typeof RunKwargsSchema>

/**
 * `status` is any non-empty string on the wire, so that a status added by a
 * future server still reaches catch-all listeners; its static type lists the
 * known ones, keeping completion and narrowing.
 */
const OpenRunStatus = Type.Unsafe<RunStatus | (string & {})>(Type.String({ minLength: 1 }))

/** A LangGraph run (the API's `Run` model). Unknown properties are accepted. */
export const RunSchema = Type.Object({
  run_id: Id,
  thread_id: Id,
  assistant_id: Id,
  status: OpenRunStatus,
  created_at: DateTime,
  updated_at: DateTime,
  metadata: Type.Union([OpenObject, Type.Null()]),
  kwargs: RunKwargsSchema,
  multitask_strategy: Type.Optional(Type.Union([MultitaskStrategySchema, Type.Null()]))
}, { $id: 'LanggraphRun' })
export type Run = Static<typeof RunSchema>

/** A failed run's error: a string (JS server, older Python) or `{ error, message }` (newer Python). */
export const RunErrorSchema = Type.Union([Type.String(), Type.Object({ error: Type.String(), message: Type.String() })])
export type RunError = Static<typeof RunErrorSchema>

/** The body a LangGraph server POSTs to a run's webhook. */
export const RunWebhookSchema = Type.Composite([
  RunSchema,
  Type.Object({
    run_started_at: Type.Optional(DateTime),
    run_ended_at: Type.Optional(Type.Union([DateTime, Type.Null()])),
    webhook_sent_at: DateTime,
    /** The thread's final state: absent (JS) or null (Python) for stateless and cancelled runs. */
    values: Type.Optional(Type.Union([OpenObject, Type.Null()])),
    error: Type.Optional(RunErrorSchema)
  })
], { $id: 'LanggraphRunWebhook' })

/** A run webhook whose `values` are of type `Values` (see the `valuesSchema` option). */
export type RunWebhook<Values = Record<string, unknown>> = Omit<Static<typeof RunWebhookSchema>, 'values'> & { values?: Values | null }

/** A run webhook narrowed to the statuses `S` (holding only the fields `Fields`, see `allowedFields`). */
export type RunWebhookOf<S extends RunStatus, Values = Record<string, unknown>, Fields extends RunWebhookField = RunWebhookField> = RunWebhookWith<Fields, Values> & { status: S }

/**
 * The top-level fields of a run webhook: the names the Python server's
 * `webhooks.allowed_fields` setting takes (see the `allowedFields` option).
 */
export const RUN_WEBHOOK_FIELDS = [
  'run_id', 'thread_id', 'assistant_id', 'created_at', 'updated_at', 'metadata', 'kwargs',
  'multitask_strategy', 'status', 'run_started_at', 'run_ended_at', 'webhook_sent_at', 'values', 'error'
] as const satisfies ReadonlyArray<keyof Static<typeof RunWebhookSchema>>
export type RunWebhookField = (typeof RUN_WEBHOOK_FIELDS)[number]

/**
 * A run webhook that holds only the fields `Fields` (the `allowedFields`
 * option), each as in `RunWebhook`; with every field, `RunWebhook` itself.
 */
export type RunWebhookWith<Fields extends RunWebhookField, Values = Record<string, unknown>> = [RunWebhookField] extends [Fields] ? RunWebhook<Values> : Pick<RunWebhook<Values>, Fields>

/**
 * The body schema when the server keeps only `fields`: those keep their
 * type and whether they are required; the others, which the server drops,
 * become optional and are still type-checked when a body has them.
 */
export function runWebhookSchemaFor (fields: readonly RunWebhookField[]): TObject {
  const properties = Object.entries(RunWebhookSchema.properties).map(([name, schema]) => [name, fields.includes(name as RunWebhookField) ? schema : Type.Optional(schema)])
  return Type.Object(Object.fromEntries(properties) as Record<string, TSchema>)
}

const MAX_REPORTED_FIELDS = 5
// Past the reported ones, failing fields are counted up to this many: a body
// within bodyLimit can hold millions of them.
const MAX_COUNTED_FIELDS = 1000
const STRIPPED_BODY_HINT = 'if the LangGraph server strips webhook bodies (webhooks.allowed_fields), give the same list as the allowedFields option'

/** Returns an `InvalidRunError` (400) naming the failing fields, or `undefined` for a valid run. */
export type RunValidator = (body: unknown) => Error | undefined

/**
 * TypeBox's compiled checks: no type coercion (unlike Fastify's default Ajv,
 * which would turn a numeric `status` into a string), and a union reports one
 * error for its field rather than one per branch; compiled once, at registration.
 */
export function createRunValidator (allowedFields?: readonly RunWebhookField[]): RunValidator {
  const check = TypeCompiler.Compile(allowedFields === undefined ? RunWebhookSchema : runWebhookSchemaFor(allowedFields))
  // Without allowedFields, a missing field may be the server's stripping.
  const hint = allowedFields === undefined
  return function validateRun (body) {
    return check.Check(body) ? undefined : new InvalidRunError(describe(check, body, '', hint))
  }
}

/**
 * One line per failing field (a few at most, then how many more), each named
 * by its path under `prefix`; with `hintMissing`, a missing top-level field
 * adds the allowedFields hint.
 */
export function describe (check: TypeCheck<TSchema>, value: unknown, prefix: string, hintMissing = false): string {
  const fields = new Map<string, string>()
  let missingTopLevel = false
  for (const error of check.Errors(value)) {
    const field = prefix + error.path.replaceAll('/', '.')
    if (fields.has(field)) continue
    const missing = error.value === undefined
    if (missing && error.path.lastIndexOf('/') === 0) missingTopLevel = true
    const name = field === '' ? 'body' : field.replace(/^\./, '')
    fields.set(field, missing ? `${name} is required` : `${name}: ${error.message.toLowerCase()}`)
    if (fields.size === MAX_REPORTED_FIELDS + MAX_COUNTED_FIELDS) break
  }
  const more = fields.size - MAX_REPORTED_FIELDS
  let text = [...fields.values()].slice(0, MAX_REPORTED_FIELDS).join('; ')
  if (more > 0) text += `; and ${more === MAX_COUNTED_FIELDS ? `${more}+` : more} more ${more === 1 ? 'field' : 'fields'} failed`
  if (hintMissing && missingTopLevel) text += ` (${STRIPPED_BODY_HINT})`
  return text
}
