import type { TSchema } from '@sinclair/typebox'
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'
import { InvalidRunError } from './errors.js'
import { RunWebhookSchema } from './schemas.js'

const MAX_REPORTED_FIELDS = 5

/** Returns an `InvalidRunError` (400) naming the failing fields, or `undefined` for a valid run. */
export type RunValidator = (body: unknown) => Error | undefined

let runCheck: TypeCheck<typeof RunWebhookSchema> | undefined

/**
 * TypeBox's compiled checks: no type coercion (unlike Fastify's default Ajv,
 * which would turn a numeric `status` into a string), and a union reports one
 * error for its field rather than one per branch.
 */
export function createRunValidator (): RunValidator {
  runCheck ??= TypeCompiler.Compile(RunWebhookSchema)
  const check = runCheck
  return function validateRun (body) {
    return check.Check(body) ? undefined : new InvalidRunError(describe(check, body, ''))
  }
}

/** One line per failing field (a few at most), each named by its path under `prefix`. */
export function describe (check: TypeCheck<TSchema>, value: unknown, prefix: string): string {
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
