/**
 * The benchmarked servers: one Fastify app per case, all on the same path,
 * all parsing the body with Fastify's own JSON parser (the JS server sends
 * `text/plain;charset=UTF-8`, so the reference and the hand-written route
 * register that parser too), all built with `logger: false`.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { pathToFileURL } from 'node:url'
import Fastify, { type FastifyInstance } from 'fastify'
import * as lib from '../lib/index.js'

// BENCH_LIB=<path of another build's index.ts> benchmarks that build of the
// plugin instead (bench/run.ts --lib), e.g. a checkout of an older commit.
const { default: langgraphWebhooks, RunWebhookSchema } = (process.env.BENCH_LIB === undefined
  ? lib
  : await import(pathToFileURL(process.env.BENCH_LIB).href)) as typeof lib

export const PATH = '/webhooks/langgraph'
/** A 32-byte hex token, as the README recommends. */
export const TOKEN = '0b1e0c7f5a3d49e2a8c6f4d2b0e8c6a4f2d0b8e6c4a2f0d8b6e4c2a0f8d6b4e2'
/** Same length, wrong. */
export const WRONG_TOKEN = TOKEN.replace(/^./, (c) => (c === 'f' ? 'e' : 'f'))

export type CaseName = 'a' | 'b' | 'c' | 'd' | 'e' | 'f'

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
  { name: 'f', label: 'hand-written route (Ajv + digest compare)', token: TOKEN, status: 204 }
]

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
    case 'c':
      await app.register(langgraphWebhooks, { token: TOKEN, onRun: listener, dedupe: true })
      break
    case 'd':
      await app.register(langgraphWebhooks, { token: TOKEN, onRun: listener, ack: 'received' })
      break
    case 'f': {
      // (f) What one would write by hand: Fastify's own validation (Ajv) of
      // RunWebhookSchema, and a SHA-256 digest compare in onRequest.
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
      }, (request, reply) => {
        listener(request.body)
        reply.code(204).send()
      })
      break
    }
  }
  return app
}
