// The token in a header of its own, as the Python server's webhooks.headers
// sends it: `"X-Webhook-Token": "${{ env.LG_WEBHOOK_TOKEN }}"`.
import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { resolveOptions } from '../lib/options.js'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'
import { TOKEN, buildApp } from './helpers/app.js'

const PATH = '/webhooks/langgraph'
const WRONG = 'wrong-token-0123456789abcdef0123456789abcdef'

function send (app: FastifyInstance, headers: Record<string, string | string[]>, query = '', payload = JSON.stringify(buildRunWebhook())) {
  return app.inject({ method: 'POST', url: `${PATH}${query}`, headers: { 'content-type': 'application/json', ...headers }, payload })
}

test('a header source: the right token is accepted, whatever the header name\'s case', async (t) => {
  const { app } = await buildApp({ tokenSources: [{ header: 'X-Webhook-Token' }] })
  let calls = 0
  app.langgraphWebhooks.onRun(() => { calls++ })
  t.equal((await send(app, { 'x-webhook-token': TOKEN })).statusCode, 204)
  t.equal((await send(app, { 'X-WEBHOOK-TOKEN': TOKEN })).statusCode, 204, 'header names are case-insensitive')
  t.equal(calls, 2)
})

test('a header source: a wrong, absent, repeated or misplaced token gets 401', async (t) => {
  const { app } = await buildApp({ tokenSources: [{ header: 'x-webhook-token' }] })
  let calls = 0
  app.langgraphWebhooks.onRun(() => { calls++ })
  const refused: Array<[string, Record<string, string | string[]>, string?]> = [
    ['wrong', { 'x-webhook-token': WRONG }],
    ['empty', { 'x-webhook-token': '' }],
    ['absent', {}],
    ['repeated', { 'x-webhook-token': [TOKEN, TOKEN] }],
    ['in the query only', {}, `?token=${TOKEN}`],
    ['as a bearer token only', { authorization: `Bearer ${TOKEN}` }],
    ['in another header', { 'x-other-token': TOKEN }]
  ]
  for (const [name, headers, query] of refused) {
    const res = await send(app, headers, query)
    t.equal(res.statusCode, 401, name)
    t.equal(res.json().code, 'FST_LANGGRAPH_WEBHOOKS_UNAUTHORIZED', name)
  }
  t.equal(calls, 0, 'no listener ran')
})

test('beside the query: either authenticates, and every credential present must be right', async (t) => {
  const { app } = await buildApp({ tokenSources: ['query', { header: 'x-webhook-token' }] })
  t.equal((await send(app, { 'x-webhook-token': TOKEN })).statusCode, 204, 'the header alone')
  t.equal((await send(app, {}, `?token=${TOKEN}`)).statusCode, 204, 'the query alone')
  t.equal((await send(app, { 'x-webhook-token': WRONG }, `?token=${TOKEN}`)).statusCode, 401, 'a wrong header beside a right query')
  t.equal((await send(app, { 'x-webhook-token': TOKEN }, `?token=${WRONG}`)).statusCode, 401, 'a right header beside a wrong query')
})

test('the header\'s value is in no log line, at trace level, whatever the delivery', async (t) => {
  const { app, lines } = await buildApp({ tokenSources: [{ header: 'x-webhook-token' }] })
  app.langgraphWebhooks.onRun((run) => { if (run.status === 'error') throw new Error('listener failed') })
  const replies = [
    await send(app, { 'x-webhook-token': TOKEN }),
    await send(app, { 'x-webhook-token': WRONG }),
    await send(app, { 'x-webhook-token': TOKEN }, '', '{"broken'),
    await send(app, { 'x-webhook-token': TOKEN }, '', '{}'),
    await send(app, { 'x-webhook-token': TOKEN }, '', JSON.stringify(buildRunWebhook({ status: 'error' }))),
    await app.inject({ method: 'GET', url: PATH, headers: { 'x-webhook-token': TOKEN } })
  ]
  t.same(replies.map((res) => res.statusCode), [204, 401, 400, 400, 500, 405])
  t.ok(lines.some((line) => line.includes('incoming request')), 'requests are logged')
  t.same(lines.filter((line) => line.includes(TOKEN) || line.includes(WRONG)), [], 'neither the right nor a wrong token is logged')
})

test('deliverRun sends the token in the header a tokenSource names', async (t) => {
  const { app } = await buildApp({ tokenSources: [{ header: 'x-webhook-token' }] })
  let seen: Record<string, unknown> = {}
  app.langgraphWebhooks.onRun((run, { request }) => {
    seen = { contentType: request!.headers['content-type'], header: request!.headers['x-webhook-token'], query: request!.query }
  })
  const res = await deliverRun(app, buildRunWebhook(), { token: TOKEN, sender: 'python', tokenSource: { header: 'x-webhook-token' } })
  t.equal(res.statusCode, 204)
  t.same(seen, { contentType: 'application/json', header: TOKEN, query: {} })
  t.equal((await deliverRun(app, buildRunWebhook(), { token: WRONG, tokenSource: { header: 'x-webhook-token' } })).statusCode, 401)
  t.equal((await deliverRun(app, buildRunWebhook(), { token: TOKEN })).statusCode, 401, 'the JS sender\'s ?token= is not a source here')

  const { app: both } = await buildApp()
  t.equal((await deliverRun(both, buildRunWebhook(), { token: TOKEN, sender: 'python', tokenSource: 'query' })).statusCode, 204, 'the Python sender with ?token=')
})

test('a header source is checked at registration', async (t) => {
  t.same(resolveOptions({ token: TOKEN, tokenSources: [{ header: 'X-Webhook-Token' }, 'bearer'] }).tokenSources, [{ header: 'x-webhook-token' }, 'bearer'], 'the name lowercased')
  const cases: Array<[string, unknown, RegExp]> = [
    ['an empty name', [{ header: '' }], /tokenSources: "" is not a header for a token/],
    ['a space in the name', [{ header: 'x webhook' }], /"x webhook" is not a header for a token/],
    ['a colon in the name', [{ header: 'x-token:' }], /is not a header for a token/],
    ['a non-ASCII name', [{ header: 'x-tökén' }], /is not a header for a token/],
    ['a header the request log writes', [{ header: 'Host' }], /"Host" is not a header for a token \(an HTTP field name that carries nothing else and is not logged\), e\.g\. "x-webhook-token"/],
    ['accept-version, logged as the request\'s version', [{ header: 'accept-version' }], /is not a header for a token/],
    ['a content header', [{ header: 'content-type' }], /is not a header for a token/],
    ['authorization', [{ header: 'Authorization' }], /^tokenSources: the Authorization header is the "bearer" source: give "bearer"/],
    ['a numeric name', [{ header: 5 }], /^tokenSources must be a non-empty array of "query" and\/or "bearer" and\/or \{ header: "x-webhook-token" \}, got an object$/],
    ['another key beside header', [{ header: 'x-a', name: 'x-b' }], /tokenSources must be a non-empty array/],
    ['the same header twice', [{ header: 'x-webhook-token' }, { header: 'X-Webhook-Token' }], /^tokenSources names "x-webhook-token" twice$/],
    ['the same source twice', ['query', 'query'], /^tokenSources names "query" twice$/]
  ]
  for (const [name, tokenSources, message] of cases) {
    t.throws(() => resolveOptions({ token: TOKEN, tokenSources }), { code: 'FST_LANGGRAPH_WEBHOOKS_INVALID_OPTION', message }, name)
  }
})
