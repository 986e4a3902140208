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
 * Where tracked runs live: in this process, or in Redis (shared by every
 * instance, and kept across restarts). Webhooks of one run may claim it
 * together (duplicates are dedupe's concern); a reconciliation only alone,
 * and only while the run is tracked. Either path's handled delivery ends the
 * tracking; a reconciled run refuses later webhooks for `RECONCILED_MS`.
 */
export interface RunTracker {
  /** Tracks a run; its first check is due at `dueAt`. False when a delivery of it was handled already. */
  track (run: TrackedRun, dueAt: number): Promise<boolean>
  /** `claimed`: deliver, then release or mark it handled; `refused`: the other path has it; `passed`: handled already, deliver untracked. */
  claim (runId: string, path: DeliveryPath, owner: string): Promise<'claimed' | 'refused' | 'passed'>
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

/** `leaseMs`: how long a check or a delivery may hold a run before another may take it (an instance died). */
export interface TrackerLimits { leaseMs: number, maxRuns?: number }

/** A run is tracked for at most this long after it started. */
export const MAX_TRACKED_MS = 24 * 60 * 60 * 1000
/** How long a reconciled run refuses its late webhook. */
export const RECONCILED_MS = 60 * 60 * 1000
/** How long a run handled by its webhook is not tracked again (its webhook may beat `runs.create`'s reply). */
export const HANDLED_MS = 60 * 1000

/** Tracked runs in this process, at most `maxRuns` (the oldest dropped first): lost with it, seen by no other instance. */
export function createMemoryRunTracker ({ leaseMs, maxRuns = 10_000 }: TrackerLimits, onDropped: (run: TrackedRun) => void): RunTracker {
  const runs = new Map<string, { run: TrackedRun, dueAt: number }>()
  // Webhooks in flight per run, or the owner of the reconciliation holding it.
  const claims = new Map<string, number | string>()
  // Runs handled lately, by either path: bounded in count and age.
  const handled = { webhook: new LruMap<true>(maxRuns, HANDLED_MS), reconcile: new LruMap<true>(maxRuns, RECONCILED_MS) }
  const untrack = (runId: string): void => {
    runs.delete(runId)
    claims.delete(runId)
  }
  const drop = (run: TrackedRun): void => {
    untrack(run.runId)
    onDropped(run)
  }

  return {
    async track (run, dueAt) {
      if (handled.webhook.get(run.runId) ?? handled.reconcile.get(run.runId)) return false
      runs.delete(run.runId)
      runs.set(run.runId, { run, dueAt })
      // A Map iterates in insertion order: the first run is the oldest.
      if (runs.size > maxRuns) drop(runs.values().next().value!.run)
      return true
    },
    async claim (runId, path, owner) {
      const claim = claims.get(runId)
      if (path === 'webhook') {
        if (handled.reconcile.get(runId) || typeof claim === 'string') return 'refused'
        if (handled.webhook.get(runId)) return 'passed'
        claims.set(runId, (claim ?? 0) + 1)
      } else {
        if (claim !== undefined || !runs.has(runId)) return 'refused'
        claims.set(runId, owner)
      }
      return 'claimed'
    },
    async release (runId, path, owner) {
      const claim = claims.get(runId)
      if (path === 'reconcile' ? claim === owner : claim === 1) claims.delete(runId)
      else if (path === 'webhook' && typeof claim === 'number') claims.set(runId, claim - 1)
    },
    async handled (runId, path) {
      untrack(runId)
      handled[path].set(runId, true)
    },
    async due (now, limit) {
      const due: TrackedRun[] = []
      for (const entry of runs.values()) {
        if (entry.run.createdAt + MAX_TRACKED_MS <= now) drop(entry.run)
        else if (entry.dueAt <= now) {
          entry.dueAt = now + leaseMs
          if (due.push({ ...entry.run }) === limit) break
        }
      }
      return due
    },
    async reschedule (run, dueAt) { if (runs.has(run.runId)) runs.set(run.runId, { run, dueAt }) },
    drop: async (runId) => untrack(runId)
  }
}
