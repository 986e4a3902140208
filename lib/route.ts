import { STATUS_CODES } from 'node:http'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { RunDelivery } from './delivery/delivery.js'
import { prepareRun } from './delivery/prepare.js'
import { statusCodeOf, type DeliveryStep } from './delivery/step.js'
import { InvalidRunError, RETRY_AFTER_SECONDS, UnauthorizedError, UnsupportedEncodingError } from './errors.js'
import type { ResolvedOptions } from './options.js'
import { serializeRequest } from './redact.js'
import { RunWebhookSchema, type RunWebhook } from './schemas.js'
import { createTokenVerifier, isAuthorized } from './token.js'
import type { RunValidator } from './validation.js'

const CONTENT_TYPES = ['application/json', 'text/plain']
const IDENTITY = /^\s*(?:identity)?\s*$/i

/**
 * Registers the webhook route in an encapsulated child context: its
 * text/plain parser, hooks and error handler do not reach the host
 * application's own routes.
 */
export function registerRoute (
  fastify: FastifyInstance,
  options: ResolvedOptions,
  validate: RunValidator,
  deliver: DeliveryStep
): void {
  const verify = createTokenVerifier(options.tokens)
  const sources = options.tokenSources

  fastify.register(async function langgraphWebhookRoute (route) {
    // The JS server sends `text/plain;charset=UTF-8`. Both types go through
    // Fastify's own JSON parser, which refuses prototype poisoning.
    route.removeContentTypeParser(CONTENT_TYPES)
    route.addContentTypeParser(CONTENT_TYPES, { parseAs: 'string' }, route.getDefaultJsonParser('error', 'error'))
    route.setErrorHandler(handleError)

    // Node keeps a keep-alive connection open once its reply is sent, even
    // after app.close() began: close() would wait for the sender's idle
    // timeout (70 s with Node's fetch). Replies sent while closing ask the
    // sender to hang up instead.
    let closing = false
    route.addHook('preClose', (done) => {
      closing = true
      done()
    })

    route.route({
      method: 'POST',
      url: options.path,
      bodyLimit: options.bodyLimit,
      logSerializers: { req: serializeRequest },
      schema: { body: RunWebhookSchema },
      validatorCompiler: () => function validateBody (body: unknown) {
        const error = validate(body)
        return error === undefined ? true : { error }
      },
      // Decided before the body is read: an unauthenticated body is never parsed.
      onRequest (request, reply, done) {
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
      async handler (request: FastifyRequest, reply: FastifyReply) {
        const run = request.body as RunWebhook<unknown>
        prepareRun(run, options)
        const outcome = await deliver(new RunDelivery(run, request.log, request))
        return reply.code(statusCodeOf(outcome)).send()
      },
      onSend (request, reply, payload, done) {
        if (closing) reply.header('connection', 'close')
        done(null, payload)
      }
    })
  })
}

function handleError (error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  if (error.code === 'FST_ERR_CTP_INVALID_JSON_BODY') {
    error = new InvalidRunError('body is not valid JSON, or holds a __proto__ or constructor.prototype key')
  } else if (error.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') {
    error = new InvalidRunError('body is empty')
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
