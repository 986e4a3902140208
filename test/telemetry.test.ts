// Traces and metrics with a real OpenTelemetry SDK and its in-memory
// exporters. Registering an SDK is process-wide: tap runs this file in a
// process of its own.
import { test, type Test } from 'tap'
import { connect, type AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify, { type FastifyInstance } from 'fastify'
import { context, propagation, SpanKind, SpanStatusCode, trace, metrics } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { MeterProvider, MetricReader, type DataPoint, type Histogram, type MetricData } from '@opentelemetry/sdk-metrics'
import { FastifyOtelInstrumentation } from '@fastify/otel'
import langgraphWebhooks, { maskTokenInUrl, type DedupeStore, type LanggraphWebhooksOptions, type RunContext, type RunWebhook } from '../lib/index.js'
import type { Outcome } from '../lib/receive.js'
import { createTelemetry, type Telemetry, type TracedJob } from '../lib/telemetry.js'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'
import { jsServerBody } from './helpers/app.js'

const TOKEN = 'telemetry-token-5d1f3b7a9c2e4f6a8b0c1d3e5f7a9b2c'
const PATH = '/webhooks/langgraph'

/** Collects on demand, as a Prometheus scrape would. */
class ManualReader extends MetricReader {
  protected async onForceFlush (): Promise<void> {}
  protected async onShutdown (): Promise<void> {}
}

const exporter = new InMemorySpanExporter()
const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
let reader = new ManualReader()
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
propagation.setGlobalPropagator(new W3CTraceContextPropagator())
trace.setGlobalTracerProvider(tracerProvider)
metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }))

/** A new meter provider, for the apps registered after this: its metrics count from zero. */
function freshMetrics (): void {
  metrics.disable()
  reader = new ManualReader()
  metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }))
}
const tracer = trace.getTracer('telemetry-test')

async function receiver (t: Test, options: Partial<LanggraphWebhooksOptions> = {}): Promise<FastifyInstance> {
  const app = Fastify()
  await app.register(langgraphWebhooks, { token: TOKEN, ...options })
  t.teardown(() => app.close())
  return app
}

function ours (): ReadableSpan[] {
  return exporter.getFinishedSpans().filter((span) => span.instrumentationScope.name === 'fastify-langgraph-webhooks')
}

/** The one span of ours that finished since the exporter was reset. */
function onlySpan (t: Test): ReadableSpan {
  const spans = ours()
  t.equal(spans.length, 1, 'one span of ours')
  return spans[0]
}

async function collect (): Promise<MetricData[]> {
  const { resourceMetrics, errors } = await reader.collect()
  if (errors.length > 0) throw new AggregateError(errors)
  return resourceMetrics.scopeMetrics.filter((scope) => scope.scope.name === 'fastify-langgraph-webhooks').flatMap((scope) => scope.metrics)
}

async function metric (name: string): Promise<MetricData> {
  const found = (await collect()).find((data) => data.descriptor.name === name)
  if (found === undefined) throw new Error(`no metric ${name}`)
  return found
}

function counts (data: MetricData): Record<string, number> {
  const result: Record<string, number> = {}
  for (const point of data.dataPoints as Array<DataPoint<number>>) {
    result[`${String(point.attributes['langgraph.webhook.outcome'])}/${String(point.attributes['langgraph.run.status'] ?? '-')}`] = point.value
  }
  return result
}

const RUN_ATTRIBUTES = ['langgraph.run.id', 'langgraph.thread.id', 'langgraph.assistant.id', 'langgraph.run.status']

/** A delivery without a request, traced as receive() traces one: `step` runs inside its span. */
function traced (telemetry: Telemetry, step: () => Promise<Outcome>) {
  return async (run: RunWebhook, reconciled = true): Promise<Outcome> => {
    const trace = telemetry.trace(undefined)!
    try {
      trace.run(run, reconciled)
      const outcome = await telemetry.within(trace, step)
      trace.delivered(outcome, run)
      return outcome
    } catch (error) {
      trace.failed(error)
      throw error
    } finally {
      trace.settled()
    }
  }
}

