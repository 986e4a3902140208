import type { Redis } from 'ioredis'
import type { Ioredis } from './load.js'
import type { QueueConnectionSpec } from '../options.js'
import { withTimeout } from '../timeout.js'

function noop (): void {}

/**
 * The Redis clients of one queue: the user's client (which stays theirs),
 * or clients made from the given options (closed with `close`).
 */
export class QueueConnection {
  /** The client that stores jobs and reads the sets; shared by the Queue. */
  readonly client: Redis
  readonly #owned: Redis[] = []
  /** The clients BullMQ's workers made for themselves: they close them, unless Redis stopped answering. */
  readonly #borrowed: Redis[] = []

  constructor (spec: QueueConnectionSpec, ioredis: Ioredis | undefined) {
    if ('client' in spec) {
      this.client = spec.client as unknown as Redis
    } else {
      this.client = this.#own(newClient(ioredis!, spec.options))
    }
  }

  #own (client: Redis): Redis {
    client.on('error', noop) // reported by the queue and the worker, which listen too
    this.#owned.push(client)
    return client
  }

  /**
   * A client that never connects itself, for BullMQ's Worker to duplicate:
   * blocking commands need `maxRetriesPerRequest: null`, and a worker must
   * not block the client that stores jobs.
   */
  workerTemplate (): Redis {
    const template = this.#own(this.client.duplicate({ maxRetriesPerRequest: null, lazyConnect: true }))
    const duplicate = template.duplicate.bind(template)
    template.duplicate = (...args: Parameters<Redis['duplicate']>) => this.#borrow(duplicate(...args))
    return template
  }

  #borrow (client: Redis): Redis {
    this.#borrowed.push(client)
    return client
  }

  /** Whether the clients of the workers are connected: closing them gracefully waits for Redis, which a lost connection never ends. */
  workersConnected (): boolean {
    return this.#borrowed.every((client) => client.status === 'ready')
  }

  /**
   * A new client to the queue's Redis (for pub/sub, say), closed with the
   * queue. Connects on first use.
   */
  duplicate (): Redis {
    return this.#own(this.client.duplicate({ lazyConnect: true }))
  }

  /**
   * Closes the clients made here; the user's client stays open. `answering`
   * false (Redis did not let a worker close) drops them without a QUIT.
   */
  async close (answering = true): Promise<void> {
    // A worker that closed has ended its clients already; one that could not
    // waits for their end, which a stalled Redis never sends: end them here.
    for (const client of this.#borrowed.splice(0)) {
      client.disconnect()
      client.stream?.destroy()
    }
    await Promise.all(this.#owned.splice(0).map(async (client) => {
      // QUIT lets replies in flight arrive; a client that is not connected
      // (never used, or Redis down) is just dropped, without waiting.
      if (client.status !== 'ready' || !answering) return client.disconnect()
      await withTimeout(client.quit(), 1000, () => new Error('QUIT took longer than 1000 ms')).catch(noop)
      client.disconnect()
    }))
  }
}

function newClient (ioredis: Ioredis, options: Record<string, unknown> | string): Redis {
  const Redis = ioredis.Redis
  return typeof options === 'string' ? new Redis(options) : new Redis(options)
}
