import type { TSchema } from '@sinclair/typebox'
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'
import { InvalidRunError } from './errors.js'
import { RunWebhookSchema, runWebhookSchemaFor, type RunWebhookField } from './schemas.js'

const MAX_REPORTED_FIELDS = 5
// Past the reported ones, failing fields are counted up to this many: a body
// within bodyLimit can hold millions of them.
const MAX_COUNTED_FIELDS = 1000
const STRIPPED_BODY_HINT = 'if the LangGraph server strips webhook bodies (webhooks.allowed_fields), give the same list as the allowedFields option'

/** Returns an `InvalidRunError` (400) naming the failing fields, or `undefined` for a valid run. */
export type RunValidator = (body: unknown) => Error | undefined

let runCheck: TypeCheck<typeof RunWebhookSchema> | undefined

/**
 * TypeBox's compiled checks: no type coercion (unlike Fastify's default Ajv,
 * which would turn a numeric `status` into a string), and a union reports one
 * error for its field rather than one per branch. With `allowedFields`, the
 * subset schema is compiled once, here, at registration.
 */
export function createRunValidator (allowedFields?: readonly RunWebhookField[]): RunValidator {
  const check: TypeCheck<TSchema> = allowedFields === undefined
    ? runCheck ??= TypeCompiler.Compile(RunWebhookSchema)
    : TypeCompiler.Compile(runWebhookSchemaFor(allowedFields))
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
  const lines: string[] = []
  const seen = new Set<string>()
  let more = 0
  let missingTopLevel = false
  for (const error of check.Errors(value)) {
    const field = prefix + error.path.replaceAll('/', '.')
    if (seen.has(field)) continue
    seen.add(field)
    const missing = error.value === undefined
    if (missing && error.path.lastIndexOf('/') === 0) missingTopLevel = true
    if (lines.length === MAX_REPORTED_FIELDS) {
      if (++more === MAX_COUNTED_FIELDS) break
      continue
    }
    const name = field === '' ? 'body' : field.replace(/^\./, '')
    lines.push(missing ? `${name} is required` : `${name}: ${error.message.toLowerCase()}`)
  }
  let text = lines.join('; ')
  if (more > 0) {
    const count = more === MAX_COUNTED_FIELDS ? `${more}+` : String(more)
    text += `; and ${count} more ${more === 1 ? 'field' : 'fields'} failed`
  }
  if (hintMissing && missingTopLevel) text += ` (${STRIPPED_BODY_HINT})`
  return text
}
