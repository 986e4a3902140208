import { createRequire } from 'node:module'
import {
  context, createContextKey, metrics, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, ValueType,
  type Attributes, type Context, type Counter, type Histogram, type Link, type Meter, type MeterProvider, type ObservableCallback, type Span, type Tracer
} from '@opentelemetry/api'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { RunContext, RunListeners } from './listeners.js'
import { RUN_STATUSES, type RunWebhook } from './schemas.js'

const { name: NAME, version: VERSION } = createRequire(import.meta.url)('../package.json') as { name: string, version: string }

/** Span, metric and attribute names; docs/observability.md describes each. */
export const TELEMETRY_NAMES = {
  receiveSpan: 'langgraph.webhook.receive',
  deliverSpan: 'langgraph.run.deliver',
  processSpan: 'langgraph.webhook.process',
  deliveries: 'langgraph.webhook.deliveries',
  listenerDuration: 'langgraph.webhook.listener.duration',
  deliveryLag: 'langgraph.webhook.delivery.lag',
  runDuration: 'langgraph.run.duration',
  queueJobs: 'langgraph.webhook.queue.jobs'
} as const

const RUN_ID = 'langgraph.run.id'
const THREAD_ID = 'langgraph.thread.id'
const ASSISTANT_ID = 'langgraph.assistant.id'
const RUN_STATUS = 'langgraph.run.status'
const RECONCILED = 'langgraph.run.reconciled'
const ATTEMPT = 'langgraph.run.attempt'
const QUEUE_STATE = 'langgraph.webhook.queue.state'
const QUEUE_NAME = 'messaging.destination.name'
const OUTCOME = 'langgraph.webhook.outcome'
const ERROR_TYPE = 'error.type'
const HTTP_METHOD = 'http.request.method'
const HTTP_ROUTE = 'http.route'
const HTTP_STATUS = 'http.response.status_code'

// Seconds: from a fast listener to a run that took an hour.
const SHORT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 25]
const LONG_BUCKETS = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600]

/** What the sender was told, by error code; the status code decides for the others. */
const OUTCOME_OF_CODE: Readonly<Record<string, string>> = {
  FST_LANGGRAPH_WEBHOOKS_UNAUTHORIZED: 'unauthorized',
  FST_LANGGRAPH_WEBHOOKS_INVALID_RUN: 'invalid',
  FST_LANGGRAPH_WEBHOOKS_STALE_DELIVERY: 'stale',
  FST_LANGGRAPH_WEBHOOKS_UNSUPPORTED_ENCODING: 'unsupported',
  FST_LANGGRAPH_WEBHOOKS_UNSUPPORTED_MEDIA_TYPE: 'unsupported',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported',
  FST_LANGGRAPH_WEBHOOKS_METHOD_NOT_ALLOWED: 'method_not_allowed',
  FST_ERR_CTP_BODY_TOO_LARGE: 'too_large',
  FST_LANGGRAPH_WEBHOOKS_LISTENER_FAILED: 'listener_failed',
  FST_LANGGRAPH_WEBHOOKS_LISTENER_TIMEOUT: 'timed_out',
  FST_LANGGRAPH_WEBHOOKS_IN_FLIGHT: 'in_flight',
  FST_LANGGRAPH_WEBHOOKS_DEDUPE_UNAVAILABLE: 'store_unavailable',
  FST_LANGGRAPH_WEBHOOKS_QUEUE_UNAVAILABLE: 'queue_unavailable',
  FST_LANGGRAPH_WEBHOOKS_SHUTTING_DOWN: 'shutting_down'
}
const OUTCOME_OF_STATUS: Readonly<Record<number, string>> = {
  400: 'invalid',
  401: 'unauthorized',
  405: 'method_not_allowed',
  413: 'too_large',
  415: 'unsupported'
}

