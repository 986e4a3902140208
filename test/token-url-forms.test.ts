// Fastify's router reads the query from the first '?' or '#' (and ';' with
// useSemicolonDelimiter): a token sent in any of these forms authenticates,
// and is masked in every log line. Sent over a real socket: inject drops '#'.
import { request } from 'node:http'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import type { FastifyInstance, FastifyServerOptions } from 'fastify'
import { buildRunWebhook } from '../lib/testing.js'
import { buildApp, TOKEN } from './helpers/app.js'

const PATH = '/webhooks/langgraph'

/** POSTs a run to the raw request target `target`, as it is written on the wire. */
async function post (app: FastifyInstance, target: string, body = JSON.stringify(buildRunWebhook())): Promise<number> {
  const { port } = app.server.address() as AddressInfo
  return await new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: target, headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode!))
    })
    req.on('error', reject)
    req.end(body)
  })
}

async function listening (t: Test, server: Parameters<typeof buildApp>[1] = {}): Promise<{ app: FastifyInstance, lines: string[] }> {
  const built = await buildApp({}, server)
  t.teardown(() => built.app.close())
  await built.app.listen({ port: 0, host: '127.0.0.1' })
  return built
}

function checkLogs (t: Test, lines: string[], target: string): void {
  t.ok(lines.some((line) => line.includes('incoming request') && line.includes('[REDACTED]')), `${target}: the request line is logged, masked`)
  t.same(lines.filter((line) => line.includes(TOKEN)), [], `${target}: the token is in no log line`)
}

t.test("'#token=' authenticates, and is masked in every log line", async (t) => {
  const { app, lines } = await listening(t)
  for (const target of [`${PATH}#token=${TOKEN}`, `${PATH}#a=1&token=${TOKEN}`, `${PATH}?a=1#&token=${TOKEN}`]) {
    lines.length = 0
    t.equal(await post(app, target), 204, `${target}: authenticated`)
    checkLogs(t, lines, target)
  }
  lines.length = 0
  const wrong = `${PATH}#token=${TOKEN}x`
  t.equal(await post(app, wrong), 401, 'a wrong token is refused')
  checkLogs(t, lines, wrong)
})

t.test("';token=' with useSemicolonDelimiter authenticates, and is masked in every log line", async (t) => {
  const { app, lines } = await listening(t, { routerOptions: { useSemicolonDelimiter: true } as FastifyServerOptions['routerOptions'] })
  for (const target of [`${PATH};token=${TOKEN}`, `${PATH};a=1&token=${TOKEN}`]) {
    lines.length = 0
    t.equal(await post(app, target), 204, `${target}: authenticated`)
    checkLogs(t, lines, target)
  }
})
