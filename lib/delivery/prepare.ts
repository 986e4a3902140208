import { StaleDeliveryError } from '../errors.js'
import { redactRun } from '../redact.js'
import type { RunWebhook } from '../schemas.js'

export interface PrepareOptions {
  redactToken: boolean
  maxAgeMs: number | undefined
}

/** The first step of a received webhook: mask the echoed token, refuse a delivery outside the replay window. */
export function prepareRun (run: RunWebhook<unknown>, { redactToken, maxAgeMs }: PrepareOptions): void {
  if (redactToken) redactRun(run)
  if (maxAgeMs !== undefined && !(Math.abs(Date.now() - Date.parse(run.webhook_sent_at)) <= maxAgeMs)) {
    throw new StaleDeliveryError()
  }
}
