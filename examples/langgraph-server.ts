// Starts the real LangGraph JS server (@langchain/langgraph-api) in this process,
// with the echo graph of ./graph.ts, for the demo and the end-to-end tests (test/e2e/).
//
//   const lg = await startLangGraphServer({ nWorkers: 4 })
//   await lg.client.runs.wait(null, lg.graphId, { input, webhook })
//   await lg.close()
//
// close() flushes and closes the server, parks its worker loops (they are endless
// `while (true)` loops with timers, which would otherwise keep the process alive),
// removes the temp dir it ran in, and removes the process-wide `uncaughtException`
// / `unhandledRejection` loggers that the server installs when it is first imported.
import { mkdtemp, rm } from 'node:fs/promises'
import { setTimeout as delay } from 'node:timers/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { createRequire } from 'node:module'
import { fileURLToPath, pathToFileURL } from 'node:url'
import type { Client as SdkClient } from '@langchain/langgraph-sdk'

export const GRAPH_ID = 'echo'
export const GRAPH_FILE = fileURLToPath(new URL('./graph.ts', import.meta.url))

export interface LangGraphServerOptions {
  /** worker loops; each deliberately failing webhook delivery kills one. Default 4 */
  nWorkers?: number
  /**
   * level of the server's own winston logger ('error', 'info', ...), or 'silent'.
   * Default: LOG_LEVEL from the environment, else 'silent'
   */
  logLevel?: string
}

export interface LangGraphServer {
  /** e.g. http://127.0.0.1:40123 */
  url: string
  client: SdkClient
  graphId: string
  /** the temp dir the server runs in (it writes .langgraph_api/ there) */
  cwd: string
  close: () => Promise<void>
}

type ProcessEvent = 'uncaughtException' | 'unhandledRejection'
type Listener = (...args: any[]) => void
const EVENTS: ProcessEvent[] = ['uncaughtException', 'unhandledRejection']

const require = createRequire(import.meta.url)
// The SDK is loaded through its CommonJS build: under tap's TypeScript loader (ts-node/esm)
// its ESM build fails with ERR_REQUIRE_CYCLE_MODULE, because ts-node marks the p-retry copy
// that the SDK bundles in dist/node_modules (no package.json of its own) as CommonJS.
const { Client } = require('@langchain/langgraph-sdk') as typeof import('@langchain/langgraph-sdk')
// The package exports only `./server`; its storage and logger modules are reached by
// file URL, which gives the same module instances that server.mjs itself uses.
const distDir = dirname(require.resolve('@langchain/langgraph-api/server'))
const distModule = (file: string) => import(pathToFileURL(join(distDir, file)).href)

// process.listeners/on/removeListener, loosely typed for a union of event names
const listenersOf = (event: ProcessEvent) => process.listeners(event as 'uncaughtException') as Listener[]
const addListener = (event: ProcessEvent, l: Listener) => process.on(event as 'uncaughtException', l)
const removeListener = (event: ProcessEvent, l: Listener) => process.removeListener(event as 'uncaughtException', l)

// the process listeners the server module added when it was imported (once per process)
let serverListeners: Map<ProcessEvent, Listener[]> | undefined

async function loadServer () {
  const before = new Map(EVENTS.map((e) => [e, new Set(listenersOf(e))]))
  const server = await import('@langchain/langgraph-api/server')
  const [logging, ops, persist] = await Promise.all([
    distModule('logging.mjs'),
    distModule('storage/ops.mjs').catch(() => undefined),
    distModule('storage/persist.mjs').catch(() => undefined)
  ])
  if (serverListeners === undefined) {
    serverListeners = new Map(EVENTS.map((e) => [
      e, listenersOf(e).filter((l) => !before.get(e)!.has(l))
    ]))
  } else {
    // a previous close() removed them; put them back while a server runs
    for (const [event, listeners] of serverListeners) {
      for (const l of listeners) {
        if (!listenersOf(event).includes(l)) addListener(event, l)
      }
    }
  }
  return { server, logger: logging.logger, ops, persist }
}

function removeServerListeners () {
  for (const [event, listeners] of serverListeners ?? []) {
    for (const l of listeners) removeListener(event, l)
  }
}

export async function startLangGraphServer (options: LangGraphServerOptions = {}): Promise<LangGraphServer> {
  const { nWorkers = 4, logLevel = process.env.LOG_LEVEL ?? 'silent' } = options
  const { server, logger, ops: opsModule, persist } = await loadServer()
  if (logLevel === 'silent') {
    logger.silent = true
  } else {
    logger.silent = false
    logger.level = logLevel
  }

  const cwd = await mkdtemp(join(tmpdir(), 'langgraph-e2e-'))

  // Our own copy of the default storage, so that close() can park the worker loops.
  let closed = false
  let storage: { ops: any } | undefined
  let flushOps = async () => {}
  let stopActiveRuns = async () => {}
  if (opsModule?.FileSystemOps && persist?.FileSystemPersistence) {
    const conn = new persist.FileSystemPersistence('.langgraphjs_ops.json', () => ({
      runs: {}, threads: {}, assistants: {}, assistant_versions: [], retry_counter: {}
    }))
    await conn.initialize(cwd)
    const ops = new opsModule.FileSystemOps(conn)
    const next = ops.runs.next.bind(ops.runs)
    const active = new Set<string>() // runs a worker is executing
    ops.runs.next = async function * () {
      // a promise that never settles holds no handle: the parked loop lets the process exit
      if (closed) await new Promise(() => {})
      for await (const item of next()) {
        active.add(item.run.run_id)
        try {
          yield item // resumed once the worker is done with the run (webhook sent)
        } finally {
          active.delete(item.run.run_id)
        }
      }
    }
    storage = { ops }
    flushOps = () => conn.flush()
    // A run still executing at close (a test that failed half-way) would otherwise keep
    // its timers, write into the removed temp dir and call its webhook later.
    stopActiveRuns = async () => {
      if (active.size > 0) {
        await ops.runs.cancel(undefined, [...active], { action: 'interrupt' }).catch(() => {})
        const deadline = Date.now() + 5000
        while (active.size > 0 && Date.now() < deadline) await delay(10)
      }
      // let a failed webhook call surface while the server's loggers are still attached
      await delay(20)
    }
  }

  let started: { host: string, cleanup: () => Promise<void> }
  try {
    started = await server.startServer({
      port: 0,
      host: '127.0.0.1',
      nWorkers,
      cwd,
      graphs: { [GRAPH_ID]: `${GRAPH_FILE}:graph` }
    }, storage as any)
  } catch (err) {
    closed = true
    removeServerListeners()
    await rm(cwd, { recursive: true, force: true })
    throw err
  }

  const url = `http://${started.host}`
  let closing: Promise<void> | undefined
  return {
    url,
    client: new Client({ apiUrl: url }),
    graphId: GRAPH_ID,
    cwd,
    close () {
      closing ??= (async () => {
        closed = true
        try {
          await stopActiveRuns()
          await started.cleanup()
          await flushOps()
        } finally {
          removeServerListeners()
          await rm(cwd, { recursive: true, force: true })
        }
      })()
      return closing
    }
  }
}

/**
 * Polls the LangGraph API until a run is running. A run cancelled while still pending
 * gets no webhook at all, so cancel only after this resolves.
 */
export async function waitUntilRunning (client: SdkClient, threadId: string, runId: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const { status } = await client.runs.get(threadId, runId)
    if (status === 'running') return
    if (status !== 'pending') throw new Error(`run ${runId} is ${status}, expected it running`)
    if (Date.now() > deadline) throw new Error(`run ${runId} still pending after ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}
