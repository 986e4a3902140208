import { LruMap } from 'toad-cache'

/** A run started through the plugin, waiting for a handled delivery. */
export interface TrackedRun {
  runId: string
  threadId: string
  /** A stateless run: its temporary thread has no state to fetch (and is deleted with it). */
  stateless: boolean
  /** When it was started, in ms since the epoch. */
  createdAt: number
  /** Checks in a row that could not fetch or deliver it. */
  failures: number
}

/** Which path brings a delivery: a webhook request, or the reconciliation loop. */
export type DeliveryPath = 'webhook' | 'reconcile'

/**
 * - `claimed`: this delivery may reach the listeners; release or mark it handled after.
 * - `refused`: the other path has the run (in flight or done): acknowledge it as a duplicate.
 * - `passed`: a webhook of a run whose delivery was handled already: deliver it untracked.
 */
export type Claim = 'claimed' | 'refused' | 'passed'

/**
 * Where tracked runs live: in this process, or in Redis (shared by every
 * instance, and kept across restarts). Webhooks of one run may claim it
 * together (duplicates are dedupe's concern); a reconciliation only alone,
 * and only while the run is tracked. Either path's handled delivery ends the
 * tracking; a reconciled run refuses later webhooks for `RECONCILED_MS`.
 */
export interface RunTracker {
  /** Tracks a run; its first check is due at `dueAt`. False when a delivery of it was handled already. */
  track (run: TrackedRun, dueAt: number): Promise<boolean>
  claim (runId: string, path: DeliveryPath, owner: string): Promise<Claim>
  /** The claimed delivery failed: the run is tracked as before. */
  release (runId: string, path: DeliveryPath, owner: string): Promise<void>
  /** The claimed delivery was handled: tracking ends. */
  handled (runId: string, path: DeliveryPath): Promise<void>
  /** Up to `limit` runs due for a check, each put off by the lease so that no other check takes it meanwhile. */
  due (now: number, limit: number): Promise<TrackedRun[]>
  /** Checks the run again at `dueAt`, if it is still tracked. */
  reschedule (run: TrackedRun, dueAt: number): Promise<void>
  /** Stops tracking a run that cannot be reconciled. */
  drop (runId: string): Promise<void>
}

export interface TrackerLimits {
  /** How long a check or a delivery may hold a run before another may take it (an instance died). */
  leaseMs: number
  /** The most runs tracked at once in memory (the oldest is dropped first). */
  maxRuns?: number
}

/** A run is tracked for at most this long after it started. */
export const MAX_TRACKED_MS = 24 * 60 * 60 * 1000
/** How long a reconciled run refuses its late webhook. */
export const RECONCILED_MS = 60 * 60 * 1000
/** How long a run handled by its webhook is not tracked again (its webhook may beat `runs.create`'s reply). */
export const HANDLED_MS = 60 * 1000
export const DEFAULT_MAX_RUNS = 10_000

interface Entry {
  run: TrackedRun
  dueAt: number
}

/** Tracked runs in this process: lost with it, seen by no other instance. */
export function createMemoryRunTracker ({ leaseMs, maxRuns = DEFAULT_MAX_RUNS }: TrackerLimits, onDropped: (run: TrackedRun) => void): RunTracker {
  const runs = new Map<string, Entry>()
  // Webhooks in flight per run, or the owner of the reconciliation holding it.
  const claims = new Map<string, number | string>()
  // Runs handled lately, by either path: bounded in count and age.
  const handledByWebhook = new LruMap<true>(maxRuns, HANDLED_MS)
  const reconciled = new LruMap<true>(maxRuns, RECONCILED_MS)
  const handled = (runs: LruMap<true>, runId: string): boolean => runs.get(runId) === true

  function untrack (runId: string): void {
    runs.delete(runId)
    claims.delete(runId)
  }

  return {
    async track (run, dueAt) {
      if (handled(handledByWebhook, run.runId) || handled(reconciled, run.runId)) return false
      runs.delete(run.runId)
      runs.set(run.runId, { run, dueAt })
      if (runs.size > maxRuns) {
        const [oldestId, oldest] = runs.entries().next().value!
        untrack(oldestId)
        onDropped(oldest.run)
      }
      return true
    },

    async claim (runId, path, owner) {
      const claim = claims.get(runId)
      if (path === 'webhook') {
        if (handled(reconciled, runId) || typeof claim === 'string') return 'refused'
        if (handled(handledByWebhook, runId)) return 'passed'
        claims.set(runId, (claim ?? 0) + 1)
        return 'claimed'
      }
      if (claim !== undefined || !runs.has(runId)) return 'refused'
      claims.set(runId, owner)
      return 'claimed'
    },

    async release (runId, path, owner) {
      const claim = claims.get(runId)
      if (path === 'reconcile') {
        if (claim === owner) claims.delete(runId)
      } else if (typeof claim === 'number') {
        if (claim > 1) claims.set(runId, claim - 1)
        else claims.delete(runId)
      }
    },

    async handled (runId, path) {
      untrack(runId)
      const handledBy = path === 'webhook' ? handledByWebhook : reconciled
      handledBy.set(runId, true)
    },

    async due (now, limit) {
      const due: TrackedRun[] = []
      for (const [runId, entry] of runs) {
        if (entry.run.createdAt + MAX_TRACKED_MS <= now) {
          untrack(runId)
          onDropped(entry.run)
          continue
        }
        if (entry.dueAt > now) continue
        entry.dueAt = now + leaseMs
        due.push({ ...entry.run })
        if (due.length === limit) break
      }
      return due
    },

    async reschedule (run, dueAt) {
      const entry = runs.get(run.runId)
      if (entry === undefined) return
      entry.run = run
      entry.dueAt = dueAt
    },

    async drop (runId) {
      untrack(runId)
    }
  }
}
