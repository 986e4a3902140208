import type { ResolvedOpenApi } from './options.js'
import type { TokenSource } from './token.js'

/**
 * The security schemes of the route, for the application to merge into its
 * document: `openapi: { components: { securitySchemes: { ...openApiSecuritySchemes } } }`.
 * A plugin cannot add components to the document; the route refers to
 * these names only when the document defines them.
 */
export const openApiSecuritySchemes = {
  langgraphWebhookToken: { type: 'apiKey', in: 'query', name: 'token', description: 'The webhook token in the URL the LangGraph server calls: `?token=…`' },
  langgraphWebhookBearer: { type: 'http', scheme: 'bearer', description: 'The webhook token as `Authorization: Bearer …`' }
} as const

/** The scheme a source is documented by; a header's is the `apiKey` scheme in that header that the document defines. */
function schemesOf (source: TokenSource, defined: Record<string, { type?: unknown, in?: unknown, name?: unknown }>): string[] {
  if (source === 'query') return ['langgraphWebhookToken']
  if (source === 'bearer') return ['langgraphWebhookBearer']
  return Object.keys(defined).filter((name) => defined[name].type === 'apiKey' && defined[name].in === 'header' && String(defined[name].name).toLowerCase() === source.header)
}

const ErrorReply = {
  type: 'object',
  required: ['statusCode', 'error', 'message'],
  properties: { statusCode: { type: 'integer' }, code: { type: 'string', description: 'The plugin\'s error code, e.g. FST_LANGGRAPH_WEBHOOKS_INVALID_RUN' }, error: { type: 'string' }, message: { type: 'string' } }
}

const errorReply = (description: string, headers?: Record<string, unknown>): Record<string, unknown> =>
  ({ 'x-response-description': description, ...ErrorReply, ...(headers === undefined ? {} : { headers }) })

/** The replies table of the route, as response schemas. */
const RESPONSES = {
  202: { description: 'Accepted: acknowledged before the listeners ran (`ack: \'received\'`), or stored in the queue', type: 'null' },
  204: { description: 'Delivered: every matching listener settled, or a duplicate of a delivery already handled', type: 'null' },
  400: errorReply('The body is not JSON, or not a run; the message names the failing fields'),
  401: errorReply('The token is missing or wrong; decided before the body is read'),
  405: errorReply('Another method than POST', { Allow: { type: 'string', description: 'POST' } }),
  413: errorReply('The body is larger than `bodyLimit`'),
  415: errorReply('A content type other than application/json or text/plain, or a compressed body'),
  500: errorReply('A listener threw or rejected; the sender retries'),
  503: errorReply('Listeners too slow, the delivery in flight elsewhere, or the store or queue unavailable; the sender retries', {
    'Retry-After': { type: 'integer', description: 'Seconds to wait before retrying' }
  })
}

/** What @fastify/swagger hands a route's transform (declared here: it is the user's dependency, not ours). */
interface SwaggerTransformInput {
  schema: object
  url: string
  openapiObject?: { components?: { securitySchemes?: Record<string, object> } }
  /** Swagger 2.0 documents: their schemes are `securityDefinitions`. */
  swaggerObject?: { securityDefinitions?: Record<string, object> }
}

/**
 * The route's `config.swaggerTransform` for `@fastify/swagger`: the route
 * as documented. Only the document gets these schemas; the route itself
 * keeps its body validator and compiles no response serializers.
 */
export function createSwaggerTransform (openapi: ResolvedOpenApi, sources: readonly TokenSource[]) {
  return function swaggerTransform ({ schema, url, openapiObject, swaggerObject }: SwaggerTransformInput): { schema: Record<string, unknown>, url: string } {
    const defined = openapiObject?.components?.securitySchemes ?? swaggerObject?.securityDefinitions ?? {}
    // Alternatives: either source authenticates. A scheme the document lacks
    // would make it invalid, so only the defined ones are named.
    const security = sources.flatMap((source) => schemesOf(source, defined)).filter((name) => name in defined).map((name) => ({ [name]: [] }))
    const { summary, description, tags, hide } = openapi
    const documented = { summary, description, tags, consumes: ['application/json', 'text/plain'], response: RESPONSES }
    return { url, schema: { ...schema, ...documented, ...(security.length > 0 ? { security } : {}), ...(hide ? { hide } : {}) } }
  }
}

/** The transform of a route the document leaves out. */
export const hiddenFromSwagger = ({ schema, url }: SwaggerTransformInput): { schema: Record<string, unknown>, url: string } => ({ url, schema: { ...schema, hide: true } })
