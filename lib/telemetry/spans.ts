import { createContextKey, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Link, type Span, type Tracer } from '@opentelemetry/api'
import type { FastifyError } from 'fastify'
import type { RunWebhook } from '../schemas.js'
import { boundedStatus, OUTCOME_OF_CODE, outcomeOf, seconds, STATUS, type Instruments } from './metrics.js'

const DELIVERY_TRACE = createContextKey('fastify-langgraph-webhooks delivery')

/** The delivery whose context is active, if any: listeners record their failure on it. */
export function activeTrace (active: Context): DeliveryTrace | undefined {
  return active.getValue(DELIVERY_TRACE) as DeliveryTrace | undefined
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
  /** A request's (replied to), one of its own (a reconciled run), or a job's (its run counted when the route queued it). */
  readonly #kind: 'request' | 'own' | 'job'
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

  constructor (tracer: Tracer, instruments: Instruments, name: string, parent: Context, attributes: Attributes, kind: 'request' | 'own' | { links: Link[] }) {
    // Under an HTTP server span (instrumentation-http, @fastify/otel) this is
    // part of the request; without one, it is the server side of the request.
    const job = typeof kind === 'object'
    const spanKind = job ? SpanKind.CONSUMER : trace.getSpan(parent) === undefined ? SpanKind.SERVER : SpanKind.INTERNAL
    this.span = tracer.startSpan(name, { kind: spanKind, attributes, links: job ? kind.links : undefined }, parent)
    this.context = trace.setSpan(parent, this.span).setValue(DELIVERY_TRACE, this)
    this.#instruments = instruments
    this.#kind = job ? 'job' : kind
  }

  /** The run's attributes, and its delivery lag. */
  run (run: RunWebhook<unknown>, reconciled: boolean): void {
    this.#status = boundedStatus(run.status)
    const lag = seconds(Date.parse(run.webhook_sent_at), Date.now())
    if (lag !== undefined) this.#instruments.deliveryLag.record(lag, { [STATUS]: this.#status })
    this.span.setAttributes({ 'langgraph.run.id': run.run_id, 'langgraph.thread.id': run.thread_id, 'langgraph.assistant.id': run.assistant_id, [STATUS]: run.status })
    if (reconciled) this.span.setAttribute('langgraph.run.reconciled', true)
  }

  /** The delivery's outcome; a run handled (not a duplicate) records its duration. */
  delivered (outcome: string, run?: RunWebhook<unknown>): void {
    this.#outcome = outcome
    if (run === undefined || outcome === 'duplicate') return
    const duration = seconds(Date.parse(run.run_started_at as string), Date.parse(run.run_ended_at as string))
    if (duration !== undefined) this.#instruments.runDuration.record(duration, { [STATUS]: this.#status })
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
    if (this.#listenerError === undefined || (error !== this.#listenerError && cause !== this.#listenerError)) this.span.recordException(error as Error)
  }

  /** A queued job's listeners failed (the queue retries it, or keeps it in the failed set). */
  jobFailed (error: unknown): void {
    this.#outcome = 'listener_failed'
    this.#code = 'FST_LANGGRAPH_WEBHOOKS_LISTENER_FAILED'
    this.#errorStatusCode = 500
    if (this.#listenerError === undefined) this.#recordFailure([error])
  }

  listenersFailed (error: unknown): void {
    // After a timeout the span ended with the 503.
    if (this.#ended) return
    this.#listenerError = error
    this.#recordFailure(error instanceof AggregateError ? error.errors : [error])
  }

  #recordFailure (errors: unknown[]): void {
    for (const one of errors) this.span.recordException(one instanceof Error ? one : String(one))
    this.span.setStatus({ code: SpanStatusCode.ERROR, message: 'run webhook listeners failed' })
  }

  /** The span stays open until `work` settles (listeners going on after the reply). */
  wait (work: Promise<unknown>): void {
    this.#pending++
    work.then(() => { this.settled() }, () => { this.settled() })
  }

  /** The listeners timed out: the span ends with the reply, whatever they do later. */
  abandon (): void { this.#abandoned = true }

  /** A delivery began: the span stays open until it settles. */
  begin (): this {
    this.#pending++
    return this
  }

  /** The delivery settled; a span of its own has no reply to wait for. */
  settled (): void {
    this.#pending--
    if (this.#kind !== 'request') this.#replied = true
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
    const attributes: Attributes = { 'langgraph.webhook.outcome': this.#outcome ?? outcomeOf(this.#statusCode ?? this.#errorStatusCode, this.#code) }
    if (this.#statusCode !== undefined) attributes['http.response.status_code'] = this.#statusCode
    if (this.#code !== undefined && this.#errorStatusCode! >= 500) attributes['error.type'] = this.#code
    this.span.setAttributes(attributes)
    this.span.end()
    if (this.#status !== undefined) attributes[STATUS] = this.#status
    // OpenTelemetry's fallback for an error type outside a known set.
    if (attributes['error.type'] !== undefined && !OUTCOME_OF_CODE.has(this.#code)) attributes['error.type'] = '_OTHER'
    if (this.#kind !== 'job') this.#instruments.deliveries.add(1, attributes)
  }
}
