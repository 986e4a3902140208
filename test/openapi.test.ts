import { test, type Test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import swagger from '@fastify/swagger'
import { Validator } from '@seriousme/openapi-schema-validator'
import langgraphWebhooks, { openApiSecuritySchemes, type LanggraphWebhooksOptions } from '../lib/index.js'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'
import { TOKEN } from './helpers/app.js'

const REPLIES = ['202', '204', '400', '401', '405', '413', '415', '500', '503']

async function document (options: Partial<LanggraphWebhooksOptions> = {}, swaggerOptions: Record<string, unknown> = {}, prefix?: string) {
  const app = Fastify()
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'app', version: '1.0.0' },
      components: { securitySchemes: { ...openApiSecuritySchemes } }
    },
    ...swaggerOptions
  })
  app.get('/health', async () => 'ok')
  const register = async (scope: FastifyInstance) => { await scope.register(langgraphWebhooks, { token: TOKEN, ...options }) }
  if (prefix === undefined) await register(app)
  else await app.register(register, { prefix })
  await app.ready()
  return { app, doc: app.swagger() as any }
}

async function assertValid (t: Test, doc: unknown) {
  const result = await new Validator().validate(doc as Parameters<Validator['validate']>[0])
  t.same(result.errors ?? [], [], 'a valid OpenAPI document')
  t.equal(result.valid, true)
}

test('the route in an OpenAPI 3.0 document: both body types, every reply, the security schemes, no token', async (t) => {
  const { app, doc } = await document()
  await assertValid(t, doc)
  const operation = doc.paths['/webhooks/langgraph'].post
  t.equal(operation.summary, 'Receive a LangGraph run webhook')
  t.match(operation.description, /LangGraph server POSTs a run/)
  t.same(operation.tags, ['langgraph'])
  t.same(Object.keys(operation.requestBody.content).sort(), ['application/json', 'text/plain'])
  t.equal(operation.requestBody.required, true)
  const body = JSON.stringify(operation.requestBody.content['text/plain'].schema)
  for (const field of ['run_id', 'thread_id', 'status', 'webhook_sent_at', 'values']) t.match(body, field, `the body documents ${field}`)

  t.same(Object.keys(operation.responses).sort(), REPLIES)
  t.notOk(operation.responses['204'].content, '204 has no body')
  t.notOk(operation.responses['202'].content, '202 has no body')
  for (const code of REPLIES.filter((code) => code >= '400')) {
    t.match(operation.responses[code].content['application/json'].schema, {
      type: 'object', properties: { statusCode: {}, code: {}, error: {}, message: {} }
    }, `${code} documents the error body`)
    t.notMatch(JSON.stringify(operation.responses[code].content['application/json'].schema), /x-response-description/)
  }
  t.ok(operation.responses['503'].headers['Retry-After'])
  t.ok(operation.responses['405'].headers.Allow)

  t.same(operation.security, [{ langgraphWebhookToken: [] }, { langgraphWebhookBearer: [] }], 'either source authenticates')
  t.same(doc.components.securitySchemes.langgraphWebhookToken, { type: 'apiKey', in: 'query', name: 'token', description: openApiSecuritySchemes.langgraphWebhookToken.description })
  t.equal(doc.components.securitySchemes.langgraphWebhookBearer.scheme, 'bearer')
  t.notOk(operation.parameters, 'the token is a security scheme, not a documented parameter')
  t.notMatch(JSON.stringify(doc), TOKEN, 'the token is nowhere in the document')
  t.notMatch(app.swagger({ yaml: true }), TOKEN)
  t.ok(doc.paths['/health'].get, 'the host\'s own routes are documented as before')
  t.same(Object.keys(doc.paths['/webhooks/langgraph']), ['post'], 'the other methods are the 405 of the POST operation, not operations')
})

test('documenting the route changes no reply: 204, 202, and the error bodies as before', async (t) => {
  const { app } = await document({ dedupe: true })
  t.equal((await deliverRun(app, buildRunWebhook(), { token: TOKEN })).statusCode, 204)
  const duplicate = await deliverRun(app, buildRunWebhook(), { token: TOKEN })
  t.equal(duplicate.statusCode, 204)
  t.equal(duplicate.body, '')
  const unauthorized = await deliverRun(app, buildRunWebhook(), { token: 'wrong' })
  t.equal(unauthorized.statusCode, 401)
  t.same(unauthorized.json(), { statusCode: 401, code: 'FST_LANGGRAPH_WEBHOOKS_UNAUTHORIZED', error: 'Unauthorized', message: 'Missing or invalid webhook token' })
  const invalid = await deliverRun(app, { ...buildRunWebhook(), status: 5 }, { token: TOKEN })
  t.equal(invalid.statusCode, 400)
  t.match(invalid.json(), { statusCode: 400, code: 'FST_LANGGRAPH_WEBHOOKS_INVALID_RUN', error: 'Bad Request', message: /status/ })
  const received = await document({ ack: 'received' })
  const reply = await deliverRun(received.app, buildRunWebhook(), { token: TOKEN })
  t.equal(reply.statusCode, 202)
  t.equal(reply.body, '')
})

