import { LruMap } from 'toad-cache'
import type { DedupeStore, ReserveResult } from './store.js'

interface Entry {
  handled: boolean
  until: number
  /** The delivery holding an in-flight entry. */
  owner?: string
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
  const entries = new LruMap<Entry>(maxKeys, ttlMs)
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
