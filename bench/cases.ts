/**
 * The benchmarked servers: one Fastify app per case, all on the same path,
 * all parsing the body with Fastify's own JSON parser (the JS server sends
 * `text/plain;charset=UTF-8`, so the reference and the hand-written route
 * register that parser too), all built with `logger: false`.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { pathToFileURL } from 'node:url'
import Fastify, { type FastifyInstance, type RouteHandlerMethod } from 'fastify'
import * as lib from '../lib/index.js'

// BENCH_LIB=<path of another build's index.ts> benchmarks that build of the
// plugin instead (bench/run.ts --lib), e.g. a checkout of an older commit.
const { default: langgraphWebhooks, RunWebhookSchema } = (process.env.BENCH_LIB === undefined
  ? lib
  : await import(pathToFileURL(process.env.BENCH_LIB).href)) as typeof lib

export const PATH = '/webhooks/langgraph'
/** The length and alphabet of a 32-byte hex token, as the README recommends, plainly not a real one. */
export const TOKEN = '0123456789abcdef'.repeat(4)
/** Same length, wrong. */
export const WRONG_TOKEN = TOKEN.replace(/^./, (c) => (c === 'f' ? 'e' : 'f'))

export type CaseName = 'a' | 'b' | 'c' | 'd' | 'e' | 'f' | 'g' | 'h' | 'p'

export interface BenchCase {
  readonly name: CaseName
  readonly label: string
  /** The token the load generator sends. */
  readonly token: string
  /** The only status code a request of this case may get. */
  readonly status: number
}

export const CASES: readonly BenchCase[] = [
  { name: 'a', label: 'bare Fastify route (reference)', token: TOKEN, status: 204 },
  { name: 'b', label: 'plugin', token: TOKEN, status: 204 },
  { name: 'c', label: 'plugin + in-memory dedupe', token: TOKEN, status: 204 },
  { name: 'd', label: "plugin, ack: 'received'", token: TOKEN, status: 202 },
  { name: 'e', label: 'plugin, wrong token (401)', token: WRONG_TOKEN, status: 401 },
  { name: 'f', label: 'hand-written route (Ajv + digest compare)', token: TOKEN, status: 204 },
  { name: 'g', label: 'plugin, queue (BullMQ job, worker elsewhere)', token: TOKEN, status: 202 },
  { name: 'h', label: 'hand-written route calling BullMQ queue.add', token: TOKEN, status: 202 },
  { name: 'p', label: 'plugin, the --baseline build (as (b))', token: TOKEN, status: 204 }
]

/** The cases that need Redis (bench/run.ts starts a redis-server and passes REDIS_URL). */
export const REDIS_CASES: readonly CaseName[] = ['g', 'h']

/** The one listener of the plugin cases, and what the hand-written route calls. */
let received = 0
function listener (run: unknown): void {
  if (run !== undefined) received++
}
export function receivedCount (): number {
  return received
}

function parseTextAsJson (app: FastifyInstance): void {
  app.addContentTypeParser('text/plain', { parseAs: 'string' }, app.getDefaultJsonParser('error', 'error'))
}

function redisUrl (): string {
  const url = process.env.REDIS_URL
  if (url === undefined) throw new Error('cases g and h need REDIS_URL (bench/run.ts starts a redis-server)')
  return url
}

/** What one would write by hand: Fastify's own validation (Ajv) of RunWebhookSchema, and a SHA-256 digest compare in onRequest. */
function handWritten (app: FastifyInstance, handler: RouteHandlerMethod): void {
  parseTextAsJson(app)
  const expected = createHash('sha256').update(TOKEN).digest()
  app.post(PATH, {
    schema: { body: RunWebhookSchema },
    onRequest (request, reply, done) {
      const token = (request.query as { token?: unknown }).token
      const ok = typeof token === 'string' && timingSafeEqual(createHash('sha256').update(token).digest(), expected)
      if (!ok) {
        reply.code(401).send({ message: 'Unauthorized' })
        return
      }
      done()
    }
  }, handler)
}

export async function buildApp (name: CaseName): Promise<FastifyInstance> {
  const app = Fastify({ logger: false })
  switch (name) {
    case 'a':
      // (a) The reference: parse the same JSON, reply 204.
      parseTextAsJson(app)
      app.post(PATH, (request, reply) => {
        reply.code(204).send()
      })
      break
    case 'b':
    case 'e':
      // (b) token check, full schema validation, one no-op listener; (e) the same, sent a wrong token.
      await app.register(langgraphWebhooks, { token: TOKEN, onRun: listener })
      break
    case 'p': {
      // (p) (b) with another build of the plugin (bench/run.ts --baseline), measured in the same rounds.
      const baseline = (await import(pathToFileURL(process.env.BENCH_BASELINE!).href)) as typeof lib
      await app.register(baseline.default, { token: TOKEN, onRun: listener })
      break
    }
    case 'c':
      await app.register(langgraphWebhooks, { token: TOKEN, onRun: listener, dedupe: true })
      break
    case 'd':
      await app.register(langgraphWebhooks, { token: TOKEN, onRun: listener, ack: 'received' })
      break
    case 'f':
      // (f) What one would write by hand: Fastify's own validation (Ajv) of
      // RunWebhookSchema, and a SHA-256 digest compare in onRequest.
      handWritten(app, (request, reply) => {
        listener(request.body)
        reply.code(204).send()
      })
      break
    case 'g':
      // (g) The queued route: each run stored as a BullMQ job; no worker in this process.
      await app.register(langgraphWebhooks, { token: TOKEN, queue: { connection: redisUrl(), name: 'bench-g', worker: false } })
      break
    case 'h': {
      // (h) (f), storing the run with BullMQ's queue.add itself, keyed and kept as the plugin does.
      const { Queue } = await import('bullmq')
      const { Redis } = await import('ioredis')
      const client = new Redis(redisUrl())
      const queue = new Queue('bench-h', {
        connection: client,
        defaultJobOptions: { attempts: 10, backoff: { type: 'exponential', delay: 1000 }, removeOnComplete: { age: 3600 }, removeOnFail: { age: 604800 } }
      })
      app.addHook('onClose', async () => {
        await queue.close()
        await client.quit()
      })
      handWritten(app, async (request, reply) => {
        const run = request.body as { run_id: string, status: string }
        await queue.add(run.status, { run, reconciled: false }, { jobId: `${run.run_id}.${run.status}` })
        reply.code(202).send()
      })
      break
    }
  }
  return app
}
