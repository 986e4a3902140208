import { Kind, type Static, type TSchema } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
/** @ts-ignore `typebox` (TypeBox 1.x) is an optional peer: without it this type is `any`, and only a TypeBox 1.x schema reaches it */
import type { StaticDecode as TypeBoxStaticDecode } from 'typebox'
import { InvalidOptionError, InvalidRunError } from './errors.js'
import { describe } from './schemas.js'

/**
 * The Standard Schema v1 interface (https://standardschema.dev), declared
 * here as the spec recommends, so that neither we nor our users need a
 * package for it. Zod 3.24+, Valibot 1, ArkType 2 and others implement it.
 */
export interface StandardSchemaV1<Input = unknown, Output = Input> { readonly '~standard': StandardSchemaV1.Props<Input, Output> }

// The spec's own shape: users write `StandardSchemaV1.InferOutput<typeof schema>`.
export declare namespace StandardSchemaV1 {
  export interface Props<Input = unknown, Output = Input> {
    readonly version: 1
    readonly vendor: string
    readonly validate: (value: unknown) => Result<Output> | Promise<Result<Output>>
    readonly types?: Types<Input, Output> | undefined
  }
  export type Result<Output> = SuccessResult<Output> | FailureResult
  export interface SuccessResult<Output> { readonly value: Output, readonly issues?: undefined }
  export interface FailureResult { readonly issues: ReadonlyArray<Issue> }
  export interface Issue { readonly message: string, readonly path?: ReadonlyArray<PropertyKey | PathSegment> | undefined }
  export interface PathSegment { readonly key: PropertyKey }
  export interface Types<Input = unknown, Output = Input> { readonly input: Input, readonly output: Output }
  export type InferInput<Schema extends StandardSchemaV1> = NonNullable<Schema['~standard']['types']>['input']
  export type InferOutput<Schema extends StandardSchemaV1> = NonNullable<Schema['~standard']['types']>['output']
}

/** A TypeBox 1.x schema (the `typebox` package), known by the `~kind` every one of its types carries. */
export interface TypeBoxSchema { readonly '~kind': string }

/** What `valuesSchema` accepts: TypeBox 0.34 (`@sinclair/typebox`), TypeBox 1.x (`typebox`), or a Standard Schema v1 validator. */
export type ValuesSchema = TSchema | TypeBoxSchema | StandardSchemaV1

/** The type of `run.values` that a `valuesSchema` guarantees: its output (defaults and transforms applied). */
export type ValuesOf<T> =
  T extends TSchema ? Static<T>
    : T extends StandardSchemaV1 ? StandardSchemaV1.InferOutput<T>
      : T extends TypeBoxSchema ? TypeBoxStaticDecode<T>
        : Record<string, unknown>

/** The outcome of checking `run.values`: the values listeners get, or one line per failing field. */
export type ValuesResult = { value: unknown } | { issues: string[] }

/** One adapter per kind of schema behind this signature; a Standard Schema validator may answer asynchronously. */
export type ValuesValidator = (values: unknown) => ValuesResult | Promise<ValuesResult>

export const ACCEPTED_VALUES_SCHEMAS = 'a TypeBox schema (@sinclair/typebox 0.34 or typebox 1.x), or a Standard Schema v1 validator (Zod 3.24+, Valibot, ArkType, ...)'

const MAX_REPORTED_FIELDS = 5

/** Which kind of schema this is, or `undefined` for anything else. */
export function valuesSchemaKind (schema: unknown): 'typebox-0.34' | 'typebox-1' | 'standard-schema' | undefined {
  if (schema === null || (typeof schema !== 'object' && typeof schema !== 'function')) return undefined
  // ArkType's types are functions; Zod's and Valibot's are objects.
  const standard = (schema as Partial<StandardSchemaV1>)['~standard']
  if (standard !== null && typeof standard === 'object' && standard.version === 1 && typeof standard.validate === 'function') return 'standard-schema'
  if (typeof (schema as Record<symbol, unknown>)[Kind] === 'string') return 'typebox-0.34'
  if (typeof (schema as Partial<TypeBoxSchema>)['~kind'] === 'string') return 'typebox-1'
  return undefined
}

