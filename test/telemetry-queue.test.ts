// Telemetry of queued runs with a real SDK (spans and metrics), a real
// redis-server and BullMQ, beyond queue-telemetry.test.ts: a failed attempt
// and its retry, the queue gauges, the job's payload. The SDK is registered
// for this process only.
import t from 'tap'
import { context, metrics, propagation, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { MeterProvider, MetricReader, type DataPoint, type Histogram } from '@opentelemetry/sdk-metrics'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'
import { startRedisServer } from './helpers/redis-server.js'
import { instance, queueName, token, until } from './helpers/queue.js'

class ManualReader extends MetricReader {
  protected async onForceFlush (): Promise<void> {}
  protected async onShutdown (): Promise<void> {}
}

const exporter = new InMemorySpanExporter()
const reader = new ManualReader()
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
propagation.setGlobalPropagator(new W3CTraceContextPropagator())
trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }))
metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }))
const tracer = trace.getTracer('telemetry-queue-test')

const server = await startRedisServer()
t.teardown(() => server.stop())

async function listenerCount (): Promise<number> {
  const { resourceMetrics } = await reader.collect()
  const data = resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics).find((metric) => metric.descriptor.name === 'langgraph.webhook.listener.duration')
  return ((data?.dataPoints ?? []) as Array<DataPoint<Histogram>>).reduce((sum, point) => sum + point.value.count, 0)
}

const named = (name: string) => exporter.getFinishedSpans().filter((span) => span.name === name)

async function gauge (): Promise<Record<string, number>> {
  const { resourceMetrics } = await reader.collect()
  const data = resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics).find((metric) => metric.descriptor.name === 'langgraph.webhook.queue.jobs')
  return Object.fromEntries((data?.dataPoints ?? []).map((point) => [`${String(point.attributes['messaging.destination.name'])}/${String(point.attributes['langgraph.webhook.queue.state'])}`, point.value as number]))
}

t.test('queued, then processed in a span linked to the delivery: a failed attempt, its retry, the gauges; no token anywhere', async (t) => {
  exporter.reset()
  const name = queueName()
  const { app, client } = await instance(t, server, { name, backoffMs: 10, attempts: 3 })
  let attempts = 0
  let active: string | undefined
  app.langgraphWebhooks.onRun(async (run, { attempt }) => {
    attempts++
    active = trace.getActiveSpan()?.spanContext().spanId
    await tracer.startActiveSpan('save run', async (span) => { span.end() })
    if (attempt === 1) throw new Error(`database down for ${String(run.kwargs.webhook)}`)
  })
  await app.ready()

  const run = buildRunWebhook({ kwargs: { webhook: `https://app.example/webhooks/langgraph?token=${token}` } })
  t.equal((await deliverRun(app, run, { token })).statusCode, 202)
  await until(() => named('langgraph.webhook.process').length === 2, 30_000, 'two attempts')
  t.equal(attempts, 2)

  const [delivery] = named('langgraph.webhook.receive')
  t.equal(delivery.attributes['langgraph.webhook.outcome'], 'queued')
  t.equal(delivery.attributes['http.response.status_code'], 202)
  const processed = named('langgraph.webhook.process').sort((a, b) => Number(a.attributes['langgraph.run.attempt']) - Number(b.attributes['langgraph.run.attempt']))
  for (const [index, span] of processed.entries()) {
    t.equal(span.kind, SpanKind.CONSUMER)
    t.same(span.links.map((link) => link.context.spanId), [delivery.spanContext().spanId], `attempt ${index + 1}: linked to the delivery's span`)
    t.match(span.attributes, { 'langgraph.run.id': run.run_id, 'langgraph.run.status': 'success', 'langgraph.run.attempt': index + 1 })
    const save = exporter.getFinishedSpans().filter((one) => one.name === 'save run' && one.parentSpanContext?.spanId === span.spanContext().spanId)
    t.equal(save.length, 1, `attempt ${index + 1}: the listener's span is its child`)
  }
  t.equal(active, processed[1].spanContext().spanId, 'the listener sees the processing span as active')
  t.equal(processed[0].attributes['langgraph.webhook.outcome'], 'listener_failed')
  t.equal(processed[0].status.code, SpanStatusCode.ERROR)
  t.same(processed[0].events.map((event) => event.attributes?.['exception.message']), ['database down for https://app.example/webhooks/langgraph?token=[REDACTED]'])
  t.equal(processed[1].attributes['langgraph.webhook.outcome'], 'delivered')

  await until(async () => (await gauge())[`${name}/completed`] === 1, 30_000, 'the completed job in the gauge')
  const counts = await gauge()
  t.same(Object.keys(counts).filter((key) => key.startsWith(`${name}/`)).sort(), ['active', 'completed', 'delayed', 'failed', 'waiting'].map((state) => `${name}/${state}`))

  // The job in Redis carries the trace context, and never the token.
  const job = await client.hget(`bull:${name}:${run.run_id}.success`, 'data')
  t.match(JSON.parse(job!).trace, { traceparent: new RegExp(`^00-${delivery.spanContext().traceId}-${delivery.spanContext().spanId}-01$`) })
  const exported = JSON.stringify(exporter.getFinishedSpans().map((span: ReadableSpan) => ({ name: span.name, attributes: span.attributes, events: span.events, links: span.links })))
  t.notOk(exported.includes(token), 'no token in any span')
  t.notOk(JSON.stringify(await reader.collect()).includes(token), 'no token in any metric')
  t.notOk(job!.includes(token), 'no token in the job')

  t.equal(await listenerCount(), 2, "each attempt's listeners timed")
})

t.test('a run that exhausted its attempts is counted once as a dead letter, by queue and status; a retried attempt is not', async (t) => {
  const name = queueName()
  const { app } = await instance(t, server, { name, backoffMs: 5, attempts: 2 })
  let recovering = true
  app.langgraphWebhooks.onRun('success', () => {
    if (recovering) {
      recovering = false
      throw new Error('once')
    }
  })
  app.langgraphWebhooks.onRun('error', () => { throw new Error('always') })
  const dead: string[] = []
  app.langgraphWebhooks.queue.onDeadLetter((failedRun) => { dead.push(failedRun.run.run_id) })
  await app.ready()
  t.equal((await deliverRun(app, buildRunWebhook(), { token })).statusCode, 202)
  t.equal((await deliverRun(app, buildRunWebhook({ status: 'error', error: 'boom', kwargs: { webhook: `https://app.example/?token=${token}` } }), { token })).statusCode, 202)
  await until(async () => dead.length === 1 && (await app.langgraphWebhooks.queue.counts()).completed === 1, 10_000, 'one dead letter, one completed run')

  const { resourceMetrics } = await reader.collect()
  const metric = resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics).find((one) => one.descriptor.name === 'langgraph.webhook.queue.dead_letters')!
  t.equal(metric.descriptor.unit, '{run}')
  const points = metric.dataPoints.filter((point) => point.attributes['messaging.destination.name'] === name)
  t.same(points.map((point) => ({ attributes: point.attributes, value: point.value })), [
    { attributes: { 'messaging.destination.name': name, 'langgraph.run.status': 'error' }, value: 1 }
  ])
  t.notOk(JSON.stringify(resourceMetrics).includes(token), 'no token in any metric')
})