test('the operation names only the schemes the document defines, as tokenSources allows', async (t) => {
  const bearerOnly = await document({ tokenSources: ['bearer'] })
  t.same(bearerOnly.doc.paths['/webhooks/langgraph'].post.security, [{ langgraphWebhookBearer: [] }])
  await assertValid(t, bearerOnly.doc)

  const queryOnly = await document({ tokenSources: ['query'] })
  t.same(queryOnly.doc.paths['/webhooks/langgraph'].post.security, [{ langgraphWebhookToken: [] }])

  const { langgraphWebhookBearer } = openApiSecuritySchemes
  const partial = await document({}, { openapi: { info: { title: 'app', version: '1' }, components: { securitySchemes: { langgraphWebhookBearer } } } })
  t.same(partial.doc.paths['/webhooks/langgraph'].post.security, [{ langgraphWebhookBearer: [] }], 'the undefined query scheme is not named')
  await assertValid(t, partial.doc)

  const none = await document({}, { openapi: { info: { title: 'app', version: '1' } } })
  t.notOk(none.doc.paths['/webhooks/langgraph'].post.security, 'no scheme merged: no security requirement that would dangle')
  await assertValid(t, none.doc)
})

test('a header source is documented by the apiKey scheme in that header that the document defines', async (t) => {
  const securitySchemes = {
    ...openApiSecuritySchemes,
    langgraphWebhookHeader: { type: 'apiKey', in: 'header', name: 'X-Webhook-Token', description: 'The webhook token in its own header' },
    otherHeader: { type: 'apiKey', in: 'header', name: 'x-api-key' },
    sameNameInQuery: { type: 'apiKey', in: 'query', name: 'x-webhook-token' }
  }
  const { doc } = await document({ tokenSources: ['query', { header: 'x-webhook-token' }] }, {
    openapi: { openapi: '3.0.3', info: { title: 'app', version: '1' }, components: { securitySchemes } }
  })
  await assertValid(t, doc)
  t.same(doc.paths['/webhooks/langgraph'].post.security, [{ langgraphWebhookToken: [] }, { langgraphWebhookHeader: [] }], 'the query or the header')
  t.notMatch(JSON.stringify(doc), TOKEN)

  const undefinedScheme = await document({ tokenSources: [{ header: 'x-webhook-token' }, 'bearer'] })
  t.same(undefinedScheme.doc.paths['/webhooks/langgraph'].post.security, [{ langgraphWebhookBearer: [] }], 'no scheme for the header: not named')
  await assertValid(t, undefinedScheme.doc)
})

test('OpenAPI 3.1, a prefix, and a path of its own', async (t) => {
  const { doc } = await document({ path: '/hooks/lg' }, {
    openapi: { openapi: '3.1.0', info: { title: 'app', version: '1' }, components: { securitySchemes: { ...openApiSecuritySchemes } } }
  }, '/api')
  t.equal(doc.openapi, '3.1.0')
  t.ok(doc.paths['/api/hooks/lg'].post)
  await assertValid(t, doc)
})

test('summary, description and tags are configurable; hide keeps the route out', async (t) => {
  const { doc } = await document({ openapi: { summary: 'LangGraph callback', description: 'Runs of the support agent', tags: ['agents', 'webhooks'] } })
  const operation = doc.paths['/webhooks/langgraph'].post
  t.equal(operation.summary, 'LangGraph callback')
  t.equal(operation.description, 'Runs of the support agent')
  t.same(operation.tags, ['agents', 'webhooks'])

  const hidden = await document({ openapi: { hide: true } })
  t.notOk(hidden.doc.paths['/webhooks/langgraph'])
  t.ok(hidden.doc.paths['/health'])
  await assertValid(t, hidden.doc)
})

test('openapi options are validated strictly', async (t) => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['not an object', 'yes', /openapi must be an object \{ summary, description, tags, hide \}, got the string "yes"/],
    ['null', null, /openapi must be an object .*, got null/],
    ['an array', [], /openapi must be an object .*, got an array/],
    ['an unknown key', { summery: 'x' }, /unknown option "openapi\.summery"; the options of openapi are: summary, description, tags, hide/],
    ['a numeric summary', { summary: 1 }, /openapi\.summary must be a string, got 1/],
    ['a description object', { description: {} }, /openapi\.description must be a string, got an object/],
    ['a tag string', { tags: 'a' }, /openapi\.tags must be an array of strings, got the string "a"/],
    ['a numeric tag', { tags: ['a', 1] }, /openapi\.tags must be an array of strings, got an array/],
    ['hide as a string', { hide: 'true' }, /openapi\.hide must be a boolean, got the string "true"/]
  ]
  for (const [name, openapi, message] of cases) {
    await t.rejects(async () => { await Fastify().register(langgraphWebhooks, { token: TOKEN, openapi } as any) }, { code: 'FST_LANGGRAPH_WEBHOOKS_INVALID_OPTION', message }, name)
  }
})

test('a Swagger 2.0 document lists the route too, naming the query scheme it defines', async (t) => {
  const { doc } = await document({}, {
    openapi: undefined,
    swagger: { info: { title: 'app', version: '1' }, securityDefinitions: { langgraphWebhookToken: openApiSecuritySchemes.langgraphWebhookToken } }
  })
  t.equal(doc.swagger, '2.0')
  const operation = doc.paths['/webhooks/langgraph'].post
  t.same(operation.security, [{ langgraphWebhookToken: [] }])
  t.same(operation.consumes, ['application/json', 'text/plain'])
})