test('a delivered run: one span with the run and the outcome', async (t) => {
  exporter.reset()
  const app = await receiver(t)
  app.langgraphWebhooks.onRun(() => {})
  const body = jsServerBody(TOKEN)
  const res = await deliverRun(app, body, { token: TOKEN })
  t.equal(res.statusCode, 204)
  const span = onlySpan(t)
  t.equal(span.name, 'langgraph.webhook.receive')
  t.equal(span.kind, SpanKind.SERVER, 'the server side of the request when no instrumentation made one')
  t.same(span.attributes, {
    'http.request.method': 'POST',
    'http.route': PATH,
    'http.response.status_code': 204,
    'langgraph.run.id': body.run_id,
    'langgraph.thread.id': body.thread_id,
    'langgraph.assistant.id': body.assistant_id,
    'langgraph.run.status': 'success',
    'langgraph.webhook.outcome': 'delivered'
  })
  t.equal(span.status.code, SpanStatusCode.UNSET)
  t.equal(span.events.length, 0)
})

test('a body stripped by the server (allowedFields): the attributes it has', async (t) => {
  freshMetrics()
  exporter.reset()
  const app = await receiver(t, { allowedFields: ['run_id', 'webhook_sent_at'] })
  const res = await deliverRun(app, { run_id: 'stripped-run', webhook_sent_at: new Date().toISOString() }, { token: TOKEN })
  t.equal(res.statusCode, 204)
  const span = onlySpan(t)
  t.equal(span.attributes['langgraph.run.id'], 'stripped-run')
  t.same(RUN_ATTRIBUTES.filter((key) => key in span.attributes), ['langgraph.run.id'], 'no thread, assistant or status')
  t.same(counts(await metric('langgraph.webhook.deliveries')), { 'delivered/-': 1 })
})

test('listeners run inside the delivery span: their spans are its children', async (t) => {
  exporter.reset()
  const app = await receiver(t)
  let active: string | undefined
  app.langgraphWebhooks.onRun(async () => {
    await sleep(5)
    active = trace.getActiveSpan()?.spanContext().spanId
    await tracer.startActiveSpan('save run', async (span) => { await sleep(1); span.end() })
  })
  app.langgraphWebhooks.onRun(() => {
    tracer.startSpan('second listener').end()
  })
  t.equal((await deliverRun(app, buildRunWebhook(), { token: TOKEN })).statusCode, 204)
  const delivery = onlySpan(t)
  t.equal(active, delivery.spanContext().spanId, 'trace.getActiveSpan() in a listener is the delivery span')
  const children = exporter.getFinishedSpans().filter((span) => span.parentSpanContext?.spanId === delivery.spanContext().spanId)
  t.same(children.map((span) => span.name).sort(), ['save run', 'second listener'])
})

test('a listener failure: error status, the exception recorded, outcome listener_failed', async (t) => {
  exporter.reset()
  const app = await receiver(t)
  app.langgraphWebhooks.onRun('error', () => { throw new TypeError('cannot save the failed run') })
  app.langgraphWebhooks.onRun(async () => { await sleep(1) })
  const res = await deliverRun(app, buildRunWebhook({ status: 'error', error: 'boom' }), { token: TOKEN })
  t.equal(res.statusCode, 500)
  const span = onlySpan(t)
  t.equal(span.attributes['langgraph.webhook.outcome'], 'listener_failed')
  t.equal(span.attributes['langgraph.run.status'], 'error')
  t.equal(span.attributes['http.response.status_code'], 500)
  t.equal(span.attributes['error.type'], 'FST_LANGGRAPH_WEBHOOKS_LISTENER_FAILED')
  t.equal(span.status.code, SpanStatusCode.ERROR)
  t.same(span.events.map((event) => [event.name, event.attributes?.['exception.type'], event.attributes?.['exception.message']]), [
    ['exception', 'TypeError', 'cannot save the failed run']
  ], "the listener's own error, once")
})

