// `npm run example:telemetry`: the plugin under an OpenTelemetry SDK that
// prints to the console. Three deliveries (a delivered run, a failing
// listener, a wrong token), then their spans and the metrics.
//
// In an application, start the SDK in a file of its own, loaded first:
// `node --import ./instrumentation.mjs app.js`.
import { randomBytes } from 'node:crypto'
import { context, metrics, trace } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { BasicTracerProvider, ConsoleSpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import { ConsoleMetricExporter, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics'
import Fastify from 'fastify'
import langgraphWebhooks from '../lib/index.js'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'

// 1. The SDK, before the plugin is registered: the plugin takes its tracer and meter then.
const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(new ConsoleSpanExporter())] })
const meterProvider = new MeterProvider({
  readers: [new PeriodicExportingMetricReader({ exporter: new ConsoleMetricExporter(), exportIntervalMillis: 60_000 })]
})
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
trace.setGlobalTracerProvider(tracerProvider)
metrics.setGlobalMeterProvider(meterProvider)

// 2. The application.
const token = randomBytes(32).toString('hex')
const app = Fastify()
await app.register(langgraphWebhooks, { token })
const tracer = trace.getTracer('example-app')
app.langgraphWebhooks.onRun('success', async (run) => {
  // A listener's spans are children of the delivery's span.
  await tracer.startActiveSpan('save final state', async (span) => {
    span.setAttribute('langgraph.run.id', run.run_id)
    await new Promise((resolve) => setTimeout(resolve, 15))
    span.end()
  })
})
app.langgraphWebhooks.onRun('error', (run) => {
  throw new Error(`could not alert about run ${run.run_id}`)
})

// 3. Deliveries, as a LangGraph server sends them.
const replies = [
  await deliverRun(app, buildRunWebhook({ status: 'success' }), { token }),
  await deliverRun(app, buildRunWebhook({ status: 'error', error: 'ValueError: node failed' }), { token }),
  await deliverRun(app, buildRunWebhook(), { token: 'not-the-token' })
]
console.log(`replies: ${replies.map((reply) => reply.statusCode).join(', ')} (204 delivered, 500 listener failed, 401 unauthorized)`)

// 4. Shutting down flushes the metrics to the console.
await app.close()
await tracerProvider.shutdown()
await meterProvider.shutdown()
