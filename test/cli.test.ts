import t from 'tap'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { RunWebhook } from '../lib/index.js'
import { TOKEN, buildApp } from './helpers/app.js'
import { freePort } from './helpers/redis-server.js'

// The send command run in this process, against a real listening app; test/published.test.ts runs the packed bin.
// Imported as the script first: the bin's own entry line runs main() on process.argv.
const script = fileURLToPath(new URL('../lib/cli.ts', import.meta.url))
const argv = process.argv
const written: string[] = []
const write = process.stdout.write
process.argv = [argv[0], script, '--help']
process.stdout.write = ((text: string) => written.push(text) > 0) as typeof write
const { main } = await import('../lib/cli.js')
process.stdout.write = write
process.argv = argv
const entryExitCode = process.exitCode
process.exitCode = undefined

t.test('run as the script, it runs the command line it was given', async (t) => {
  t.equal(entryExitCode, 0)
  t.match(written.join(''), /^Usage: fastify-langgraph-webhooks send <url> \[options\]/)
})

// Every source the senders use: the query (JS), bearer and a header of its own (Python's webhooks.headers).
const { app } = await buildApp({ tokenSources: ['query', 'bearer', { header: 'x-webhook-token' }] })
const received: { run: RunWebhook, headers: IncomingHttpHeaders, query: Record<string, string> }[] = []
const requests: { headers: IncomingHttpHeaders, query: Record<string, string> }[] = []
app.addHook('onRequest', async (request) => { requests.push({ headers: request.headers, query: request.query as Record<string, string> }) })
// What a proxy in front of an app may answer: a reply that is not JSON.
app.post('/maintenance', async (request, reply) => reply.code(503).type('text/plain').send('down for maintenance'))
// An endpoint that hangs up without a reply.
app.post('/hangup', async (request) => { request.raw.socket.destroy() })
app.langgraphWebhooks.onRun((run, { request }) => { received.push({ run, headers: request!.headers, query: request!.query as Record<string, string> }) })
await app.listen({ host: '127.0.0.1', port: 0 })
t.teardown(() => app.close())
const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/webhooks/langgraph`

async function send (args: string[], env: Record<string, string> = {}) {
  const out = { stdout: '', stderr: '' }
  const io = { stdout: { write: (text: string) => { out.stdout += text } }, stderr: { write: (text: string) => { out.stderr += text } } }
  received.length = 0
  requests.length = 0
  const code = await main(args, env, io)
  t.notMatch(out.stdout + out.stderr, TOKEN, 'the token is printed nowhere')
  return { code, ...out, received: received.slice(), requests: requests.slice() }
}

t.test('the JS form: text/plain, the token in ?token=, a sample run; 204 and exit 0', async (t) => {
  const { code, stdout, stderr, received } = await send(['send', url, '--token', TOKEN])
  t.equal(code, 0)
  t.equal(stderr, '')
  t.match(stdout, new RegExp(`^POST ${url} as the js server: run [0-9a-f-]{36} \\(success\\)\\n204 No Content\\n$`))
  t.equal(received.length, 1)
  t.equal(received[0].headers['content-type'], 'text/plain;charset=UTF-8')
  t.equal(received[0].query.token, TOKEN)
  t.equal(received[0].headers.authorization, undefined)
  t.equal(received[0].run.status, 'success')
  t.equal(received[0].run.kwargs.webhook, `${url}?token=[REDACTED]`, 'kwargs.webhook is the URL sent to, as LangGraph echoes it')
  t.match(received[0].run.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
})

t.test('the Python form: application/json, the token from LANGGRAPH_WEBHOOK_TOKEN in ?token=, Python times and error', async (t) => {
  const { code, stdout, received } = await send(['send', url, '--sender', 'python', '--status', 'error'], { LANGGRAPH_WEBHOOK_TOKEN: TOKEN })
  t.equal(code, 0)
  t.match(stdout, /as the python server: run [0-9a-f-]{36} \(error\)\n204 No Content\n$/)
  t.equal(received[0].headers['content-type'], 'application/json')
  t.equal(received[0].query.token, TOKEN)
  t.equal(received[0].run.status, 'error')
  t.same(received[0].run.error, { error: 'ValueError', message: 'sample failure' })
  t.match(received[0].run.webhook_sent_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$/)
})

t.test('the Python form with --token-header authorization: a Bearer header, the token taken out of the URL', async (t) => {
  const { code, received } = await send(['send', `${url}?token=${TOKEN}`, '--sender', 'python', '--token-header', 'Authorization'])
  t.equal(code, 0)
  t.equal(received[0].headers.authorization, `Bearer ${TOKEN}`)
  t.equal(received[0].query.token, undefined)
  t.equal(received[0].run.kwargs.webhook, url)
})

t.test('the Python form with any header: the token in that header alone', async (t) => {
  const { code, stdout, requests } = await send(['send', url, '--sender', 'python', '--token-header', 'X-Webhook-Token', '--token', TOKEN])
  t.equal(requests[0].headers['x-webhook-token'], TOKEN)
  t.equal(requests[0].headers.authorization, undefined)
  t.equal(requests[0].query.token, undefined)
  t.equal(code, 0)
  t.match(stdout, /\n204 No Content\n$/)
})

t.test('--status sets the sample run\'s status; an error from the JS server is a string', async (t) => {
  const { code, received } = await send(['send', url, '--status', 'error', '--token', TOKEN])
  t.equal(code, 0)
  t.equal(received[0].run.error, 'sample failure')
})

t.test('a wrong token: the 401 printed with its code and message, exit 1', async (t) => {
  const { code, stdout, received } = await send(['send', url, '--token', 'not-the-token'])
  t.equal(code, 1)
  t.match(stdout, /\n401 Unauthorized FST_LANGGRAPH_WEBHOOKS_UNAUTHORIZED: Missing or invalid webhook token\n$/)
  t.equal(received.length, 0)
})

t.test('--body sends the file as it is: a reply that is not 2xx exits 1', async (t) => {
  const file = join(t.testdir(), 'run.json')
  await writeFile(file, '{"run_id": "r1"}')
  const { code, stdout } = await send(['send', url, '--body', file, '--token', TOKEN])
  t.equal(code, 1)
  t.match(stdout, new RegExp(`^POST ${url} as the js server: ${file.replaceAll('.', '\\.')}\\n400 Bad Request FST_LANGGRAPH_WEBHOOKS_INVALID_RUN: Invalid run webhook: `))
})

t.test('a reply that is not JSON is printed as text', async (t) => {
  const { code, stdout } = await send(['send', url.replace('/webhooks/langgraph', '/maintenance'), '--token', TOKEN])
  t.equal(code, 1)
  t.match(stdout, /\n503 Service Unavailable: down for maintenance\n$/)
})

t.test('the token is masked in a reply that echoes it (Fastify\'s default 404 names the URL)', async (t) => {
  const { code, stdout } = await send(['send', url.replace('/webhooks/langgraph', '/webhooks/langgraf'), '--token', TOKEN])
  t.equal(code, 1)
  t.match(stdout, /\n404 Not Found: Route POST:\/webhooks\/langgraf\?token=\[REDACTED\] not found\n$/)
})

t.test('a refused connection: a readable message, exit 1', async (t) => {
  const port = await freePort()
  const { code, stdout, stderr } = await send(['send', `http://127.0.0.1:${port}/webhooks/langgraph`, '--token', TOKEN])
  t.equal(code, 1)
  t.match(stdout, /^POST /)
  t.equal(stderr, `Connection refused by 127.0.0.1:${port}: is the app listening there?\n`)
})

