import t from 'tap'
import { execFile } from 'node:child_process'
import { readdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { publint } from 'publint'
import { formatMessage } from 'publint/utils'
import ts from 'typescript'
import { createConsumer, root, typeCheck } from './helpers/consumer.js'
import { buildApp } from './helpers/app.js'
import { freePort } from './helpers/redis-server.js'

// The package as it would be published: packed, linted (publint, attw),
// installed in a fresh project and compiled as its users compile it, under
// each module resolution, from ES modules and from CommonJS, and every
// TypeScript block of the README.

const run = promisify(execFile)
const consumer = await createConsumer()
t.teardown(() => consumer.remove())
// The declarations name TypeBox 1.x's and the schema libraries' types for their users: a project without them must compile too.
const bare = await createConsumer({ without: ['typebox', 'zod', 'valibot', 'arktype'], packed: consumer.tarball })
t.teardown(() => bare.remove())

const TOKEN = 't'.repeat(32)

// attw runs in its own process while this one type-checks. The node10
// resolution (TypeScript's legacy moduleResolution "node") ignores the exports
// map, so the subpaths cannot resolve there: the profile leaves it out.
const attw = run(process.execPath, [join(root, 'node_modules/@arethetypeswrong/cli/dist/index.js'), consumer.tarball, '--profile', 'node16', '--format', 'ascii', '--no-color'], { cwd: consumer.dir })
  .then(({ stdout }) => ({ code: 0, stdout }), (error: { code: number, stdout: string }) => ({ code: error.code, stdout: error.stdout }))

// npm's own bin linking (node_modules/.bin, the file made executable), as an install does it; beside the type checks.
const binLinked = run('npm', ['rebuild', 'fastify-langgraph-webhooks', '--ignore-scripts', '--offline', '--no-audit', '--no-fund'], { cwd: consumer.dir })

// Uses every entry point and the declarations that depend on other packages'
// types (the error classes on @fastify/error, the options on TypeBox).
const esm = `
import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import langgraphWebhooks, { InvalidRunError, UnauthorizedError, RunWebhookSchema, createTokenVerifier, type RunWebhook } from 'fastify-langgraph-webhooks'
import { buildRunWebhook, deliverRun } from 'fastify-langgraph-webhooks/testing'
import { createRedisDedupeStore } from 'fastify-langgraph-webhooks/redis'

const app = Fastify()
const State = Type.Object({ messages: Type.Array(Type.String()) })
await app.register(langgraphWebhooks, { token: '${TOKEN}', valuesSchema: State })
app.langgraphWebhooks.withValues(State).onRun('error', (run) => {
  const status: 'error' = run.status
  const messages: string[] | undefined = run.values?.messages
  console.log(status, messages)
})
app.langgraphWebhooks.onRun((run: RunWebhook) => { console.log(run.run_id) })
const invalid = new InvalidRunError('status')
const code: 'FST_LANGGRAPH_WEBHOOKS_UNAUTHORIZED' = new UnauthorizedError().code
const statusCode: 401 = new UnauthorizedError().statusCode
const res = await deliverRun(app, buildRunWebhook(), { token: '${TOKEN}' })
console.log(invalid.message, code, statusCode, res.statusCode, RunWebhookSchema.$id, createTokenVerifier('x')('x'), typeof createRedisDedupeStore)
`

// require() as it runs: the plugin itself, carrying the named exports.
const cts = `
import Fastify = require('fastify')
import langgraphWebhooks = require('fastify-langgraph-webhooks')
import testing = require('fastify-langgraph-webhooks/testing')

async function main (): Promise<void> {
  const app = Fastify()
  await app.register(langgraphWebhooks, { token: '${TOKEN}' })
  app.langgraphWebhooks.onRun('error', (run) => { console.log(run.status, langgraphWebhooks.RunWebhookSchema.$id) })
  const res = await testing.deliverRun(app, testing.buildRunWebhook(), { token: '${TOKEN}' })
  const code: 'FST_LANGGRAPH_WEBHOOKS_UNAUTHORIZED' = new langgraphWebhooks.UnauthorizedError().code
  console.log(res.statusCode, code, langgraphWebhooks.default === langgraphWebhooks.fastifyLanggraphWebhooks)
}
main().catch(console.error)
`

const cjs = `// @ts-check
const Fastify = require('fastify')
const langgraphWebhooks = require('fastify-langgraph-webhooks')
const { RunWebhookSchema, UnauthorizedError } = require('fastify-langgraph-webhooks')
const { createRedisDedupeStore } = require('fastify-langgraph-webhooks/redis')
const { buildRunWebhook, deliverRun } = require('fastify-langgraph-webhooks/testing')

async function main () {
  const app = Fastify()
  await app.register(langgraphWebhooks, { token: '${TOKEN}' })
  /** @type {string[]} */
  const seen = []
  app.langgraphWebhooks.onRun('success', (run) => { seen.push(run.status) })
  const res = await deliverRun(app, buildRunWebhook(), { token: '${TOKEN}' })
  /** @type {401} */
  const unauthorized = new UnauthorizedError().statusCode
  console.log(JSON.stringify({ status: res.statusCode, seen, schema: RunWebhookSchema.$id, unauthorized, redis: typeof createRedisDedupeStore, same: langgraphWebhooks === langgraphWebhooks.default }))
}
main()
`

const files = {
  // A consumer with a type error: the check must report it.
  wrong: await consumer.write('wrong.mts', `
    import { UnauthorizedError } from 'fastify-langgraph-webhooks'
    const statusCode: 400 = new UnauthorizedError().statusCode
    console.log(statusCode)
  `),
  esm: await consumer.write('esm.mts', esm),
  bundled: await consumer.write('bundled.ts', esm),
  cts: await consumer.write('required.cts', cts),
  cjs: await consumer.write('required.cjs', cjs)
}

// Every entry point, imported and required at run time.
const entries = {
  esm: await consumer.write('entries.mjs', `
    import Fastify from 'fastify'
    import plugin, { fastifyLanggraphWebhooks } from 'fastify-langgraph-webhooks'
    import { buildRunWebhook, deliverRun } from 'fastify-langgraph-webhooks/testing'
    import { createRedisDedupeStore } from 'fastify-langgraph-webhooks/redis'
    import { createRunWorker } from 'fastify-langgraph-webhooks/queue'
    const app = Fastify()
    // A listener timeout far beyond the run's bound: a timer of the delivery left behind would hold the process.
    await app.register(plugin, { token: '${TOKEN}', listenerTimeoutMs: 600000 })
    let got
    app.langgraphWebhooks.onRun((run) => { got = run.status })
    const res = await deliverRun(app, buildRunWebhook(), { token: '${TOKEN}' })
    console.log(JSON.stringify({ status: res.statusCode, got, same: plugin === fastifyLanggraphWebhooks, redis: typeof createRedisDedupeStore, queue: typeof createRunWorker }))
  `),
  cjs: await consumer.write('entries.cjs', `
    const { createRunWorker } = require('fastify-langgraph-webhooks/queue')
    const { createRedisDedupeStore } = require('fastify-langgraph-webhooks/redis')
    console.log(JSON.stringify({ queue: typeof createRunWorker, redis: typeof createRedisDedupeStore }))
  `)
}

// A hand-made Standard Schema and a TypeBox 0.34 one, in a project without typebox or zod.
const withoutSchemaLibraries = await bare.write('values.mts', `
  import Fastify from 'fastify'
  import { Type } from '@sinclair/typebox'
  import langgraphWebhooks, { type StandardSchemaV1 } from 'fastify-langgraph-webhooks'
  const Counted: StandardSchemaV1<unknown, { count: number }> = {
    '~standard': { version: 1, vendor: 'mine', validate: (value) => ({ value: value as { count: number } }) }
  }
  const app = Fastify()
  await app.register(langgraphWebhooks, { token: 'x'.repeat(32), valuesSchema: Counted })
  app.langgraphWebhooks.withValues(Counted).onRun((run) => { const count: number | undefined = run.values?.count; console.log(count) })
  const Legacy = Type.Object({ messages: Type.Array(Type.String()) })
  app.langgraphWebhooks.withValues(Legacy).onRun((run) => { const first: string | undefined = run.values?.messages[0]; console.log(first) })
  // @ts-expect-error the output type is precise, not any
  app.langgraphWebhooks.withValues(Counted).onRun((run) => { const wrong: string | undefined = run.values?.count; console.log(wrong) })
`)

// ```ts blocks of the README, and ```js ones (checkJs; CommonJS when they
// require()). A block that cannot compile is marked on the line before its
// fence with <!-- typecheck: skip, <the reason> -->, and the reason is printed.
const SKIP = /^<!-- typecheck: skip, (.{10,}) -->$/

async function readmeBlocks () {
  const lines = (await readFile(join(root, 'README.md'), 'utf8')).split('\n')
  const blocks: { line: number, path: string }[] = []
  const skipped: string[] = []
  const unclosed: number[] = []
  for (let i = 0; i < lines.length; i++) {
    const fence = /^```(ts|typescript|js|javascript)\s*$/.exec(lines[i])
    if (fence === null) continue
    const end = lines.indexOf('```', i + 1)
    if (end === -1) {
      unclosed.push(i + 1)
      break
    }
    const skip = SKIP.exec(lines[i - 1] ?? '')
    if (skip !== null) skipped.push(`README.md:${i + 1} not compiled: ${skip[1]}`)
    else {
      const code = lines.slice(i + 1, end).join('\n')
      const extension = fence[1].startsWith('t') ? 'mts' : /\brequire\(/.test(code) && !/^import /m.test(code) ? 'cjs' : 'mjs'
      blocks.push({ line: i + 1, path: await consumer.write(`readme-${i + 1}.${extension}`, extension === 'mts' ? code : `// @ts-check\n${code}`) })
    }
    i = end
  }
  return { blocks, skipped, unclosed }
}

// The README's blocks, each a module of its own; written now so that one
// NodeNext program checks them with the consumer's files (one checker, one
// pass over the dependencies' types).
const readme = await readmeBlocks()
const nodeNext = typeCheck(consumer, [files.wrong, files.esm, files.cts, files.cjs, ...readme.blocks.map((block) => block.path)], {
  module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext
})

t.test('the declarations compile from ES modules and CommonJS under NodeNext', async (t) => {
  t.same(nodeNext.filter((error) => !error.startsWith('readme-') && !error.startsWith('wrong.mts')), [])
})

t.test('the declarations compile from ES modules and CommonJS under Node16', async (t) => {
  t.same(typeCheck(consumer, [files.esm, files.cts, files.cjs], { module: ts.ModuleKind.Node16, moduleResolution: ts.ModuleResolutionKind.Node16 }), [])
})

t.test('the declarations compile under bundler resolution', async (t) => {
  t.same(typeCheck(consumer, [files.bundled], { module: ts.ModuleKind.Preserve, moduleResolution: ts.ModuleResolutionKind.Bundler }), [])
})

t.test('a type error in the consumer is reported (the check is not vacuous)', async (t) => {
  const errors = nodeNext.filter((error) => error.startsWith('wrong.mts'))
  t.match(errors, [/wrong\.mts\(3,11\): Type '401' is not assignable to type '400'/])
})

t.test('require() runs as it type-checks: the plugin itself, with the named exports', async (t) => {
  const { stdout } = await run(process.execPath, [files.cjs], { cwd: consumer.dir })
  t.same(JSON.parse(stdout), { status: 204, seen: ['success'], schema: 'LanggraphRunWebhook', unauthorized: 401, redis: 'function', same: true })
})

t.test('every TypeScript and JavaScript block of the README compiles under strict against the package', async (t) => {
  for (const line of readme.skipped) t.comment(line)
  t.same(readme.unclosed, [], 'every block is closed')
  t.ok(readme.blocks.length >= 5, `the README's blocks were found (${readme.blocks.length})`)
  // readme-<fence line>.mts(<line>,…) → README.md:<line in the README> (a JavaScript block has one line more: // @ts-check)
  const errors = nodeNext.filter((error) => error.startsWith('readme-'))
  t.same(errors.map((error) => error.replace(/^readme-(\d+)\.(\w+)\((\d+),\d+\)/, (_, fence, extension, line) => `README.md:${Number(fence) + Number(line) - (extension === 'mts' ? 0 : 1)}`)), [])
})

t.test('every entry point imports and requires at run time; a process that received a run exits by itself', async (t) => {
  const esm = await run(process.execPath, [entries.esm], { cwd: consumer.dir, timeout: 60_000 })
  t.same(JSON.parse(esm.stdout), { status: 204, got: 'success', same: true, redis: 'function', queue: 'function' })
  const cjs = await run(process.execPath, [entries.cjs], { cwd: consumer.dir })
  t.same(JSON.parse(cjs.stdout), { queue: 'function', redis: 'function' })
})

t.test('the declarations compile in a project without typebox or the schema libraries', async (t) => {
  t.same(typeCheck(bare, [withoutSchemaLibraries], { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext }), [])
  // The control: typebox is indeed out of reach of that project.
  const control = await run(process.execPath, ['--input-type=module', '-e', "await import('typebox')"], { cwd: bare.dir }).then(() => '', (error) => String(error.stderr))
  t.match(control, /Cannot find package 'typebox'/)
})

t.test('the package holds the built code and declarations, and no sources or tests', async (t) => {
  const installed = join(consumer.dir, 'node_modules/fastify-langgraph-webhooks')
  const files = await readdir(installed, { recursive: true })
  for (const file of ['dist/index.js', 'dist/index.d.ts', 'dist/testing.js', 'dist/testing.d.ts', 'dist/queue/index.js', 'dist/queue/index.d.ts', 'dist/cli.js', 'package.json', 'README.md', 'CHANGELOG.md']) {
    t.ok(files.includes(file), file)
  }
  t.notOk(files.some((file) => file.startsWith('lib') || file.startsWith('test')), 'no sources or tests')
})

t.test('the README stays a front door: at most 16 KB', async (t) => {
  const { size } = await stat(join(root, 'README.md'))
  t.ok(size <= 16 * 1024, `README.md is ${size} bytes; move the depth to docs/`)
})

t.test('publint finds nothing to say, warnings and suggestions included', async (t) => {
  // The installed copy holds exactly the packed files.
  const installed = join(consumer.dir, 'node_modules/fastify-langgraph-webhooks')
  const manifest = JSON.parse(await readFile(join(installed, 'package.json'), 'utf8'))
  const { messages } = await publint({ pkgDir: installed, strict: true, level: 'suggestion', pack: false })
  t.same(messages.map((message) => formatMessage(message, manifest)), [])
})

t.test('are the types wrong (attw): no problem under node16 from ES modules and CommonJS, nor under bundler', async (t) => {
  const result = await attw
  if (result.code !== 0) t.comment(result.stdout)
  t.equal(result.code, 0, 'attw --profile node16 exits 0')
})

t.test('the source maps shipped carry their sources: none points at a file the package lacks', async (t) => {
  const installed = join(consumer.dir, 'node_modules/fastify-langgraph-webhooks')
  const maps = (await readdir(join(installed, 'dist'), { recursive: true })).filter((file) => file.endsWith('.map'))
  t.ok(maps.length > 0, `${maps.length} source maps`)
  const missing: string[] = []
  for (const file of maps) {
    const map = JSON.parse(await readFile(join(installed, 'dist', file), 'utf8'))
    map.sources.forEach((source: string, i: number) => {
      if (typeof map.sourcesContent?.[i] !== 'string') missing.push(`${file}: ${source}`)
    })
  }
  t.same(missing, [])
})

t.test('the package ships its license and says where it lives', async (t) => {
  const installed = join(consumer.dir, 'node_modules/fastify-langgraph-webhooks')
  t.match(await readFile(join(installed, 'LICENSE'), 'utf8'), /^MIT License\n\nCopyright \(c\) \d{4} fastify-langgraph-webhooks contributors/)
  const manifest = JSON.parse(await readFile(join(installed, 'package.json'), 'utf8'))
  t.match(manifest, { license: 'MIT', repository: { type: 'git', url: /^git\+https:\/\/github\.com\/.+\.git$/ }, homepage: /^https:\/\//, bugs: { url: /^https:\/\/.+\/issues$/ } })
})

t.test('the bin, as npx runs it: send posts each sender\'s form to a running app, and says what went wrong', async (t) => {
  await binLinked
  const bin = join(consumer.dir, 'node_modules/.bin/fastify-langgraph-webhooks')
  const { app } = await buildApp({ tokenSources: ['query', 'bearer', { header: 'x-webhook-token' }] })
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}/webhooks/langgraph`
  const token = 'test-token-0123456789abcdef0123456789abcdef'
  const send = (args: string[], env: Record<string, string> = {}) => run(bin, args, { cwd: consumer.dir, env: { PATH: process.env.PATH, ...env }, timeout: 60_000 })
    .then(({ stdout, stderr }) => ({ code: 0, stdout, stderr }), (error: { code: number, stdout: string, stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }))

  const port = await freePort()
  // One process a command line, all at once, as few as show each form: test/cli.test.ts goes through the rest in process.
  const [js, python, header, refused, nobody, help] = await Promise.all([
    send(['send', url], { LANGGRAPH_WEBHOOK_TOKEN: token }),
    send(['send', url, '--sender', 'python', '--status', 'error', '--token-header', 'authorization', '--token', token]),
    send(['send', url, '--sender', 'python', '--token-header', 'x-webhook-token', '--token', token]),
    send(['send', url, '--token', 'not-the-token']),
    send(['send', `http://127.0.0.1:${port}/webhooks/langgraph`, '--token', token]),
    send(['--help'])
  ])
  for (const [form, reply] of Object.entries({ js, python, header })) {
    t.equal(reply.code, 0, form)
    t.match(reply.stdout, new RegExp(`^POST ${url} as the ${form === 'header' ? 'python' : form} server: run [0-9a-f-]{36} \\(\\w+\\)\\n204 No Content\\n$`), form)
  }
  t.equal(refused.code, 1)
  t.match(refused.stdout, /\n401 Unauthorized FST_LANGGRAPH_WEBHOOKS_UNAUTHORIZED: Missing or invalid webhook token\n$/)
  t.equal(nobody.code, 1)
  t.equal(nobody.stderr, `Connection refused by 127.0.0.1:${port}: is the app listening there?\n`)
  t.equal(help.code, 0)
  t.match(help.stdout, /^Usage: fastify-langgraph-webhooks send <url> \[options\]\n/)
  t.match(help.stdout, /--sender js\|python/)
  t.match(help.stdout, /2 on bad usage/)
})
