import { LruMap } from 'toad-cache'
import type { DedupeStore, ReserveResult } from './store.js'

interface Entry {
  handled: boolean
  until: number
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
    reserve (key: string, leaseMs: number): ReserveResult {
      const now = Date.now()
      const entry = entries.get(key)
      if (entry !== undefined && entry.until > now) return entry.handled ? 'done' : 'in-flight'
      entries.set(key, { handled: false, until: now + leaseMs })
      return 'reserved'
    },
    complete (key: string, keepMs: number): void {
      entries.set(key, { handled: true, until: Date.now() + keepMs })
    },
    release (key: string): void {
      entries.delete(key)
    }
  }
}