test('refused requests get a span with their outcome and no run attributes', async (t) => {
  const app = await receiver(t, { bodyLimit: 4096, maxAgeMs: 60_000 })
  let calls = 0
  app.langgraphWebhooks.onRun(() => { calls++ })
  const valid = JSON.stringify(buildRunWebhook())
  const cases: Array<{ name: string, inject: { url: string, payload: string, headers?: Record<string, string>, method?: 'PUT' }, status: number, outcome: string }> = [
    { name: 'no token', inject: { url: PATH, payload: valid }, status: 401, outcome: 'unauthorized' },
    { name: 'wrong token', inject: { url: `${PATH}?token=wrong`, payload: valid }, status: 401, outcome: 'unauthorized' },
    { name: 'not a run', inject: { url: `${PATH}?token=${TOKEN}`, payload: JSON.stringify({ run_id: 'x' }) }, status: 400, outcome: 'invalid' },
    { name: 'broken JSON', inject: { url: `${PATH}?token=${TOKEN}`, payload: '{"run_id":' }, status: 400, outcome: 'invalid' },
    { name: 'empty body', inject: { url: `${PATH}?token=${TOKEN}`, payload: '' }, status: 400, outcome: 'invalid' },
    { name: 'outside the replay window', inject: { url: `${PATH}?token=${TOKEN}`, payload: JSON.stringify(buildRunWebhook({ webhook_sent_at: '2020-01-01T00:00:00.000Z' })) }, status: 400, outcome: 'stale' },
    { name: 'over bodyLimit', inject: { url: `${PATH}?token=${TOKEN}`, payload: JSON.stringify({ ...buildRunWebhook(), values: { big: 'x'.repeat(5000) } }) }, status: 413, outcome: 'too_large' },
    { name: 'another content type', inject: { url: `${PATH}?token=${TOKEN}`, payload: valid, headers: { 'content-type': 'application/xml' } }, status: 415, outcome: 'unsupported' },
    { name: 'another method', inject: { url: `${PATH}?token=${TOKEN}`, payload: valid, method: 'PUT' }, status: 405, outcome: 'method_not_allowed' },
    { name: 'compressed', inject: { url: `${PATH}?token=${TOKEN}`, payload: valid, headers: { 'content-encoding': 'gzip' } }, status: 415, outcome: 'unsupported' }
  ]
  for (const { name, inject, status, outcome } of cases) {
    exporter.reset()
    const res = await app.inject({ method: 'POST', headers: { 'content-type': 'application/json' }, ...inject })
    t.equal(res.statusCode, status, name)
    const span = onlySpan(t)
    t.equal(span.attributes['langgraph.webhook.outcome'], outcome, `${name}: ${outcome}`)
    t.equal(span.attributes['http.response.status_code'], status, `${name}: status code`)
    t.equal(span.status.code, SpanStatusCode.UNSET, `${name}: a refusal is not a server error`)
    t.same(span.events, [], `${name}: no exception recorded`)
    // Only a valid run is attributed: before that, nothing from the body is trusted.
    t.same(RUN_ATTRIBUTES.filter((key) => key in span.attributes), [], `${name}: no run attributes`)
  }
  t.equal(calls, 0)
})

test('ack received: the span waits for the listeners and records their failure', async (t) => {
  exporter.reset()
  const app = await receiver(t, { ack: 'received' })
  let release!: () => void
  const gate = new Promise<void>((resolve) => { release = resolve })
  app.langgraphWebhooks.onRun(async () => { await gate; throw new Error('failed after the 202') })
  t.equal((await deliverRun(app, buildRunWebhook(), { token: TOKEN })).statusCode, 202)
  t.same(ours(), [], 'not ended while the listener runs')
  release()
  await app.close()
  const span = onlySpan(t)
  t.equal(span.attributes['langgraph.webhook.outcome'], 'received', 'the outcome is what the sender was told')
  t.equal(span.status.code, SpanStatusCode.ERROR)
  t.equal(span.events[0]?.attributes?.['exception.message'], 'failed after the 202')
})

test('a listener timeout ends the span with the 503, and a late failure is not recorded on it', async (t) => {
  exporter.reset()
  const app = await receiver(t, { listenerTimeoutMs: 20 })
  let release!: () => void
  const gate = new Promise<void>((resolve) => { release = resolve })
  app.langgraphWebhooks.onRun(async () => { await gate; throw new Error('too late') })
  const res = await deliverRun(app, buildRunWebhook(), { token: TOKEN })
  t.equal(res.statusCode, 503)
  const span = onlySpan(t)
  t.equal(span.attributes['langgraph.webhook.outcome'], 'timed_out')
  t.equal(span.attributes['error.type'], 'FST_LANGGRAPH_WEBHOOKS_LISTENER_TIMEOUT')
  t.equal(span.status.code, SpanStatusCode.ERROR)
  release()
  await app.close()
  t.same(span.events.map((event) => event.attributes?.['exception.message']), ['The application did not handle the run webhook in time'])
})

