import { STATUS_CODES } from 'node:http'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import {
  InvalidRunError,
  MethodNotAllowedError,
  RETRY_AFTER_SECONDS,
  UnauthorizedError,
  UnsupportedEncodingError,
  UnsupportedMediaTypeError
} from './errors.js'
import { createSwaggerTransform, hiddenFromSwagger } from './openapi.js'
import type { ResolvedOptions } from './options.js'
import { serializeRequest } from './redact.js'
import type { Outcome, Receiver } from './receive.js'
import type { Telemetry } from './telemetry.js'
import { RunWebhookSchema, runWebhookSchemaFor } from './schemas.js'
import { createTokenVerifier, isAuthorized } from './token.js'

const CONTENT_TYPES = ['application/json', 'text/plain']
const IDENTITY = /^\s*(?:identity)?\s*$/i
// Answered 405 by the plugin rather than by the host's 404 handler, which
// would log the URL, token included.
const OTHER_METHODS = ['GET', 'HEAD', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']

// The raw body's length, kept where the parser sees it: measuring the parsed run would mean serializing it.
const kBodyLength = Symbol('fastify-langgraph-webhooks body length')

interface MeasuredRequest extends FastifyRequest {
  [kBodyLength]: number | undefined
}

/** The registered route. */
export interface WebhookRoute {
  /** The full path the sender calls: any surrounding prefix, then `prefix`, then `path`. */
  readonly path: string
}

/**
 * Registers the webhook route in an encapsulated child context: its
 * text/plain parser, hooks and error handler do not reach the host
 * application's own routes.
 */
export function registerRoute (
  fastify: FastifyInstance,
  options: ResolvedOptions,
  receive: Receiver['receive'],
  telemetry: Pick<Telemetry, 'instrument' | 'start'>
): WebhookRoute {
  const verify = createTokenVerifier(options.tokens)
  const sources = options.tokenSources
  // Set by the onRoute hook below, as the route's context loads: before any
  // plugin registered after this one, or `await register()`, can read it.
  const registered = { path: options.path }
  const queued = options.queue !== undefined

  async function refuseMethod (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    telemetry.start(request, reply)
    reply.header('allow', 'POST')
    throw new MethodNotAllowedError()
  }

  fastify.register(async function langgraphWebhookRoute (route) {
    telemetry.instrument(route)
    route.decorateRequest(kBodyLength, undefined)
    // This context starts with a copy of every parser the host had (a vendor
    // JSON type parsed with plain JSON.parse, a '*' catch-all): none of them
    // may reach webhook bodies. The JS server sends `text/plain;charset=UTF-8`;
    // both types go through Fastify's own JSON parser, which refuses
    // prototype poisoning.
    route.removeAllContentTypeParsers()
    const parse = route.getDefaultJsonParser('error', 'error')
    route.addContentTypeParser(CONTENT_TYPES, { parseAs: 'string' }, (request, body, done) => {
      ;(request as MeasuredRequest)[kBodyLength] = body.length
      parse(request, body as string, done)
    })
    // The path as Fastify registered it, prefixes included.
    route.addHook('onRoute', (definition) => {
      if (definition.method === 'POST' && definition.url !== undefined) registered.path = definition.url
    })

    // Node keeps a keep-alive connection open once its reply is sent, even
    // after app.close() began: close() would wait for the sender's idle
    // timeout (70 s with Node's fetch). Replies sent while closing ask the
    // sender to hang up instead.
    let closing = false
    route.addHook('preClose', (done) => {
      closing = true
      done()
    })
    const hangUpIfClosing = (reply: FastifyReply): FastifyReply => closing ? reply.header('connection', 'close') : reply
    route.setErrorHandler((error: FastifyError, request, reply) => { handleError(error, request, hangUpIfClosing(reply)) })

    route.route({
      method: 'POST',
      url: options.path,
      bodyLimit: options.bodyLimit,
      logSerializers: { req: serializeRequest },
      schema: { body: options.allowedFields === undefined ? RunWebhookSchema : runWebhookSchemaFor(options.allowedFields) },
      // What @fastify/swagger documents; Fastify itself never reads it.
      config: { swaggerTransform: createSwaggerTransform(options.openapi, sources) },
      // The schema is there for OpenAPI: receive() validates, for every source alike.
      validatorCompiler: () => acceptAll,
      // Decided before the body is read: an unauthenticated body is never parsed.
      onRequest (request, reply, done) {
        telemetry.start(request, reply)
        if (!isAuthorized(request, verify, sources)) return done(new UnauthorizedError())
        // Fastify does not decode bodies: a compressed one would be parsed as
        // if it were plain text (RFC 7694: 415 with Accept-Encoding).
        const encoding = request.headers['content-encoding']
        if (encoding !== undefined && !IDENTITY.test(encoding)) {
          reply.header('accept-encoding', 'identity')
          return done(new UnsupportedEncodingError())
        }
        done()
      },
      // Not async: the reply is sent from receive's one promise, with no second one around it.
      handler (request: FastifyRequest, reply: FastifyReply) {
        // No body at all is `null`, as Fastify's own validation sees it.
        receive(request.body ?? null, { request, bytes: (request as MeasuredRequest)[kBodyLength] }).then(
          (outcome) => { hangUpIfClosing(reply).code(statusCodeOf(outcome, queued)).send() },
          (error: unknown) => { reply.send(error) }
        )
      }
    })

    route.route({
      method: OTHER_METHODS,
      url: options.path,
      exposeHeadRoute: false,
      // Documented as the POST operation's 405, not as operations of its own.
      config: { swaggerTransform: hiddenFromSwagger },
      logSerializers: { req: serializeRequest },
      // Before the body is read: the method decides, whatever the body and
      // its content type. Fastify wants a handler too; it is never reached.
      onRequest: refuseMethod,
      handler: refuseMethod
    })
  }, options.context)

  return registered
}

function acceptAll (): true {
  return true
}

/**
 * 204 once handled, 202 while the listeners are still to run. With a queue
 * a duplicate is 202 too: the run it duplicates may still wait for a worker.
 */
function statusCodeOf (outcome: Outcome, queued: boolean): 202 | 204 {
  if (outcome === 'duplicate') return queued ? 202 : 204
  return outcome === 'delivered' ? 204 : 202
}

function handleError (error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  if (error.code === 'FST_ERR_CTP_INVALID_JSON_BODY') {
    error = new InvalidRunError('body is not valid JSON, or holds a __proto__ or constructor.prototype key')
  } else if (error.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') {
    error = new InvalidRunError('body is empty')
  } else if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    error = new UnsupportedMediaTypeError()
  }
  const statusCode = error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500
  const ours = typeof error.code === 'string' && (error.code.startsWith('FST_LANGGRAPH_WEBHOOKS_') || error.code.startsWith('FST_ERR_CTP_'))
  if (statusCode >= 500 && !ours) request.log.error({ err: error }, 'run webhook failed')
  else request.log.info({ code: error.code, statusCode }, error.message)
  // Every 503 is worth retrying: the sender is told when.
  if (statusCode === 503) reply.header('retry-after', String(RETRY_AFTER_SECONDS))
  reply.code(statusCode).send({
    statusCode,
    code: ours ? error.code : undefined,
    error: STATUS_CODES[statusCode],
    message: ours || statusCode < 500 ? error.message : 'Internal Server Error'
  })
}
