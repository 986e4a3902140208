import { createError } from '@fastify/error'

/** Seconds a sender is asked to wait before retrying a 503. */
export const RETRY_AFTER_SECONDS = 5

// Registration errors: thrown from `register`, never sent to a client.
export const InvalidOptionError = createError<[string]>('FST_LANGGRAPH_WEBHOOKS_INVALID_OPTION', '%s')
export const AlreadyRegisteredError = createError('FST_LANGGRAPH_WEBHOOKS_ALREADY_REGISTERED', 'fastify-langgraph-webhooks is already registered in this context: register each deployment inside its own encapsulated context, e.g. app.register(async (scope) => { await scope.register(langgraphWebhooks, { path, token }) })')
export const ValuesSchemaMismatchError = createError('FST_LANGGRAPH_WEBHOOKS_VALUES_SCHEMA_MISMATCH', 'withValues(schema) needs the very schema object passed as the valuesSchema option at registration, so that run.values is validated against it')
export const AllowedFieldsMismatchError = createError('FST_LANGGRAPH_WEBHOOKS_ALLOWED_FIELDS_MISMATCH', 'withFields(fields) needs the fields given as the allowedFields option at registration (in any order), so that runs hold exactly those fields')
export const MissingPeerError = createError<[string, string, string]>('FST_LANGGRAPH_WEBHOOKS_MISSING_PEER', 'The %s option needs the %s package, an optional peer dependency: npm install %s')

// Delivery errors: sent to the sender with these status codes.
export const UnauthorizedError = createError('FST_LANGGRAPH_WEBHOOKS_UNAUTHORIZED', 'Missing or invalid webhook token', 401)
export const InvalidRunError = createError<[string]>('FST_LANGGRAPH_WEBHOOKS_INVALID_RUN', 'Invalid run webhook: %s', 400)
export const UnsupportedEncodingError = createError('FST_LANGGRAPH_WEBHOOKS_UNSUPPORTED_ENCODING', 'Compressed request bodies are not supported: send the run webhook without Content-Encoding', 415)
export const UnsupportedMediaTypeError = createError('FST_LANGGRAPH_WEBHOOKS_UNSUPPORTED_MEDIA_TYPE', 'Unsupported content type: send the run webhook as application/json or text/plain (a charset parameter is fine)', 415)
export const MethodNotAllowedError = createError('FST_LANGGRAPH_WEBHOOKS_METHOD_NOT_ALLOWED', 'Method not allowed: run webhooks are sent with POST', 405)
export const StaleDeliveryError = createError('FST_LANGGRAPH_WEBHOOKS_STALE_DELIVERY', 'Run webhook outside the accepted time window (webhook_sent_at)', 400)
export const ListenerError = createError('FST_LANGGRAPH_WEBHOOKS_LISTENER_FAILED', 'The application failed to handle the run webhook', 500)
export const ListenerTimeoutError = createError('FST_LANGGRAPH_WEBHOOKS_LISTENER_TIMEOUT', 'The application did not handle the run webhook in time', 503)
export const DeliveryInFlightError = createError('FST_LANGGRAPH_WEBHOOKS_IN_FLIGHT', 'This run webhook is being handled by another delivery; retry later', 503)
export const DedupeStoreError = createError('FST_LANGGRAPH_WEBHOOKS_DEDUPE_UNAVAILABLE', 'The dedupe store is unavailable; retry later', 503)
export const ShuttingDownError = createError('FST_LANGGRAPH_WEBHOOKS_SHUTTING_DOWN', 'The server is shutting down; retry later', 503)
export const QueueUnavailableError = createError('FST_LANGGRAPH_WEBHOOKS_QUEUE_UNAVAILABLE', 'The delivery queue is unavailable; retry later', 503)
export const RunTrackerError = createError('FST_LANGGRAPH_WEBHOOKS_TRACKER_UNAVAILABLE', 'The store of tracked runs is unavailable; retry later', 503)

// API errors: the runs the application starts and waits for, the queue.
export const WaitTimeoutError = createError<[string, number]>('FST_LANGGRAPH_WEBHOOKS_WAIT_TIMEOUT', 'No delivery of run %s arrived within %d ms')
export const LanggraphNotConfiguredError = createError<[string]>('FST_LANGGRAPH_WEBHOOKS_NO_LANGGRAPH', '%s needs the langgraph option at registration: langgraph: { client: new Client({ apiUrl }), webhookUrl: "https://<public host><path>" }')
export const QueueNotConfiguredError = createError('FST_LANGGRAPH_WEBHOOKS_NO_QUEUE', 'app.langgraphWebhooks.queue needs the queue option at registration, e.g. { queue: { connection: new Redis(process.env.REDIS_URL) } }')
export const TooManyWaitersError = createError<[number]>('FST_LANGGRAPH_WEBHOOKS_TOO_MANY_WAITERS', 'waitForRun: %d callers are waiting already; wait for fewer runs at once')

// Redis commands failing fast: Redis unreachable, too slow, or it answered an error.
export const RedisDedupeStoreError = createError<[string]>('FST_LANGGRAPH_WEBHOOKS_REDIS_DEDUPE', 'Redis dedupe store: %s')
/** A Redis operation of the run tracker or the waiters' relay failed. */
export class RedisUnavailableError extends Error { name = 'RedisUnavailableError' }
/** The queue's Redis did not store a job in time. */
export class AddTimeoutError extends Error { name = 'AddTimeoutError' }

/** A misused call of the plugin's API (an argument of the wrong kind): a TypeError that carries a code. */
export class InvalidArgumentError extends TypeError { readonly code = 'FST_LANGGRAPH_WEBHOOKS_INVALID_ARGUMENT' }

/** One property of a thrown value; a throwing getter, a revoked Proxy or null reads as undefined. */
function read (value: unknown, key: string): string | undefined {
  try {
    const property = (value as Record<string, unknown>)[key]
    return typeof property === 'string' ? property : undefined
  } catch {}
}

/**
 * An Error describing whatever a listener threw (a revoked Proxy, an object
 * whose getters or toString throw): it never throws, and loggers and BullMQ
 * can read it safely.
 */
export function describeError (value: unknown): Error {
  const name = read(value, 'name') ?? 'Error'
  let message = read(value, 'message')
  try {
    message ??= String(value)
  } catch {
    message = '[unprintable value]'
  }
  // Not this function's frames: they would point at the wrong place.
  return Object.assign(new Error(message), { name, stack: read(value, 'stack') ?? `${name}: ${message}` })
}