test('duplicates and an unavailable store', async (t) => {
  exporter.reset()
  const app = await receiver(t, { dedupe: true })
  app.langgraphWebhooks.onRun(() => {})
  const run = buildRunWebhook()
  await deliverRun(app, run, { token: TOKEN })
  await deliverRun(app, run, { token: TOKEN })
  t.same(ours().map((span) => span.attributes['langgraph.webhook.outcome']), ['delivered', 'duplicate'])

  exporter.reset()
  const broken: DedupeStore = {
    reserve: () => { throw new Error('store down') },
    complete: () => {},
    release: () => {}
  }
  const down = await receiver(t, { dedupe: { store: broken } })
  exporter.reset()
  t.equal((await deliverRun(down, buildRunWebhook(), { token: TOKEN })).statusCode, 503)
  const span = onlySpan(t)
  t.equal(span.attributes['langgraph.webhook.outcome'], 'store_unavailable')
  t.equal(span.status.code, SpanStatusCode.ERROR)
  t.equal(span.events.length, 1, 'the store error recorded')
})

test("a child of the request's span made by @fastify/otel", async (t) => {
  exporter.reset()
  const app = Fastify()
  await app.register(new FastifyOtelInstrumentation().plugin())
  await app.register(langgraphWebhooks, { token: TOKEN })
  t.teardown(() => app.close())
  app.langgraphWebhooks.onRun(() => {})
  t.equal((await deliverRun(app, buildRunWebhook(), { token: TOKEN })).statusCode, 204)
  const delivery = onlySpan(t)
  const request = exporter.getFinishedSpans().find((span) => span.name === 'request')
  t.ok(request, '@fastify/otel made its request span')
  t.equal(delivery.spanContext().traceId, request!.spanContext().traceId, 'one trace')
  t.equal(delivery.kind, SpanKind.INTERNAL, 'part of the request, not a second server span')
  // @fastify/otel may wrap the route's hooks in spans of their own, all under its request span.
  const byId = new Map(exporter.getFinishedSpans().map((span) => [span.spanContext().spanId, span]))
  let ancestor = byId.get(delivery.parentSpanContext?.spanId ?? '')
  while (ancestor !== undefined && ancestor !== request) ancestor = byId.get(ancestor.parentSpanContext?.spanId ?? '')
  t.equal(ancestor, request, "under @fastify/otel's request span")
  exporter.reset()
})

test('@fastify/otel records request.url, token included, unless its requestHook masks it', async (t) => {
  const everything = () => JSON.stringify(exporter.getFinishedSpans().map((span) => ({ name: span.name, attributes: span.attributes, events: span.events })))
  for (const masked of [false, true]) {
    exporter.reset()
    const app = Fastify()
    await app.register(new FastifyOtelInstrumentation(masked
      ? { requestHook: (span, request) => { span.setAttribute('url.path', maskTokenInUrl(request.url)) } }
      : {}).plugin())
    await app.register(langgraphWebhooks, { token: TOKEN })
    await deliverRun(app, buildRunWebhook(), { token: TOKEN })
    await app.close()
    const request = exporter.getFinishedSpans().find((span) => span.name === 'request')
    if (masked) {
      t.equal(request?.attributes['url.path'], `${PATH}?token=[REDACTED]`)
      t.notOk(everything().includes(TOKEN), 'masked by the requestHook: the token is in no exported span')
    } else {
      t.equal(request?.attributes['url.path'], `${PATH}?token=${TOKEN}`, "without it, @fastify/otel's own span holds the token")
      t.notOk(JSON.stringify(ours().map((span) => span.attributes)).includes(TOKEN), 'not ours')
    }
  }
  exporter.reset()
})

test("a caller's traceparent is the parent when no instrumentation made a span", async (t) => {
  exporter.reset()
  const app = await receiver(t)
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736'
  await app.inject({
    method: 'POST',
    url: `${PATH}?token=${TOKEN}`,
    headers: { 'content-type': 'application/json', traceparent: `00-${traceId}-00f067aa0ba902b7-01` },
    payload: JSON.stringify(buildRunWebhook())
  })
  const span = onlySpan(t)
  t.equal(span.spanContext().traceId, traceId)
  t.equal(span.parentSpanContext?.spanId, '00f067aa0ba902b7')
})

