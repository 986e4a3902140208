// Telemetry of queued runs with a real OpenTelemetry SDK (in-memory
// exporter, registered for this process only) and a real redis-server: the
// route's span says the run was queued, the worker's span links to it, and
// the listener's own spans are children of the worker's.
import t from 'tap'
import Fastify from 'fastify'
import { context, metrics, propagation, trace } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics'
import plugin from '../lib/index.js'
import { createRunWorker } from '../lib/queue/index.js'
import { TELEMETRY_NAMES } from '../lib/telemetry.js'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'
import { startRedisServer } from './helpers/redis-server.js'
import { queueName, token, until } from './helpers/queue.js'

const exporter = new InMemorySpanExporter()
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
propagation.setGlobalPropagator(new W3CTraceContextPropagator())
trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }))
const tracer = trace.getTracer('queue-telemetry-test')

/** Collects on demand. */
class ManualReader extends MetricReader {
  protected async onForceFlush (): Promise<void> {}
  protected async onShutdown (): Promise<void> {}
}
const reader = new ManualReader()
metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }))

async function listenerDurations (): Promise<number> {
  const { resourceMetrics } = await reader.collect()
  const metric = resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics).find((m) => m.descriptor.name === TELEMETRY_NAMES.listenerDuration)
  return (metric?.dataPoints as Array<{ value: { count: number } }> | undefined)?.reduce((sum, point) => sum + point.value.count, 0) ?? 0
}

const server = await startRedisServer()
t.teardown(() => server.stop())

for (const where of ['in the web process', 'in a worker made with createRunWorker'] as const) {
  t.test(`a queued run: the route's span says queued, the worker's span (${where}) links to it, the listener inside it`, async (t) => {
    exporter.reset()
    const durationsBefore = await listenerDurations()
    const name = queueName()
    const app = Fastify()
    await app.register(plugin, { token, queue: { connection: server.url, name, worker: where === 'in the web process' } })
    t.teardown(() => app.close())
    const listener = async (): Promise<void> => { tracer.startActiveSpan('crm.update', (span) => span.end()) }
    let handled = 0
    const counted = async () => { await listener(); handled++ }
    if (where === 'in the web process') {
      app.langgraphWebhooks.onRun(counted)
    } else {
      const worker = createRunWorker({ connection: server.url, name, lockMs: 1000, logger: app.log })
      worker.onRun(counted)
      t.teardown(() => worker.close())
    }
    await app.ready()

    const run = buildRunWebhook({ kwargs: { webhook: `https://app.example/hook?token=${token}` } })
    t.equal((await deliverRun(app, run, { token })).statusCode, 202)
    await until(() => handled === 1)
    await until(() => exporter.getFinishedSpans().some((span) => span.name === TELEMETRY_NAMES.processSpan))

    const spans = exporter.getFinishedSpans()
    const received = spans.find((span) => span.name === TELEMETRY_NAMES.receiveSpan)!
    const processed = spans.find((span) => span.name === TELEMETRY_NAMES.processSpan)!
    const crm = spans.find((span) => span.name === 'crm.update')!
    t.equal(received.attributes['langgraph.webhook.outcome'], 'queued')
    t.equal(received.attributes['langgraph.run.id'], run.run_id)
    t.equal(processed.attributes['langgraph.run.id'], run.run_id)
    t.equal(processed.attributes['langgraph.run.attempt'], 1)
    t.same(processed.links.map((link) => link.context.spanId), [received.spanContext().spanId], "the worker's span links to the delivery's")
    t.equal(crm.parentSpanContext?.spanId, processed.spanContext().spanId, "the listener's span is a child of the worker's")
    t.notOk(JSON.stringify(spans.map((span) => [span.attributes, span.events, span.links])).includes(token), 'the token in no span')
    t.equal(await listenerDurations() - durationsBefore, 1, "the worker's listeners timed")
  })
}
