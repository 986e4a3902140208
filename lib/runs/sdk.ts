// The parts of @langchain/langgraph-sdk's `Client` the plugin calls, declared
// structurally: the SDK is an optional peer, and a TypeScript user without it
// must still compile against these declarations. Its `Client` fits them.

/** A run as `client.runs.create` and `client.runs.get` return it (the SDK's `Run`). */
export interface LanggraphRun {
  run_id: string
  thread_id: string
  assistant_id: string
  created_at: string
  updated_at: string
  status: string
  metadata?: Record<string, unknown> | null
  multitask_strategy?: string | null
}

/** A chunk of `client.runs.stream`; the first is `{ event: 'metadata', data: { run_id } }`. */
export interface LanggraphStreamChunk {
  id?: string
  event: string
  data: any
}

/**
 * The SDK's `RunsCreatePayload` / `RunsStreamPayload` (input, config,
 * context, metadata, streamMode, multitaskStrategy, ...) without `webhook`,
 * which the plugin sets.
 */
export type RunPayload = Record<string, unknown> & { webhook?: never }

/** The SDK's `Client`, as far as the plugin uses it. */
export interface LanggraphClient {
  runs: {
    create (threadId: string | null, assistantId: string, payload?: any): Promise<LanggraphRun>
    stream (threadId: any, assistantId: string, payload?: any): AsyncIterable<LanggraphStreamChunk>
    get (threadId: string, runId: string, options?: any): Promise<LanggraphRun>
    /** Optional: clients declared before `runs.createBatch` was wrapped still fit. */
    createBatch? (payloads: any[], options?: any): Promise<LanggraphRun[]>
  }
  threads: {
    getState (threadId: string, checkpoint?: any, options?: any): Promise<{ values: unknown, tasks?: ReadonlyArray<{ error?: unknown }> }>
  }
}
