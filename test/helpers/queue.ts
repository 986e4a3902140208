import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import plugin, { type LanggraphWebhooksOptions, type QueueOptions } from '../../lib/index.js'
import type { RedisServer } from './redis-server.js'
import { logSink } from './log.js'

export const token = 'q'.repeat(32)

function noop (): void {}

/** An ioredis client as an application would make one, reconnecting quickly for the tests. */
export async function connect (test: Test, server: RedisServer): Promise<Redis> {
  const client = new Redis(server.port, '127.0.0.1', { retryStrategy: () => 50 })
  client.on('error', noop) // connection errors while Redis is stopped
  test.teardown(() => client.disconnect())
  await client.ping()
  return client
}

/** A queue name of its own for each test: BullMQ refuses ':'. */
export function queueName (): string {
  return `q-${randomUUID()}`
}

export interface Instance {
  app: FastifyInstance
  client: Redis
  lines: Array<Record<string, any>>
}

/** One web (and, unless worker: false, worker) instance, with its own client to the shared Redis. */
export async function instance (
  test: Test,
  server: RedisServer,
  queue: Omit<QueueOptions, 'connection'> & { connection?: QueueOptions['connection'] },
  options: Partial<LanggraphWebhooksOptions> = {}
): Promise<Instance> {
  const client = await connect(test, server)
  const { lines, logger } = logSink('info')
  const app = Fastify({ logger })
  await app.register(plugin, { token, queue: { connection: client, ...queue }, ...options })
  test.teardown(() => app.close())
  return { app, client, lines }
}

export async function until (condition: () => boolean | Promise<boolean>, timeoutMs = 30_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what} not reached in ${timeoutMs} ms`)
    await sleep(10)
  }
}

/**
 * The node arguments of a spawned fixture: this process's own loader (tap's
 * TypeScript loader under tap, tsx under tsx), so that TypeScript fixtures
 * run, and their coverage maps onto the same sources.
 */
export function nodeArgs (...args: string[]): string[] {
  const loader = process.execArgv.length > 0 ? process.execArgv : ['--import', 'tsx']
  return [...loader, ...args]
}
