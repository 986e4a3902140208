// `npm run demo`: the example app receives the webhooks of a real LangGraph server
// (@langchain/langgraph-api, in this process, with the echo graph of ./graph.ts).
// Three runs: one succeeds, one fails, one is cancelled while running.
import { randomBytes } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { buildApp } from './app.js'
import { maskTokenInUrl, type RunWebhook } from '../lib/index.js'
import { startLangGraphServer, waitUntilRunning, type LangGraphServer } from './langgraph-server.js'

const TIMEOUT_MS = 20_000
const token = randomBytes(32).toString('hex')

// 1. The receiver first: the LangGraph server's webhook call throws when nothing listens.
const app = await buildApp({ token, logger: { level: 'warn' } })
const received = new Map<string, RunWebhook>()
const waiting = new Map<string, () => void>()
app.langgraphWebhooks.onRun((run) => {
  received.set(run.run_id, run)
  waiting.get(run.run_id)?.()
})
function delivered (runId: string): Promise<void> {
  if (received.has(runId)) return Promise.resolve()
  return new Promise((resolve) => waiting.set(runId, resolve))
}

await app.listen({ port: 0, host: '127.0.0.1' })
const { port } = app.server.address() as AddressInfo
const webhook = `http://127.0.0.1:${port}${app.langgraphWebhooks.path}?token=${token}`
console.log(`receiver listening, webhook URL ${maskTokenInUrl(webhook)}`)

let lg: LangGraphServer | undefined
let timer: NodeJS.Timeout | undefined
let exitCode = 0
try {
  // 2. The LangGraph server, quiet unless LOG_LEVEL is set.
  lg = await startLangGraphServer({ nWorkers: 3 })
  const { client, graphId } = lg
  console.log(`LangGraph server at ${lg.url}, graph '${graphId}'`)

  // 3. Three runs, on three threads so that they run side by side.
  const [ok, failing, slow] = await Promise.all([1, 2, 3].map(() => client.threads.create()))
  const runs = await Promise.all([
    client.runs.create(ok.thread_id, graphId, { input: { messages: ['hello'] }, webhook }),
    client.runs.create(failing.thread_id, graphId, { input: { messages: ['fail:the node threw'] }, webhook }),
    client.runs.create(slow.thread_id, graphId, { input: { messages: ['sleep:30000'] }, webhook })
  ])
  console.log('created 3 runs: one succeeds, one fails, one is cancelled while running\n')
  await waitUntilRunning(client, slow.thread_id, runs[2].run_id)
  await client.runs.cancel(slow.thread_id, runs[2].run_id, false, 'interrupt')

  // 4. Wait for the three webhooks.
  await Promise.race([
    Promise.all(runs.map((run) => delivered(run.run_id))),
    new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${TIMEOUT_MS} ms: ${received.size} of 3 webhooks received`)), TIMEOUT_MS)
    })
  ])
  console.log(`\nall ${runs.length} webhooks received`)
} catch (err) {
  console.error(err)
  exitCode = 1
} finally {
  clearTimeout(timer)
  await lg?.close()
  await app.close()
}
process.exitCode = exitCode