function outcomeOf (statusCode: number | undefined, code: string | undefined): string {
  if (code !== undefined && OUTCOME_OF_CODE[code] !== undefined) return OUTCOME_OF_CODE[code]
  // Neither a reply nor an error: the sender hung up first.
  if (statusCode === undefined) return 'aborted'
  return OUTCOME_OF_STATUS[statusCode] ?? (statusCode >= 500 ? 'error' : 'refused')
}

// A status outside the known ones is counted as `other`: metric attributes stay bounded.
const KNOWN_STATUSES: ReadonlySet<string> = new Set(RUN_STATUSES)
function boundedStatus (status: unknown): string | undefined {
  if (typeof status !== 'string') return undefined
  return KNOWN_STATUSES.has(status) ? status : 'other'
}

/** Seconds between two instants in milliseconds; a sender's clock ahead of ours counts as 0. */
function seconds (fromMs: number, toMs: number): number | undefined {
  const elapsed = (toMs - fromMs) / 1000
  return Number.isFinite(elapsed) ? Math.max(0, elapsed) : undefined
}

interface Instruments {
  deliveries: Counter
  listenerDuration: Histogram
  deliveryLag: Histogram
  runDuration: Histogram
}

function createInstruments (meter: Meter): Instruments {
  return {
    deliveries: meter.createCounter(TELEMETRY_NAMES.deliveries, {
      description: 'Requests to the webhook route, by outcome and run status',
      unit: '{delivery}',
      valueType: ValueType.INT
    }),
    listenerDuration: meter.createHistogram(TELEMETRY_NAMES.listenerDuration, {
      description: "How long a delivery's matching listeners took to settle (they run concurrently)",
      unit: 's',
      advice: { explicitBucketBoundaries: SHORT_BUCKETS }
    }),
    deliveryLag: meter.createHistogram(TELEMETRY_NAMES.deliveryLag, {
      description: 'From webhook_sent_at to the delivery reaching the plugin',
      unit: 's',
      advice: { explicitBucketBoundaries: SHORT_BUCKETS }
    }),
    runDuration: meter.createHistogram(TELEMETRY_NAMES.runDuration, {
      description: 'From run_started_at to run_ended_at of a delivered run',
      unit: 's',
      advice: { explicitBucketBoundaries: LONG_BUCKETS }
    })
  }
}

const DELIVERY_TRACE = createContextKey('fastify-langgraph-webhooks delivery')
const kTrace = Symbol('fastify-langgraph-webhooks trace')

interface TracedRequest extends FastifyRequest {
  [kTrace]: DeliveryTrace | null
}

/**
 * One delivery's span and what it learns on the way: run attributes once
 * the body is valid, the outcome or the error of the reply. It ends once
 * the reply went out and the work it waits for has settled (listeners that
 * go on after a 202), except after a listener timeout, when nothing waits
 * for them any more.
 */
export class DeliveryTrace {
  readonly span: Span
  readonly context: Context
  readonly #instruments: Instruments
  #status: string | undefined
  #outcome: string | undefined
  #code: string | undefined
  #error: unknown
  #errorStatusCode: number | undefined
  #statusCode: number | undefined
  #listenerError: unknown
  #pending = 0
  #replied = false
  #abandoned = false
  #ended = false
  /** A job's run was counted when the route queued it. */
  readonly #counted: boolean
  /** Ended by the delivery alone: no request replies for it. */
  readonly #own: boolean

  constructor (tracer: Tracer, instruments: Instruments, name: string, parent: Context, attributes: Attributes, kind: 'request' | 'own' | { links: Link[] }) {
    // Under an HTTP server span (instrumentation-http, @fastify/otel) this is
    // part of the request; without one, it is the server side of the request.
    const spanKind = typeof kind === 'object' ? SpanKind.CONSUMER : trace.getSpan(parent) === undefined ? SpanKind.SERVER : SpanKind.INTERNAL
    this.span = tracer.startSpan(name, { kind: spanKind, attributes, links: typeof kind === 'object' ? kind.links : undefined }, parent)
    this.context = trace.setSpan(parent, this.span).setValue(DELIVERY_TRACE, this)
    this.#instruments = instruments
    this.#counted = typeof kind !== 'object'
    this.#own = kind !== 'request'
  }