/**
 * Builds the validator of a `valuesSchema` with its own library. TypeBox 1.x
 * is loaded only when such a schema is given: it is the user's dependency.
 */
export async function createValuesValidator (schema: ValuesSchema): Promise<ValuesValidator> {
  const kind = valuesSchemaKind(schema)
  if (kind === 'standard-schema') {
    const props = (schema as StandardSchemaV1)['~standard']
    const answer = (result: StandardSchemaV1.Result<unknown>): ValuesResult =>
      result.issues === undefined ? { value: result.value } : { issues: result.issues.map(describeIssue) }
    const settle = (result: ReturnType<typeof props.validate>) => result instanceof Promise ? result.then(answer) : answer(result)
    return (values) => settle(props.validate(values))
  }
  if (kind === 'typebox-0.34') {
    const check = TypeCompiler.Compile(schema as TSchema)
    return (values) => check.Check(values) ? { value: values } : { issues: [describe(check, values, 'values')] }
  }
  let typebox
  try {
    typebox = await Promise.all([import('typebox/compile'), import('typebox/value')])
  } catch (error) {
    throw new InvalidOptionError(`valuesSchema is a TypeBox 1.x schema, validated with the typebox package itself, which could not be loaded (${(error as Error).message}): npm install typebox`)
  }
  const validator = typebox[0].Compile(schema)
  // Codecs turn the wire form into another (a Date from a string): listeners get the decoded form.
  const decode = typebox[1].HasCodec(schema)
  return (values) => validator.Check(values) ? { value: decode ? validator.Decode(values) : values } : { issues: describeTypeBox1(validator.Errors(values)) }
}

function describeIssue (issue: StandardSchemaV1.Issue): string {
  const path = issue.path?.map((segment) => String(typeof segment === 'object' ? segment.key : segment)) ?? []
  // Sentence case to the 400's lower case, acronyms kept.
  return `${['values', ...path].join('.')}: ${issue.message.replace(/^[A-Z](?![A-Z])/, (first) => first.toLowerCase())}`
}

function describeTypeBox1 (errors: Array<{ keyword: string, instancePath: string, params: object, message: string }>): string[] {
  // A union reports each branch's failure, then its own at the same path:
  // the last word on a field is the one kept.
  const lines = new Map<string, string>()
  for (const error of errors) {
    const field = 'values' + error.instancePath.replaceAll('/', '.')
    if (error.keyword !== 'required') lines.set(field, `${field}: ${error.message}`)
    else for (const key of (error.params as { requiredProperties: string[] }).requiredProperties) lines.set(`${field}.${key}`, `${field}.${key} is required`)
  }
  return [...lines.values()]
}

/** The lines of a 400, at most a few fields. */
function summarize (issues: string[]): string {
  const more = issues.length - MAX_REPORTED_FIELDS
  return issues.slice(0, MAX_REPORTED_FIELDS).join('; ') + (more > 0 ? `; ${more} more field${more === 1 ? '' : 's'} failed` : '')
}

/**
 * `run.values` checked against the `valuesSchema`: the schema's output, or
 * a 400 naming the failing fields. It runs in `receive` rather than in
 * Fastify's body validator, which cannot wait for an asynchronous validator.
 */
export async function checkValues (validate: ValuesValidator, values: unknown): Promise<unknown> {
  let result: ValuesResult
  try {
    result = await validate(values)
  } catch (error) {
    // A recursive schema recurses as deep as the body: a body nested deep
    // enough overflows the stack, which is the sender's fault.
    if (error instanceof RangeError) throw new InvalidRunError('values are nested too deeply to validate')
    throw error
  }
  if ('issues' in result) throw new InvalidRunError(summarize(result.issues))
  return result.value
}