test('a delivery without a request (a reconciled run) has a span of its own', async (t) => {
  exporter.reset()
  const telemetry = createTelemetry()
  const run = buildRunWebhook({ status: 'interrupted' })
  let active: string | undefined
  const outcome = await traced(telemetry, async () => {
    active = trace.getActiveSpan()?.spanContext().spanId
    return 'delivered' as const
  })(run)
  t.equal(outcome, 'delivered')
  const span = onlySpan(t)
  t.equal(span.name, 'langgraph.run.deliver')
  t.equal(active, span.spanContext().spanId)
  t.match(span.attributes, { 'langgraph.run.id': run.run_id, 'langgraph.run.reconciled': true, 'langgraph.webhook.outcome': 'delivered' })
  t.notOk('http.response.status_code' in span.attributes)

  const failure = Object.assign(new Error('store down'), { code: 'FST_LANGGRAPH_WEBHOOKS_DEDUPE_UNAVAILABLE', statusCode: 503 })
  exporter.reset()
  await t.rejects(traced(telemetry, async () => { throw failure })(run), failure)
  const failed = onlySpan(t)
  t.equal(failed.attributes['langgraph.webhook.outcome'], 'store_unavailable')
  t.equal(failed.status.code, SpanStatusCode.ERROR)
  exporter.reset()
  await t.rejects(traced(telemetry, async () => { throw new Error('a bug') })(run))
  t.equal(onlySpan(t).attributes['langgraph.webhook.outcome'], 'error', 'an error without a code is an error')
  exporter.reset()
  const odd = Object.assign(new Error('odd'), { code: `E_${crypto.randomUUID()}` })
  await t.rejects(traced(telemetry, async () => { throw odd })(run))
  t.equal(onlySpan(t).attributes['error.type'], odd.code, 'the span has the code')
  const types = (await metric('langgraph.webhook.deliveries')).dataPoints.map((point) => point.attributes['error.type'])
  t.ok(types.includes('_OTHER') && !types.includes(odd.code), 'a metric has _OTHER for a code outside the known ones')
})

test('the steps on their own: partial runs, odd errors, listeners outside a delivery', async (t) => {
  freshMetrics()
  exporter.reset()
  const telemetry = createTelemetry()
  const { timed } = telemetry
  // As with a stripped body (the server's allowed_fields): no status, no end time.
  const partial = { ...buildRunWebhook(), run_ended_at: null, status: undefined } as unknown as RunWebhook
  await traced(telemetry, async () => 'delivered' as const)(partial)
  const span = onlySpan(t)
  t.notOk('langgraph.run.status' in span.attributes)
  t.same(counts(await metric('langgraph.webhook.deliveries')), { 'delivered/-': 1 })
  t.notOk((await collect()).some((data) => data.descriptor.name === 'langgraph.run.duration'), 'no run duration without run_ended_at')

  exporter.reset()
  const conflict = Object.assign(new Error('conflict'), { statusCode: 409 })
  await t.rejects(traced(telemetry, async () => { throw conflict })(buildRunWebhook()))
  t.equal(onlySpan(t).attributes['langgraph.webhook.outcome'], 'refused', 'another 4xx: refused')

  // Listeners of another source (a worker, say) that fail with one error, or a thrown string.
  exporter.reset()
  const listeners = (error: unknown) => timed({ dispatch: async () => { throw error } })
  const run = buildRunWebhook()
  await t.rejects(traced(telemetry, async () => { await listeners(new Error('plain')).dispatch(run, {} as RunContext); return 'delivered' as const })(run, false))
  await t.rejects(traced(telemetry, async () => { await listeners(new AggregateError(['a string'])).dispatch(run, {} as RunContext); return 'delivered' as const })(run, false))
  t.same(ours().map((one) => one.events.map((event) => event.attributes?.['exception.message'])), [['plain'], ['a string']])
  exporter.reset()
  await t.rejects(async () => { await listeners(new Error('outside')).dispatch(run, {} as RunContext) }, { message: 'outside' })
  t.same(ours(), [], 'outside a delivery: timed, no span')
  const durations = (await metric('langgraph.webhook.listener.duration')).dataPoints as Array<DataPoint<Histogram>>
  t.equal(durations.reduce((sum, point) => sum + point.value.count, 0), 3)
})

test('without an SDK nothing is added; with metrics alone, deliveries are counted', async (t) => {
  trace.disable()
  metrics.disable()
  t.teardown(() => { trace.setGlobalTracerProvider(tracerProvider) })
  const disabled = createTelemetry()
  t.equal(disabled.trace(undefined), undefined, 'no span for a delivery')
  let dispatched = 0
  await disabled.timed({ dispatch: async () => { dispatched++ } }).dispatch(buildRunWebhook(), {} as RunContext)
  t.equal(dispatched, 1, 'listeners run, untimed')
  let processed = 0
  await disabled.processing(async () => { processed++ })({ data: { run: buildRunWebhook(), reconciled: false }, attemptsStarted: 1 })
  t.equal(processed, 1, 'jobs are processed, untraced')
  t.equal(disabled.carrier(), undefined)
  disabled.observeQueue('q', async () => ({}))()

  freshMetrics()
  exporter.reset()
  const app = await receiver(t)
  let active: unknown = 'unset'
  app.langgraphWebhooks.onRun(() => { active = trace.getActiveSpan()?.isRecording() })
  t.equal((await deliverRun(app, buildRunWebhook(), { token: TOKEN })).statusCode, 204)
  t.equal(active, false, 'the span is the API no-op one')
  t.same(exporter.getFinishedSpans(), [])
  t.same(counts(await metric('langgraph.webhook.deliveries')), { 'delivered/success': 1 })
})

