/**
 * Settles as `operation` does, or rejects with `timedOut()` after
 * `timeoutMs`, whichever comes first: Redis calls fail fast rather than
 * hang a delivery. The timer never outlives the operation.
 */
export function withTimeout<T> (operation: Promise<T>, timeoutMs: number, timedOut: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    // After the I/O of this turn of the event loop: a reply that arrived while the process was busy still counts.
    const timer = setTimeout(() => setImmediate(() => reject(timedOut())), timeoutMs)
    operation.then((value) => {
      clearTimeout(timer)
      resolve(value)
    }, (error: unknown) => {
      clearTimeout(timer)
      reject(error)
    })
  })
}
