// OpenTelemetry's globals refuse an API copy newer than the one that
// registered the SDK. As a peer dependency, @opentelemetry/api resolves to
// the application's own copy, so an application on an older API (here the
// oldest of the peer range) still gets our spans and metrics; a copy of our
// own, as a pinned dependency would install, would see nothing.
import { test } from 'tap'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)
const root = resolve(import.meta.dirname, '..')
const modules = join(root, 'node_modules')

// The application: it registers the SDK through its own @opentelemetry/api,
// then registers the plugin and delivers a run whose listener makes a span.
const APP = `
import { createRequire } from 'node:module'
import api from '@opentelemetry/api'
import Fastify from 'fastify'
import plugin from 'fastify-langgraph-webhooks'
import { buildRunWebhook, deliverRun } from 'fastify-langgraph-webhooks/testing'
const sdk = createRequire(${JSON.stringify(join(modules, 'x.js'))})
const { AsyncLocalStorageContextManager } = sdk('@opentelemetry/context-async-hooks')
const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } = sdk('@opentelemetry/sdk-trace-base')
const { MeterProvider, MetricReader } = sdk('@opentelemetry/sdk-metrics')
class Reader extends MetricReader { async onForceFlush () {} async onShutdown () {} }

const exporter = new InMemorySpanExporter()
const reader = new Reader()
api.context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
api.trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }))
api.metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }))

const token = 't'.repeat(32)
const app = Fastify()
await app.register(plugin, { token })
let active
app.langgraphWebhooks.onRun(() => {
  active = api.trace.getActiveSpan()?.spanContext().spanId
  api.trace.getTracer('app').startSpan('listener work').end()
})
const reply = await deliverRun(app, buildRunWebhook(), { token })
await app.close()
const spans = exporter.getFinishedSpans()
const ours = spans.find((span) => span.instrumentationScope.name === 'fastify-langgraph-webhooks')
const { resourceMetrics } = await reader.collect()
console.log(JSON.stringify({
  api: createRequire(import.meta.url)('@opentelemetry/api/package.json').version,
  status: reply.statusCode,
  spans: spans.map((span) => span.name).sort(),
  outcome: ours?.attributes['langgraph.webhook.outcome'],
  listenerInside: active !== undefined && active === ours?.spanContext().spanId,
  metrics: resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics.map((metric) => metric.descriptor.name)).sort()
}))
`

async function consumer (pinned: boolean): Promise<Record<string, unknown>> {
  const dir = await mkdtemp(join(tmpdir(), 'lgw-otel-'))
  try {
    const own = join(dir, 'node_modules', 'fastify-langgraph-webhooks')
    // A copy, not a link: the package must resolve its imports from the application's node_modules.
    await mkdir(own, { recursive: true })
    await cp(join(root, 'dist'), join(own, 'dist'), { recursive: true })
    await cp(join(root, 'package.json'), join(own, 'package.json'))
    const { dependencies } = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }
    const links: Record<string, string> = { '@opentelemetry/api': join(modules, 'otel-api-old'), fastify: join(modules, 'fastify') }
    for (const name of Object.keys(dependencies)) links[name] = join(modules, name)
    // A pinned dependency would be installed beside the package, as its own copy.
    if (pinned) links['fastify-langgraph-webhooks/node_modules/@opentelemetry/api'] = join(modules, '@opentelemetry/api')
    for (const [name, target] of Object.entries(links)) {
      const link = join(dir, 'node_modules', name)
      await mkdir(dirname(link), { recursive: true })
      await symlink(target, link, 'dir')
    }
    await writeFile(join(dir, 'app.mjs'), APP)
    const { stdout } = await run(process.execPath, ['app.mjs'], { cwd: dir })
    return JSON.parse(stdout)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

test('an SDK registered through an older @opentelemetry/api still gets our spans and metrics', async (t) => {
  t.ok(existsSync(join(root, 'dist/index.js')), 'dist/ is built (npm test runs npm run build first)')
  const old = JSON.parse(await readFile(join(modules, 'otel-api-old/package.json'), 'utf8')) as { version: string }
  const ours = JSON.parse(await readFile(join(modules, '@opentelemetry/api/package.json'), 'utf8')) as { version: string }
  const range = (JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { peerDependencies: Record<string, string> }).peerDependencies['@opentelemetry/api']
  t.equal(range, `^${old.version}`, 'the application API is the oldest of the peer range')
  t.not(old.version, ours.version, `older than the development copy (${old.version} < ${ours.version})`)

  const peer = await consumer(false)
  t.same(peer, {
    api: old.version,
    status: 204,
    spans: ['langgraph.webhook.receive', 'listener work'],
    outcome: 'delivered',
    listenerInside: true,
    metrics: ['langgraph.run.duration', 'langgraph.webhook.deliveries', 'langgraph.webhook.delivery.lag', 'langgraph.webhook.listener.duration']
  })

  const pinned = await consumer(true)
  t.same(pinned, { api: old.version, status: 204, spans: ['listener work'], listenerInside: false, metrics: [] },
    'with a copy of its own, newer than the registrant, the plugin would see no SDK at all')
})