test('an SDK registered after the plugin still gets spans and metrics', async (t) => {
  trace.disable()
  metrics.disable()
  const app = await receiver(t)
  t.equal((await deliverRun(app, buildRunWebhook(), { token: TOKEN })).statusCode, 204)
  trace.setGlobalTracerProvider(tracerProvider)
  freshMetrics()
  exporter.reset()
  const run = buildRunWebhook()
  t.equal((await deliverRun(app, run, { token: TOKEN })).statusCode, 204)
  t.equal(onlySpan(t).attributes['langgraph.run.id'], run.run_id, 'the span of a delivery after the SDK started')
  t.same(counts(await metric('langgraph.webhook.deliveries')), { 'delivered/success': 1 }, 'and its count')
})

test('a queued run: its trace context carried in the job, the worker span linked to the delivery', async (t) => {
  freshMetrics()
  exporter.reset()
  const telemetry = createTelemetry()
  t.equal(telemetry.carrier(), undefined, 'no active span, nothing to carry')
  const run = buildRunWebhook({ status: 'error', error: 'boom' })
  let carried: Record<string, string> | undefined
  // The queue step runs inside the delivery's span, as the route's does.
  await traced(telemetry, async () => { carried = telemetry.carrier(); return 'queued' as const })(run, false)
  const delivery = onlySpan(t)
  t.same(Object.keys(carried ?? {}), ['traceparent'])
  t.notOk(JSON.stringify(carried).includes(TOKEN))

  let attempt = 0
  const listeners = telemetry.timed({
    dispatch: async () => {
      attempt++
      await tracer.startActiveSpan('listener work', async (span) => { span.end() })
      if (attempt === 1) throw new AggregateError([new Error('database down')], '1 listener failed')
    }
  })
  const processRun = telemetry.processing(async (job: TracedJob) => { await listeners.dispatch(job.data.run, {} as RunContext) })
  for (const attemptsStarted of [1, 2]) {
    exporter.reset()
    const job: TracedJob = { data: { run, reconciled: false, trace: carried }, attemptsStarted }
    if (attemptsStarted === 1) await t.rejects(processRun(job), { message: '1 listener failed' })
    else await processRun(job)
    const span = onlySpan(t)
    t.equal(span.name, 'langgraph.webhook.process')
    t.equal(span.kind, SpanKind.CONSUMER)
    t.equal(span.parentSpanContext, undefined, 'a trace of its own')
    t.same(span.links.map((link) => link.context.spanId), [delivery.spanContext().spanId], "linked to the delivery's span")
    t.match(span.attributes, { 'langgraph.run.id': run.run_id, 'langgraph.run.status': 'error', 'langgraph.run.attempt': attemptsStarted })
    const work = exporter.getFinishedSpans().find((one) => one.name === 'listener work')
    t.equal(work?.parentSpanContext?.spanId, span.spanContext().spanId, 'the listeners run inside it')
    if (attemptsStarted === 1) {
      t.equal(span.attributes['langgraph.webhook.outcome'], 'listener_failed')
      t.equal(span.status.code, SpanStatusCode.ERROR)
      t.same(span.events.map((event) => event.attributes?.['exception.message']), ['database down'], "the listener's error, once")
    } else {
      t.equal(span.attributes['langgraph.webhook.outcome'], 'delivered')
      t.equal(span.status.code, SpanStatusCode.UNSET)
    }
  }
  t.same(counts(await metric('langgraph.webhook.deliveries')), { 'queued/error': 1 }, 'counted once, when queued')
  const durations = (await metric('langgraph.webhook.listener.duration')).dataPoints as Array<DataPoint<Histogram>>
  t.equal(durations.reduce((sum, point) => sum + point.value.count, 0), 2, 'each attempt timed')

  // A processor that fails on its own (not through timed listeners), and a job without a trace context.
  exporter.reset()
  await t.rejects(telemetry.processing(async () => { throw new Error('worker bug') })({ data: { run, reconciled: true }, attemptsStarted: 1 }))
  const failed = onlySpan(t)
  t.same(failed.links, [])
  t.equal(failed.attributes['langgraph.run.reconciled'], true)
  t.same(failed.events.map((event) => event.attributes?.['exception.message']), ['worker bug'])
  exporter.reset()
  const notAnError: unknown = 'a string'
  await t.rejects(telemetry.processing(async () => { throw notAnError })({ data: { run, reconciled: false }, attemptsStarted: 3 }))
  t.same(onlySpan(t).events.map((event) => event.attributes?.['exception.message']), ['a string'])
})