  /** The run's attributes, and its delivery lag. */
  run (run: RunWebhook<unknown>, reconciled: boolean): void {
    this.#status = boundedStatus(run.status)
    const lag = seconds(Date.parse(run.webhook_sent_at), Date.now())
    if (lag !== undefined) this.#instruments.deliveryLag.record(lag, { [RUN_STATUS]: this.#status })
    if (!this.span.isRecording()) return
    const attributes: Attributes = {
      [RUN_ID]: run.run_id,
      [THREAD_ID]: run.thread_id,
      [ASSISTANT_ID]: run.assistant_id,
      [RUN_STATUS]: run.status
    }
    if (reconciled) attributes[RECONCILED] = true
    this.span.setAttributes(attributes)
  }

  /** The delivery's outcome; a run handled (not a duplicate) records its duration. */
  delivered (outcome: string, run?: RunWebhook<unknown>): void {
    this.#outcome = outcome
    if (run === undefined || outcome === 'duplicate') return
    const duration = seconds(Date.parse(run.run_started_at as string), Date.parse(run.run_ended_at as string))
    if (duration !== undefined) this.#instruments.runDuration.record(duration, { [RUN_STATUS]: this.#status })
  }

  failed (error: unknown): void {
    // A request's error reaches both the delivery and the route's onError hook: recorded once.
    if (error === this.#error) return
    this.#error = error
    const { code, statusCode, message, cause } = error as Partial<FastifyError>
    this.#code = code
    this.#errorStatusCode = statusCode ?? 500
    if (this.#errorStatusCode < 500) return
    this.span.setStatus({ code: SpanStatusCode.ERROR, message })
    // The listeners' own errors were recorded as they failed.
    if (this.#listenerError !== undefined && (error === this.#listenerError || cause === this.#listenerError)) return
    this.span.recordException(error as Error)
  }

  /** A queued job's listeners failed (the queue retries it, or keeps it in the failed set). */
  jobFailed (error: unknown): void {
    this.#outcome = 'listener_failed'
    this.#code = 'FST_LANGGRAPH_WEBHOOKS_LISTENER_FAILED'
    this.#errorStatusCode = 500
    if (this.#listenerError !== undefined) return
    this.span.recordException(error instanceof Error ? error : String(error))
    this.span.setStatus({ code: SpanStatusCode.ERROR, message: 'run webhook listeners failed' })
  }

  listenersFailed (error: unknown): void {
    // After a timeout the span ended with the 503.
    if (this.#ended) return
    this.#listenerError = error
    const errors = error instanceof AggregateError ? error.errors : [error]
    for (const one of errors) {
      this.span.recordException(one instanceof Error ? one : String(one))
    }
    this.span.setStatus({ code: SpanStatusCode.ERROR, message: 'run webhook listeners failed' })
  }

  /** The span stays open until `work` settles (listeners going on after the reply). */
  wait (work: Promise<unknown>): void {
    this.#pending++
    const done = (): void => {
      this.#pending--
      this.#settle()
    }
    work.then(done, done)
  }

  /** The listeners timed out: the span ends with the reply, whatever they do later. */
  abandon (): void {
    this.#abandoned = true
  }

  /** A delivery began: the span stays open until it settles. */
  begin (): this {
    this.#pending++
    return this
  }

  /** The delivery settled; a span of its own has no reply to wait for. */
  settled (): void {
    this.#pending--
    if (this.#own) this.#replied = true
    this.#settle()
  }

  replied (statusCode: number | undefined): void {
    this.#statusCode = statusCode
    this.#replied = true
    this.#settle()
  }

  #settle (): void {
    if (this.#ended || !this.#replied || (this.#pending > 0 && !this.#abandoned)) return
    this.#ended = true
    const outcome = this.#outcome ?? outcomeOf(this.#statusCode ?? this.#errorStatusCode, this.#code)
    const attributes: Attributes = { [OUTCOME]: outcome }
    if (this.#statusCode !== undefined) attributes[HTTP_STATUS] = this.#statusCode
    if (this.#code !== undefined && this.#errorStatusCode! >= 500) attributes[ERROR_TYPE] = this.#code
    this.span.setAttributes(attributes)
    this.span.end()
    if (this.#status !== undefined) attributes[RUN_STATUS] = this.#status
    // OpenTelemetry's fallback for an error type outside a known set.
    if (attributes[ERROR_TYPE] !== undefined && OUTCOME_OF_CODE[this.#code!] === undefined) attributes[ERROR_TYPE] = '_OTHER'
    if (this.#counted) this.#instruments.deliveries.add(1, attributes)
  }
}

/** What telemetry reads of a queued job (a BullMQ job has these). */
export interface TracedJob {
  readonly data: {
    readonly run: RunWebhook<unknown>
    readonly reconciled: boolean
    /** The delivery's trace context (`carrier()` when the job was added). */
    readonly trace?: Record<string, string>
  }
  /** 1 on the first attempt. */
  readonly attemptsStarted: number
}

export interface Telemetry {
  /** Prepares the route's context: requests carry their span, and errors are recorded on it. */
  instrument (route: FastifyInstance): void
  /** Gives a request to the route its span; the route's first step, so that refused requests have one too. */
  start (request: FastifyRequest, reply: FastifyReply): void
  /** The delivery's trace: its request's, or one of its own (a reconciled run); none without an SDK. */
  trace (request: FastifyRequest | undefined): DeliveryTrace | undefined
  /** Runs `work` inside the trace's context, so that the listeners' spans are its children. */
  within<T> (trace: DeliveryTrace, work: () => Promise<T>): Promise<T>
  /** The listeners, timed; a failure is recorded on the delivery's span. */
  timed (listeners: Pick<RunListeners, 'dispatch'>): Pick<RunListeners, 'dispatch'>
  /** The active trace context as propagation headers, to store in a job; undefined when there is none. */
  carrier (): Record<string, string> | undefined
  /** A queue worker's processing of a job: a span linked to the delivery's, the listeners inside it. */
  processing<J extends TracedJob> (process: (job: J) => Promise<void>): (job: J) => Promise<void>
  /** Observable gauges of a queue's jobs by state (waiting, active, failed, ...); returns the function that stops them. */
  observeQueue<State extends string> (name: string, counts: () => Promise<Record<State, number>>): () => void
}

/** The no-op providers' class names, the same in every version of the API: no SDK is registered. */
const NOOP = /^Noop(Tracer|Meter)Provider$/

function registered (provider: object): boolean {
  // The trace API hands out a proxy; what it delegates to tells.
  const delegate = (provider as { getDelegate?: () => object }).getDelegate?.() ?? provider
  return !NOOP.test(delegate.constructor.name)
}

/**
 * Traces and metrics through `@opentelemetry/api`, looked up at each
 * delivery: an SDK registered after the plugin still gets them, and
 * without one the route gets nothing but that look-up.
 */
export function createTelemetry (): Telemetry {
  let meterProvider: MeterProvider | undefined
  let instruments: Instruments | undefined

  /** The instruments of the registered meter provider, or undefined without an SDK. */
  function current (): { tracer: Tracer, instruments: Instruments } | undefined {
    const tracing = registered(trace.getTracerProvider())
    const provider = metrics.getMeterProvider()
    if (!tracing && !registered(provider)) return undefined
    if (provider !== meterProvider) {
      meterProvider = provider
      instruments = createInstruments(provider.getMeter(NAME, VERSION))
    }
    return { tracer: trace.getTracer(NAME, VERSION), instruments: instruments! }
  }

  function start (request: FastifyRequest, reply: FastifyReply): void {
    const on = current()
    if (on === undefined) return
    let parent = context.active()
    // Without an instrumentation above us, a caller's traceparent still counts.
    if (trace.getSpan(parent) === undefined) parent = propagation.extract(parent, request.headers)
    const attributes = { [HTTP_METHOD]: request.method, [HTTP_ROUTE]: request.routeOptions.url }
    const traced = new DeliveryTrace(on.tracer, on.instruments, TELEMETRY_NAMES.receiveSpan, parent, attributes, 'request')
    ;(request as TracedRequest)[kTrace] = traced
    // Once, whatever happened: the reply sent, the sender gone, the socket timed out.
    reply.raw.once('close', () => { traced.replied(reply.raw.writableEnded ? reply.statusCode : undefined) })
  }

  function onError (request: FastifyRequest, _reply: FastifyReply, error: FastifyError, done: () => void): void {
    (request as TracedRequest)[kTrace]?.failed(error)
    done()
  }

  return {
    instrument (route) {
      route.decorateRequest(kTrace, null)
      route.addHook('onError', onError)
    },

    start,

    trace (request) {
      if (request !== undefined) return (request as TracedRequest)[kTrace]?.begin()
      const on = current()
      return on === undefined ? undefined : new DeliveryTrace(on.tracer, on.instruments, TELEMETRY_NAMES.deliverSpan, context.active(), {}, 'own').begin()
    },

    within (traced, work) {
      return context.with(traced.context, work)
    },

    timed (listeners) {
      async function timedDispatch (on: { instruments: Instruments }, run: RunWebhook<unknown>, runContext: RunContext): Promise<void> {
        const traced = context.active().getValue(DELIVERY_TRACE) as DeliveryTrace | undefined
        const started = performance.now()
        const attributes: Attributes = { [RUN_STATUS]: boundedStatus(run.status) }
        try {
          await listeners.dispatch(run, runContext)
        } catch (error) {
          attributes[ERROR_TYPE] = 'listener_failed'
          traced?.listenersFailed(error)
          throw error
        } finally {
          on.instruments.listenerDuration.record((performance.now() - started) / 1000, attributes)
        }
      }
      return {
        dispatch (run, runContext) {
          const on = current()
          return on === undefined ? listeners.dispatch(run, runContext) : timedDispatch(on, run, runContext)
        }
      }
    },

    carrier () {
      const carrier: Record<string, string> = {}
      propagation.inject(context.active(), carrier)
      return Object.keys(carrier).length === 0 ? undefined : carrier
    },

    processing: (process) => async function processing (job) {
      const on = current()
      if (on === undefined) return await process(job)
      const { run, reconciled, trace: carried } = job.data
      // Linked, not a child: the delivery's trace ended with its 202.
      const delivery = carried === undefined ? undefined : trace.getSpanContext(propagation.extract(ROOT_CONTEXT, carried))
      const links = delivery === undefined ? [] : [{ context: delivery }]
      const traced = new DeliveryTrace(on.tracer, on.instruments, TELEMETRY_NAMES.processSpan, context.active(), { [ATTEMPT]: job.attemptsStarted }, { links })
      traced.run(run, reconciled)
      try {
        await context.with(traced.context, process, undefined, job)
        traced.delivered('delivered')
      } catch (error) {
        traced.jobFailed(error)
        throw error
      } finally {
        traced.replied(undefined)
      }
    },

    observeQueue (name, counts) {
      const gauge = metrics.getMeter(NAME, VERSION).createObservableGauge(TELEMETRY_NAMES.queueJobs, {
        description: 'Jobs in the run webhook queue, by state',
        unit: '{job}',
        valueType: ValueType.INT
      })
      // One series per queue: two registrations with queues of their own do not collide.
      const observe: ObservableCallback = async (result) => {
        let current: Record<string, number>
        try {
          current = await counts()
        } catch {
          // Redis unreachable: no new observation (the 503s and the logs say why).
          return
        }
        for (const [state, count] of Object.entries(current)) result.observe(count, { [QUEUE_NAME]: name, [QUEUE_STATE]: state })
      }
      gauge.addCallback(observe)
      return () => { gauge.removeCallback(observe) }
    }
  }
}
