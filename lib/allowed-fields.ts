import { describeValue, fail } from './options.js'
import { RUN_WEBHOOK_FIELDS, type RunWebhookField } from './schemas.js'

/** What a feature keyed by run (dedupe, a queue) needs in every body. */
export const RUN_KEY_FIELDS: readonly RunWebhookField[] = ['run_id', 'status']

/** The `allowedFields` option: a non-empty list of run webhook fields, as the server's `webhooks.allowed_fields`. */
export function resolveAllowedFields (given: unknown): readonly RunWebhookField[] | undefined {
  if (given === undefined) return undefined
  if (!Array.isArray(given) || given.length === 0) {
    fail(`allowedFields must be a non-empty array of the fields the server keeps (its webhooks.allowed_fields), e.g. ['run_id', 'status', 'values'], got ${describeValue(given)}`)
  }
  for (const field of given) {
    if (!(RUN_WEBHOOK_FIELDS as readonly unknown[]).includes(field)) {
      fail(`allowedFields: ${typeof field === 'string' ? JSON.stringify(field) : describeValue(field)} is not a run webhook field; the fields are: ${RUN_WEBHOOK_FIELDS.join(', ')}`)
    }
  }
  return [...new Set(given as RunWebhookField[])]
}

/**
 * Refuses, at registration, a feature that reads fields the server strips:
 * `feature` needs every one of `needed` in each body. Without
 * `allowedFields` every field is there.
 */
export function requireRunFields (allowedFields: readonly RunWebhookField[] | undefined, needed: readonly RunWebhookField[], feature: string): void {
  if (allowedFields === undefined) return
  const missing = needed.filter((field) => !allowedFields.includes(field))
  if (missing.length > 0) {
    fail(`${feature} reads ${needed.join(' and ')} from every webhook body, but allowedFields does not list ${missing.join(' or ')}: add ${missing.join(' and ')} to allowedFields and to the server's webhooks.allowed_fields`)
  }
}
