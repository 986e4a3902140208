import { test } from 'tap'
import Fastify from 'fastify'
import langgraphWebhooks, { createTokenVerifier } from '../lib/index.js'
import { buildRunWebhook } from '../lib/testing.js'
import { TOKEN, buildApp } from './helpers/app.js'

const PATH = '/webhooks/langgraph'
const payload = () => JSON.stringify(buildRunWebhook())

test('createTokenVerifier', async (t) => {
  const verify = createTokenVerifier('s3cret-token')
  t.equal(verify('s3cret-token'), true)
  t.equal(verify('s3cret-tokem'), false)
  t.equal(verify('s3cret-token '), false)
  t.equal(verify(''), false)
  for (const candidate of [undefined, null, 1, ['s3cret-token'], { toString: () => 's3cret-token' }]) {
    t.equal(verify(candidate), false, `non-string ${JSON.stringify(candidate)}`)
  }
  const rotating = createTokenVerifier(['new-token', 'old-token'])
  t.equal(rotating('new-token'), true)
  t.equal(rotating('old-token'), true)
  t.equal(rotating('other-token'), false)
  for (const bad of ['', '  ', [], [''], ['ok', 3], 42, undefined]) {
    t.throws(() => createTokenVerifier(bad as any), TypeError, `refuses ${JSON.stringify(bad)}`)
  }
})

test('createTokenVerifier guards another route with the same token', async (t) => {
  const verify = createTokenVerifier(TOKEN)
  const app = Fastify()
  app.get('/admin', { onRequest: async (request, reply) => { if (!verify(request.headers['x-token'])) return reply.code(401).send() } }, async () => 'ok')
  t.equal((await app.inject({ url: '/admin', headers: { 'x-token': TOKEN } })).statusCode, 200)
  t.equal((await app.inject({ url: '/admin', headers: { 'x-token': 'nope' } })).statusCode, 401)
})

function send (app: Awaited<ReturnType<typeof buildApp>>['app'], { query = '', authorization }: { query?: string, authorization?: string }) {
  const headers: Record<string, string> = { 'content-type': 'application/json' }
  if (authorization !== undefined) headers.authorization = authorization
  return app.inject({ method: 'POST', url: `${PATH}${query}`, headers, payload: payload() })
}

test('token sources: ?token= and Authorization: Bearer, both by default', async (t) => {
  const { app } = await buildApp()
  let calls = 0
  app.langgraphWebhooks.onRun(() => { calls++ })
  const accepted: Array<[string, { query?: string, authorization?: string }]> = [
    ['query', { query: `?token=${TOKEN}` }],
    ['bearer', { authorization: `Bearer ${TOKEN}` }],
    ['bearer, scheme in lower case', { authorization: `bearer ${TOKEN}` }],
    ['both, both right', { query: `?token=${TOKEN}`, authorization: `Bearer ${TOKEN}` }],
    ['other query parameters beside it', { query: `?a=1&token=${TOKEN}&b=2` }]
  ]
  for (const [name, request] of accepted) t.equal((await send(app, request)).statusCode, 204, name)
  t.equal(calls, accepted.length)

  const refused: Array<[string, { query?: string, authorization?: string }]> = [
    ['nothing', {}],
    ['empty query token', { query: '?token=' }],
    ['whitespace query token', { query: '?token=%20%20' }],
    ['repeated query token', { query: `?token=${TOKEN}&token=${TOKEN}` }],
    ['wrong query token', { query: '?token=wrong' }],
    ['token with a trailing space', { query: `?token=${TOKEN}%20` }],
    ['another scheme', { authorization: `Basic ${Buffer.from(`user:${TOKEN}`).toString('base64')}` }],
    ['token without a scheme', { authorization: TOKEN }],
    ['bearer without a token', { authorization: 'Bearer ' }],
    ['bearer with two tokens', { authorization: `Bearer ${TOKEN} ${TOKEN}` }],
    ['right query, wrong header', { query: `?token=${TOKEN}`, authorization: 'Bearer wrong' }],
    ['wrong query, right header', { query: '?token=wrong', authorization: `Bearer ${TOKEN}` }]
  ]
  const bodies = new Set<string>()
  for (const [name, request] of refused) {
    const res = await send(app, request)
    t.equal(res.statusCode, 401, name)
    bodies.add(res.body)
  }
  t.equal(bodies.size, 1, 'one body for every refusal')
  t.equal(calls, accepted.length, 'no listener ran for a refused request')
})

test('tokenSources restricts where the token is taken from', async (t) => {
  const { app: bearerOnly } = await buildApp({ tokenSources: ['bearer'] })
  t.equal((await send(bearerOnly, { query: `?token=${TOKEN}` })).statusCode, 401, 'query refused')
  t.equal((await send(bearerOnly, { authorization: `Bearer ${TOKEN}` })).statusCode, 204)
  t.equal((await send(bearerOnly, { query: '?token=anything', authorization: `Bearer ${TOKEN}` })).statusCode, 204, 'the query is not looked at')

  const { app: queryOnly } = await buildApp({ tokenSources: ['query'] })
  t.equal((await send(queryOnly, { authorization: `Bearer ${TOKEN}` })).statusCode, 401, 'bearer refused')
  t.equal((await send(queryOnly, { query: `?token=${TOKEN}`, authorization: 'Basic abc' })).statusCode, 204, 'a proxy\'s own Authorization header is not looked at')
})

test('array- and object-valued query tokens get the same 401', async (t) => {
  const { app } = await buildApp({}, {
    routerOptions: {
      // A host application may parse query strings into nested objects.
      querystringParser: (query: string) => query === 'shape=object' ? { token: { value: TOKEN } } : { token: [TOKEN] }
    }
  })
  t.equal((await send(app, { query: '?shape=object' })).statusCode, 401)
  t.equal((await send(app, { query: '?shape=array' })).statusCode, 401)
})

test('rotation: every configured token is accepted', async (t) => {
  const { app } = await buildApp({ token: [`${TOKEN}-new`, TOKEN] })
  t.equal((await send(app, { query: `?token=${TOKEN}-new` })).statusCode, 204)
  t.equal((await send(app, { query: `?token=${TOKEN}` })).statusCode, 204)
  t.equal((await send(app, { query: `?token=${TOKEN}-older` })).statusCode, 401)
})

test('the plugin can be registered under a prefix', async (t) => {
  const app = Fastify()
  await app.register(async (scope) => { await scope.register(langgraphWebhooks, { token: TOKEN }) }, { prefix: '/api' })
  const res = await app.inject({ method: 'POST', url: `/api${PATH}?token=${TOKEN}`, headers: { 'content-type': 'application/json' }, payload: payload() })
  t.equal(res.statusCode, 204)
})
