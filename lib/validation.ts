import type { TSchema } from '@sinclair/typebox'
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'
import { InvalidRunError } from './errors.js'
import { RunWebhookSchema, type RunWebhook } from './schemas.js'

const MAX_REPORTED_FIELDS = 5

/** Returns an `InvalidRunError` (400) naming the failing fields, or `undefined` for a valid run. */
export type RunValidator = (body: unknown) => Error | undefined

let runCheck: TypeCheck<typeof RunWebhookSchema> | undefined

/**
 * TypeBox's compiled checks: no type coercion (unlike Fastify's default Ajv,
 * which would turn a numeric `status` into a string), and a union reports one
 * error for its field rather than one per branch.
 */
export function createRunValidator (valuesSchema?: TSchema): RunValidator {
  runCheck ??= TypeCompiler.Compile(RunWebhookSchema)
  const check = runCheck
  const valuesCheck = valuesSchema === undefined ? undefined : TypeCompiler.Compile(valuesSchema)
  return function validateRun (body) {
    if (!check.Check(body)) return new InvalidRunError(describe(check, body, ''))
    const values = (body as RunWebhook<unknown>).values
    if (valuesCheck === undefined || values == null) return undefined
    try {
      if (!valuesCheck.Check(values)) return new InvalidRunError(describe(valuesCheck, values, 'values'))
    } catch {
      // A recursive valuesSchema recurses as deep as the body: a body nested
      // deep enough overflows the stack (RangeError), which is the sender's fault.
      return new InvalidRunError('values are nested too deeply to validate')
    }
    return undefined
  }
}

function describe (check: TypeCheck<TSchema>, value: unknown, prefix: string): string {
  const lines: string[] = []
  const seen = new Set<string>()
  for (const error of check.Errors(value)) {
    const field = prefix + error.path.replaceAll('/', '.')
    if (seen.has(field)) continue
    seen.add(field)
    const name = field === '' ? 'body' : field.replace(/^\./, '')
    lines.push(error.value === undefined ? `${name} is required` : `${name}: ${error.message.toLowerCase()}`)
    if (lines.length === MAX_REPORTED_FIELDS) break
  }
  return lines.join('; ')
}