test('queue gauges: jobs by state; no collection error while Redis is unreachable', async (t) => {
  freshMetrics()
  let reachable = true
  const stop = createTelemetry().observeQueue('runs', async () => {
    if (!reachable) throw new Error('connection is closed')
    return { waiting: 3, active: 1, delayed: 0, failed: 2, completed: 7 }
  })
  const gauge = await metric('langgraph.webhook.queue.jobs')
  t.equal(gauge.descriptor.unit, '{job}')
  t.same(Object.fromEntries(gauge.dataPoints.map((point) => [point.attributes['langgraph.webhook.queue.state'], point.value])),
    { waiting: 3, active: 1, delayed: 0, failed: 2, completed: 7 })
  t.ok(gauge.dataPoints.every((point) => point.attributes['messaging.destination.name'] === 'runs'), 'one series per queue')
  reachable = false
  t.same((await reader.collect()).errors, [], 'the failed count is not an export error')
  let calls = 0
  reachable = true
  const again = createTelemetry().observeQueue('other', async () => { calls++; return { waiting: 0 } })
  again()
  stop()
  await collect()
  t.equal(calls, 0, 'stopped: counts no longer asked for')
})

test('a sender that hangs up, or a socket that times out: the span still ends', async (t) => {
  exporter.reset()
  const app = Fastify({ connectionTimeout: 300 })
  await app.register(langgraphWebhooks, { token: TOKEN })
  t.teardown(() => app.close())
  let release!: () => void
  const gate = new Promise<void>((resolve) => { release = resolve })
  let started!: () => void
  const listenerStarted = new Promise<void>((resolve) => { started = resolve })
  app.langgraphWebhooks.onRun(async () => { started(); await gate })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as AddressInfo
  const head = (length: number) => `POST ${PATH}?token=${TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n\r\n`
  const ended = async (count: number) => { while (ours().length < count) await sleep(5) }

  // Hung up while the listener runs: the delivery goes on, and the span says what became of it.
  const body = JSON.stringify(buildRunWebhook())
  const hangUp = connect(port, '127.0.0.1', () => { hangUp.write(head(Buffer.byteLength(body)) + body) })
  await listenerStarted
  hangUp.destroy()
  await sleep(20)
  t.same(ours(), [], 'not ended while the listener runs')
  release()
  await ended(1)
  t.equal(ours()[0].attributes['langgraph.webhook.outcome'], 'delivered')
  t.ok(ours()[0].attributes['langgraph.run.id'])

  // Half a body, then silence until the socket times out: nothing was delivered.
  exporter.reset()
  const slow = connect(port, '127.0.0.1', () => { slow.write(head(Buffer.byteLength(body)) + body.slice(0, 10)) })
  await ended(1)
  slow.destroy()
  const span = ours()[0]
  t.equal(span.attributes['langgraph.webhook.outcome'], 'aborted')
  t.notOk('langgraph.run.id' in span.attributes)
})

