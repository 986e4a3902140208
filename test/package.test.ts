import { test } from 'tap'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)
const root = resolve(import.meta.dirname, '..')

// `npm test` builds dist/ before tap runs; this test uses the built package
// the way a consumer does: by name, through the exports map.
test('a consumer outside the repo can import and require the built package', async (t) => {
  t.ok(existsSync(join(root, 'dist/index.js')), 'dist/ is built (npm test runs npm run build first)')
  const consumer = await mkdtemp(join(tmpdir(), 'lgw-consumer-'))
  t.teardown(() => rm(consumer, { recursive: true, force: true }))
  await mkdir(join(consumer, 'node_modules'))
  await symlink(root, join(consumer, 'node_modules', 'fastify-langgraph-webhooks'), 'dir')
  await writeFile(join(consumer, 'esm.mjs'), `
    import Fastify from 'fastify'
    import plugin, { fastifyLanggraphWebhooks, RunWebhookSchema, createTokenVerifier } from 'fastify-langgraph-webhooks'
    import { buildRunWebhook, deliverRun } from 'fastify-langgraph-webhooks/testing'
    import { createRedisDedupeStore } from 'fastify-langgraph-webhooks/redis'
    import { createRunWorker } from 'fastify-langgraph-webhooks/queue'
    const app = Fastify()
    await app.register(plugin, { token: 't'.repeat(32) })
    let got
    app.langgraphWebhooks.onRun((run) => { got = run.status })
    const res = await deliverRun(app, buildRunWebhook(), { token: 't'.repeat(32) })
    console.log(JSON.stringify({ status: res.statusCode, got, same: plugin === fastifyLanggraphWebhooks, schema: RunWebhookSchema.$id, verify: createTokenVerifier('x')('x'), redis: typeof createRedisDedupeStore, queue: typeof createRunWorker }))
  `)
  await writeFile(join(consumer, 'cjs.cjs'), `
    const Fastify = require('fastify')
    const lib = require('fastify-langgraph-webhooks')
    const { buildRunWebhook, deliverRun } = require('fastify-langgraph-webhooks/testing')
    ;(async () => {
      const app = Fastify()
      await app.register(lib.default, { token: 't'.repeat(32) })
      const res = await deliverRun(app, buildRunWebhook(), { token: 't'.repeat(32) })
      console.log(JSON.stringify({ status: res.statusCode, named: typeof lib.fastifyLanggraphWebhooks, queue: typeof require('fastify-langgraph-webhooks/queue').createRunWorker }))
    })()
  `)
  // fastify resolves from the consumer, as it would once installed beside the package.
  await symlink(join(root, 'node_modules', 'fastify'), join(consumer, 'node_modules', 'fastify'), 'dir')

  const esm = await run(process.execPath, ['esm.mjs'], { cwd: consumer })
  t.same(JSON.parse(esm.stdout), { status: 204, got: 'success', same: true, schema: 'LanggraphRunWebhook', verify: true, redis: 'function', queue: 'function' })
  const cjs = await run(process.execPath, ['cjs.cjs'], { cwd: consumer })
  t.same(JSON.parse(cjs.stdout), { status: 204, named: 'function', queue: 'function' })
})

test('the published files hold the built code and declarations', async (t) => {
  const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root })
  const files: string[] = JSON.parse(stdout)[0].files.map((file: { path: string }) => file.path)
  for (const file of ['dist/index.js', 'dist/index.d.ts', 'dist/testing.js', 'dist/testing.d.ts', 'dist/queue/index.js', 'dist/queue/index.d.ts', 'package.json', 'README.md']) {
    t.ok(files.includes(file), file)
  }
  t.notOk(files.some((file) => file.startsWith('lib/') || file.startsWith('test/')), 'no sources or tests')
})
