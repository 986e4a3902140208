import { LruMap } from 'toad-cache'

/**
 * What a dedupe store answers when a delivery asks to handle a key:
 * - `reserved`: this delivery holds the key and runs the listeners;
 * - `done`: a delivery with this key was handled already;
 * - `in-flight`: another delivery holds the key right now.
 */
export type ReserveResult = 'reserved' | 'done' | 'in-flight'

/**
 * A store shared by every instance that receives the same webhooks.
 * Methods may be synchronous or return promises; a throw or a rejection
 * means the store is unavailable, and the delivery is answered 503 so the
 * sender retries (listeners never run unguarded).
 */
export interface DedupeStore {
  /**
   * Atomically reserve `key` for `leaseMs` (a crashed holder's lease expires).
   * `owner` is unique to this delivery: the plugin passes the same one to
   * `release`, so that a holder whose lease expired cannot drop a newer
   * holder's reservation. Optional: a store may ignore it.
   */
  reserve(key: string, leaseMs: number, owner?: string): ReserveResult | Promise<ReserveResult>
  /** Mark `key` handled for `ttlMs`: duplicates within it are acknowledged without running listeners. */
  complete(key: string, ttlMs: number): void | Promise<void>
  /**
   * Drop the reservation of a delivery whose listeners failed, so that a
   * retry runs them again. Must not drop a `done` mark, nor a reservation
   * held by another `owner`.
   */
  release(key: string, owner?: string): void | Promise<void>
}

export interface MemoryDedupeStoreOptions {
  /** The most keys kept; the least recently used go first. Default 10 000. */
  maxKeys?: number
  /** How long a handled key is kept at most. Default 1 hour. */
  ttlMs?: number
}

/**
 * A dedupe store in this process's memory, bounded in size and age: right
 * for one instance. Several instances behind a load balancer need a shared
 * store (see `fastify-langgraph-webhooks/redis`).
 */
export function createMemoryDedupeStore ({ maxKeys = 10_000, ttlMs = 60 * 60 * 1000 }: MemoryDedupeStoreOptions = {}): DedupeStore {
  // `owner`: the delivery holding an in-flight entry.
  const entries = new LruMap<{ handled: boolean, until: number, owner?: string }>(maxKeys, ttlMs)
  return {
    reserve (key: string, leaseMs: number, owner?: string): ReserveResult {
      const now = Date.now()
      const entry = entries.get(key)
      if (entry !== undefined && entry.until > now) return entry.handled ? 'done' : 'in-flight'
      entries.set(key, { handled: false, until: now + leaseMs, owner })
      return 'reserved'
    },
    complete (key: string, keepMs: number): void {
      entries.set(key, { handled: true, until: Date.now() + keepMs })
    },
    release (key: string, owner?: string): void {
      // Only the holder's own lease: never a 'done' mark, nor the lease of a
      // delivery that took over after this one's lease expired.
      const entry = entries.get(key)
      if (entry !== undefined && !entry.handled && entry.owner === owner) entries.delete(key)
    }
  }
}
