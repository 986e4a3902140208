// Telemetry through `@opentelemetry/api`, looked up at each delivery: an SDK
// registered after the plugin still gets it, and without one the route pays
// that look-up only. Spans in telemetry/spans.ts, metrics in telemetry/metrics.ts;
// here the binding, the route's hooks and the propagation to queued jobs.
import { createRequire } from 'node:module'
import { context, metrics, propagation, ROOT_CONTEXT, trace, type Attributes, type MeterProvider, type Tracer } from '@opentelemetry/api'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { RunListeners } from './listeners.js'
import type { RunWebhook } from './schemas.js'
import { boundedStatus, countDeadLetter, createInstruments, observeQueue, STATUS, TELEMETRY_NAMES, type Instruments } from './telemetry/metrics.js'
import { activeTrace, DeliveryTrace } from './telemetry/spans.js'

export { TELEMETRY_NAMES }
export type { DeliveryTrace }

const { name: NAME, version: VERSION } = createRequire(import.meta.url)('../package.json') as { name: string, version: string }
const kTrace = Symbol('fastify-langgraph-webhooks trace')

/** What telemetry reads of a queued job (a BullMQ job has these): its run, its trace context (`carrier()` when added), its attempt (1 the first). */
export interface TracedJob {
  readonly data: { readonly run: RunWebhook<unknown>, readonly reconciled: boolean, readonly trace?: Record<string, string> }
  readonly attemptsStarted: number
}

type Dispatch = Pick<RunListeners, 'dispatch'>
export type Telemetry = ReturnType<typeof createTelemetry>

/** The no-op providers' class names, the same in every version of the API: no SDK is registered. */
const NOOP = /^Noop(Tracer|Meter)Provider$/

// The trace API hands out a proxy; what it delegates to tells. Remembered per provider: the check runs at every delivery.
const checked = new WeakMap<object, boolean>()
function registered (provider: object): boolean {
  const delegate = (provider as { getDelegate?: () => object }).getDelegate?.() ?? provider
  let sdk = checked.get(delegate)
  if (sdk === undefined) checked.set(delegate, sdk = !NOOP.test(delegate.constructor.name))
  return sdk
}
const traceOf = (request: FastifyRequest): DeliveryTrace | null | undefined => (request as { [kTrace]?: DeliveryTrace | null })[kTrace]

export function createTelemetry () {
  let meterProvider: MeterProvider | undefined
  let instruments: Instruments | undefined

  /** The tracer and the registered meter provider's instruments, or undefined without an SDK. */
  function current (): { tracer: Tracer, instruments: Instruments } | undefined {
    const provider = metrics.getMeterProvider()
    if (!registered(trace.getTracerProvider()) && !registered(provider)) return undefined
    if (provider !== meterProvider) {
      meterProvider = provider
      instruments = createInstruments(provider.getMeter(NAME, VERSION))
    }
    return { tracer: trace.getTracer(NAME, VERSION), instruments: instruments! }
  }

  /** A delivery's trace in the active context; none without an SDK. */
  function open (name: string, attributes: Attributes, kind: ConstructorParameters<typeof DeliveryTrace>[5]): DeliveryTrace | undefined {
    const on = current()
    return on === undefined ? undefined : new DeliveryTrace(on.tracer, on.instruments, name, context.active(), attributes, kind)
  }

  async function timedDispatch (listeners: Dispatch, instruments: Instruments, ...args: Parameters<Dispatch['dispatch']>): Promise<void> {
    const started = performance.now()
    const attributes: Attributes = { [STATUS]: boundedStatus(args[0].status) }
    try {
      await listeners.dispatch(...args)
    } catch (error) {
      attributes['error.type'] = 'listener_failed'
      activeTrace(context.active())?.listenersFailed(error)
      throw error
    } finally {
      instruments.listenerDuration.record((performance.now() - started) / 1000, attributes)
    }
  }

  return {
    /** Prepares the route's context: requests carry their span, and errors are recorded on it. */
    instrument (route: FastifyInstance): void {
      route.decorateRequest(kTrace, null)
      route.addHook('onError', async (request, _reply, error) => { traceOf(request)?.failed(error) })
    },

    /** Gives a request to the route its span; the route's first step, so that refused requests have one too. */
    start (request: FastifyRequest, reply: FastifyReply): void {
      // Nothing is allocated without an SDK: the route's cost then is this look-up.
      const on = current()
      if (on === undefined) return
      let parent = context.active()
      // Without an instrumentation above us, a caller's traceparent still counts.
      if (trace.getSpan(parent) === undefined) parent = propagation.extract(parent, request.headers)
      const traced = new DeliveryTrace(on.tracer, on.instruments, TELEMETRY_NAMES.receiveSpan, parent, { 'http.request.method': request.method, 'http.route': request.routeOptions.url }, 'request')
      ;(request as { [kTrace]?: DeliveryTrace })[kTrace] = traced
      // Once, whatever happened: the reply sent, the sender gone, the socket timed out.
      reply.raw.once('close', () => { traced.replied(reply.raw.writableEnded ? reply.statusCode : undefined) })
    },

    /** The delivery's trace: its request's, or one of its own (a reconciled run); none without an SDK. */
    trace: (request: FastifyRequest | undefined): DeliveryTrace | undefined => request !== undefined
      ? traceOf(request)?.begin()
      : open(TELEMETRY_NAMES.deliverSpan, {}, 'own')?.begin(),

    /** Runs `work` inside the trace's context, so that the listeners' spans are its children. */
    within: <T>(traced: DeliveryTrace, work: () => Promise<T>): Promise<T> => context.with(traced.context, work),

    /** The listeners, timed; a failure is recorded on the delivery's span. */
    timed: (listeners: Dispatch): Dispatch => ({
      dispatch (run, runContext) {
        const on = current()
        return on === undefined ? listeners.dispatch(run, runContext) : timedDispatch(listeners, on.instruments, run, runContext)
      }
    }),

    /** The active trace context as propagation headers, to store in a job; undefined when there is none. */
    carrier (): Record<string, string> | undefined {
      const carrier: Record<string, string> = {}
      propagation.inject(context.active(), carrier)
      return Object.keys(carrier).length === 0 ? undefined : carrier
    },

    /** A queue worker's processing of a job: a span linked to the delivery's (whose trace ended with its 202), the listeners inside it. */
    processing: <J extends TracedJob>(process: (job: J) => Promise<void>) => async function processing (job: J): Promise<void> {
      const carried = job.data.trace === undefined ? undefined : trace.getSpanContext(propagation.extract(ROOT_CONTEXT, job.data.trace))
      const traced = open(TELEMETRY_NAMES.processSpan, { 'langgraph.run.attempt': job.attemptsStarted }, { links: carried === undefined ? [] : [{ context: carried }] })
      if (traced === undefined) return await process(job)
      traced.run(job.data.run, job.data.reconciled)
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

    /** Observable gauges of a queue's jobs by state (waiting, active, failed, ...); returns the function that stops them. */
    observeQueue: <State extends string>(name: string, counts: () => Promise<Record<State, number>>): () => void =>
      observeQueue(metrics.getMeter(NAME, VERSION), name, counts),

    /** Counts a run of the queue `name` that exhausted its attempts. */
    deadLetter: (name: string, status: unknown): void => countDeadLetter(metrics.getMeter(NAME, VERSION), name, status)
  }
}