test('metrics: deliveries by outcome and status, listener duration, lag, run duration', async (t) => {
  freshMetrics()
  const app = await receiver(t)
  app.langgraphWebhooks.onRun('error', () => { throw new Error('no') })
  app.langgraphWebhooks.onRun('success', async () => { await sleep(30) })
  const body = jsServerBody(TOKEN)
  body.webhook_sent_at = new Date(Date.now() - 2000).toISOString()
  for (const status of ['success', 'success', 'error', 'interrupted']) {
    await deliverRun(app, { ...body, status, run_id: crypto.randomUUID() }, { token: TOKEN })
  }
  await app.inject({ method: 'POST', url: PATH, payload: '{}' })

  t.same(counts(await metric('langgraph.webhook.deliveries')), { 'delivered/success': 2, 'listener_failed/error': 1, 'delivered/interrupted': 1, 'unauthorized/-': 1 })
  const deliveries = await metric('langgraph.webhook.deliveries')
  t.equal(deliveries.descriptor.unit, '{delivery}')
  for (const point of deliveries.dataPoints) {
    t.notOk('langgraph.run.id' in point.attributes, 'no run id on a metric')
  }

  const listenerDuration = await metric('langgraph.webhook.listener.duration')
  t.equal(listenerDuration.descriptor.unit, 's')
  const success = listenerDuration.dataPoints.find((point) => point.attributes['langgraph.run.status'] === 'success' && !('error.type' in point.attributes)) as DataPoint<Histogram>
  t.ok(success.value.count >= 2)
  t.ok(success.value.min! >= 0.025 && success.value.max! < 5, `in seconds: ${success.value.min}..${success.value.max}`)
  const failed = listenerDuration.dataPoints.find((point) => point.attributes['error.type'] === 'listener_failed')
  t.equal(failed?.attributes['langgraph.run.status'], 'error')

  const lag = (await metric('langgraph.webhook.delivery.lag')).dataPoints.find((point) => point.attributes['langgraph.run.status'] === 'interrupted') as DataPoint<Histogram>
  t.equal(lag.value.count, 1)
  t.ok(lag.value.min! >= 1.9 && lag.value.max! < 10, `lag of about 2 s: ${lag.value.min}`)

  const runDuration = await metric('langgraph.run.duration')
  t.equal(runDuration.descriptor.unit, 's')
  const interrupted = runDuration.dataPoints.find((point) => point.attributes['langgraph.run.status'] === 'interrupted') as DataPoint<Histogram>
  t.equal(interrupted.value.count, 1)
  t.ok(Math.abs(interrupted.value.sum! - 0.04) < 1e-9, 'run_ended_at − run_started_at: 40 ms')
  t.notOk(runDuration.dataPoints.some((point) => point.attributes['langgraph.run.status'] === 'error'), 'a failed delivery is not a run duration yet')
})

test('a status outside the known ones is counted as other: metric attributes stay bounded', async (t) => {
  freshMetrics()
  exporter.reset()
  const app = await receiver(t)
  // The schema admits any status, so that a future server's reach catch-all listeners.
  t.equal((await deliverRun(app, buildRunWebhook({ status: 'made-up' as 'success' }), { token: TOKEN })).statusCode, 204)
  t.equal(onlySpan(t).attributes['langgraph.run.status'], 'made-up', 'the span has the status as sent')
  t.same(counts(await metric('langgraph.webhook.deliveries')), { 'delivered/other': 1 })
})

test('the token is in no span, event, attribute or metric', async (t) => {
  exporter.reset()
  const app = await receiver(t, { dedupe: true })
  app.langgraphWebhooks.onRun('error', (run) => { throw new Error(`failed: ${String(run.kwargs?.webhook)}`) })
  const body = jsServerBody(TOKEN)
  const sent = [
    await deliverRun(app, body, { token: TOKEN }),
    await deliverRun(app, body, { token: TOKEN }),
    await deliverRun(app, { ...body, run_id: crypto.randomUUID(), status: 'error' }, { token: TOKEN }),
    await app.inject({ method: 'POST', url: PATH, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, payload: JSON.stringify({ ...body, run_id: 42 }) }),
    await app.inject({ method: 'POST', url: `${PATH}?token=${TOKEN}x`, headers: { 'content-type': 'application/json' }, payload: JSON.stringify(body) }),
    await app.inject({ method: 'POST', url: `${PATH}?token=${TOKEN}`, headers: { 'content-type': 'application/json' }, payload: `{"webhook":"?token=${TOKEN}",` })
  ]
  t.same(sent.map((res) => res.statusCode), [204, 204, 500, 400, 401, 400])
  const spans = exporter.getFinishedSpans()
  t.ok(spans.length >= 6)
  const exported = JSON.stringify(spans.map((span) => ({
    name: span.name,
    attributes: span.attributes,
    events: span.events,
    links: span.links,
    status: span.status,
    resource: span.resource.attributes
  })))
  t.ok(exported.includes('failed: http://127.0.0.1:9911/webhooks/langgraph?token=[REDACTED]'), 'the exported data holds the listener error, masked')
  t.notOk(exported.includes(TOKEN), 'no token in the spans')
  const collected = JSON.stringify(await reader.collect())
  t.ok(collected.includes('langgraph.webhook.deliveries'))
  t.notOk(collected.includes(TOKEN), 'no token in the metrics')
})
