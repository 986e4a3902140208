import { test } from 'tap'
import { maskTokenInUrl, serializeRequest } from '../lib/index.js'
import { redactRun } from '../lib/redact.js'

test('maskTokenInUrl masks every token parameter, whatever its value or encoding', async (t) => {
  const cases: Array<[string, string]> = [
    ['/hook', '/hook'],
    ['/hook?a=1', '/hook?a=1'],
    ['/hook?token=abc', '/hook?token=[REDACTED]'],
    ['/hook?a=1&token=abc&b=2', '/hook?a=1&token=[REDACTED]&b=2'],
    ['/hook?token=a&token=b', '/hook?token=[REDACTED]&token=[REDACTED]'],
    ['/hook?%74oken=abc', '/hook?%74oken=[REDACTED]'],
    ['/hook?TOKEN=abc', '/hook?TOKEN=[REDACTED]'],
    ['/hook?token', '/hook?token=[REDACTED]'],
    ['/hook?%zz=1&token=abc', '/hook?%zz=1&token=[REDACTED]'],
    ['/hook?mytoken=abc&token_type=x', '/hook?mytoken=abc&token_type=x'],
    ['https://h.example/hook?token=abc#part', 'https://h.example/hook?token=[REDACTED]'],
    ['/hook#token=abc', '/hook#token=[REDACTED]'],
    ['/hook;token=abc', '/hook;token=[REDACTED]'],
    ['/hook;a=1?token=abc&b=2', '/hook;a=1?token=[REDACTED]&b=2']
  ]
  for (const [url, masked] of cases) t.equal(maskTokenInUrl(url), masked, url)
})

test('redactRun masks kwargs.webhook in place and tolerates its absence', async (t) => {
  const run = { kwargs: { webhook: 'http://x/hook?token=abc' } }
  redactRun(run)
  t.equal(run.kwargs.webhook, 'http://x/hook?token=[REDACTED]')
  const none = { kwargs: { webhook: null } }
  redactRun(none as any)
  t.equal(none.kwargs.webhook, null)
  t.doesNotThrow(() => redactRun({}))
})

test('serializeRequest gives Fastify\'s request fields with the URL masked', async (t) => {
  const serialized = serializeRequest({
    method: 'POST',
    url: '/hook?token=abc',
    headers: { 'accept-version': '1' },
    host: 'localhost',
    ip: '127.0.0.1',
    socket: { remotePort: 1234 }
  } as any)
  t.same(serialized, { method: 'POST', url: '/hook?token=[REDACTED]', version: '1', host: 'localhost', remoteAddress: '127.0.0.1', remotePort: 1234 })
  t.equal(serializeRequest({ method: 'GET', url: '/' } as any).remotePort, undefined)
})
