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
