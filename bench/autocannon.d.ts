// The little of autocannon's API the benchmark uses (autocannon ships no types).
declare module 'autocannon' {
  import type { EventEmitter } from 'node:events'

  interface Request {
    method?: string
    path?: string
    headers?: Record<string, string>
    body?: string | Buffer
    setupRequest?: (request: Request, context: Record<string, unknown>) => Request
  }

  interface Options {
    url: string
    method?: string
    connections?: number
    duration?: number
    sampleInt?: number
    headers?: Record<string, string>
    body?: string | Buffer
    requests?: Request[]
  }

  interface Result {
    /** Seconds. */
    duration: number
    errors: number
    timeouts: number
    non2xx: number
  }

  type Instance = EventEmitter & PromiseLike<Result>

  function autocannon (options: Options): Instance
  export default autocannon
}