t.test('a connection closed without a reply: the reason, exit 1', async (t) => {
  const { code, stderr } = await send(['send', url.replace('/webhooks/langgraph', '/hangup'), '--token', TOKEN])
  t.equal(code, 1)
  t.match(stderr, /^Request to 127\.0\.0\.1:\d+ failed: other side closed\n$/)
})

t.test('a request that cannot be sent: the reason, exit 1', async (t) => {
  const { code, stderr } = await send(['send', url, '--sender', 'python', '--token-header', 'bad header', '--token', TOKEN])
  t.equal(code, 1)
  t.match(stderr, /^Request to 127\.0\.0\.1:\d+ failed: .*invalid header name/)
})

t.test('--help says the usage, the senders, the token and the exit statuses', async (t) => {
  for (const args of [['--help'], ['send', '-h']]) {
    const { code, stdout } = await send(args)
    t.equal(code, 0)
    t.match(stdout, /Usage: fastify-langgraph-webhooks send <url>/)
    t.match(stdout, /text\/plain;charset=UTF-8/)
    t.match(stdout, /application\/json/)
    t.match(stdout, /--token-header/)
    t.match(stdout, /LANGGRAPH_WEBHOOK_TOKEN/)
    t.match(stdout, /0 on a 2xx reply; 1 on any other reply, a refused connection/)
    t.match(stdout, /2 on bad usage/)
  }
})

t.test('bad usage: what is wrong, a pointer to --help, exit 2, nothing sent', async (t) => {
  const cases: [string[], RegExp][] = [
    [[], /^Usage: fastify-langgraph-webhooks send <url>/],
    [['post', url], /^Usage: /],
    [['send', url, 'extra', '--token', TOKEN], /^Usage: /],
    [['send', '--token', TOKEN], /^Usage: /],
    [['send', 'localhost:3000', '--token', TOKEN], /^<url> is not an http\(s\) URL/],
    [['send', 'not a url', '--token', TOKEN], /^<url> is not an http\(s\) URL/],
    [['send', url, '--sender', 'go', '--token', TOKEN], /^--sender is js or python/],
    [['send', url, '--token-header', 'x-token', '--token', TOKEN], /^--token-header needs --sender python/],
    [['send', url], /^No token: pass --token, or set LANGGRAPH_WEBHOOK_TOKEN/],
    [['send', url, '--token', ''], /^No token/],
    [['send', url, '--tokn', TOKEN], /^Unknown option '--tokn'/],
    [['send', url, '--token', TOKEN, '--body', '/nonexistent/run.json'], /^ENOENT: no such file or directory/]
  ]
  for (const [args, message] of cases) {
    const { code, stdout, stderr, requests } = await send(args)
    t.equal(code, 2, args.join(' '))
    t.equal(stdout, '')
    t.match(stderr, message)
    t.match(stderr, /\nSee fastify-langgraph-webhooks --help\.\n$/)
    t.equal(requests.length, 0)
  }
})
