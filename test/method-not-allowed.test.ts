// The method decides first: any method but POST on the webhook path is 405
// with `Allow: POST`, whatever its body, content type or token, and the
// token is in no log line.
import t from 'tap'
import { buildRunWebhook } from '../lib/testing.js'
import { buildApp, TOKEN } from './helpers/app.js'

const PATH = '/webhooks/langgraph'
const run = JSON.stringify(buildRunWebhook())

const BODIES: Array<{ name: string, headers: Record<string, string>, payload: string }> = [
  { name: 'a JSON run', headers: { 'content-type': 'application/json' }, payload: run },
  { name: 'a text/plain run', headers: { 'content-type': 'text/plain;charset=UTF-8' }, payload: run },
  { name: 'invalid JSON', headers: { 'content-type': 'application/json' }, payload: '{"run' },
  { name: 'XML', headers: { 'content-type': 'application/xml' }, payload: '<run/>' },
  { name: 'a form', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'a=1' },
  { name: 'no content type', headers: {}, payload: 'bytes' },
  { name: 'a compressed body', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, payload: 'not gzip' },
  { name: 'a body over bodyLimit', headers: { 'content-type': 'application/json' }, payload: 'x'.repeat(2 * 1024 * 1024) }
]

t.test('PUT, DELETE, PATCH and OPTIONS with a body: 405 with Allow: POST, the token in no log line', async (t) => {
  const { app, lines } = await buildApp({ bodyLimit: 1024 * 1024 })
  t.teardown(() => app.close())
  let calls = 0
  app.langgraphWebhooks.onRun(() => { calls++ })
  for (const method of ['PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const) {
    for (const body of BODIES) {
      for (const token of [TOKEN, 'wrong']) {
        const res = await app.inject({ method, url: `${PATH}?token=${token}`, headers: body.headers, payload: body.payload })
        const what = `${method} with ${body.name}${token === TOKEN ? '' : ', a wrong token'}`
        t.equal(res.statusCode, 405, what)
        t.equal(res.headers.allow, 'POST', `${what}: Allow: POST`)
        t.equal(res.json().code, 'FST_LANGGRAPH_WEBHOOKS_METHOD_NOT_ALLOWED', `${what}: the plugin's 405`)
      }
    }
  }
  t.equal(calls, 0, 'no listener ran')
  t.same(lines.filter((line) => line.includes(TOKEN)), [], 'the token is in no log line')
  t.ok(lines.some((line) => line.includes('[REDACTED]')), 'the requests were logged, masked')
})

t.test('GET and HEAD are 405 with Allow: POST too', async (t) => {
  const { app, lines } = await buildApp()
  t.teardown(() => app.close())
  for (const method of ['GET', 'HEAD'] as const) {
    const res = await app.inject({ method, url: `${PATH}?token=${TOKEN}` })
    t.equal(res.statusCode, 405, method)
    t.equal(res.headers.allow, 'POST', `${method}: Allow: POST`)
  }
  t.same(lines.filter((line) => line.includes(TOKEN)), [], 'the token is in no log line')
})
