// `npm run demo`: the example app starts runs on a real LangGraph server
// (@langchain/langgraph-api, in this process, with the echo graph of ./graph.ts)
// and receives their webhooks. Four runs: one succeeds, one fails, one is
// cancelled while running, and one whose webhook is answered 503 (as while the
// receiver deploys: the JS server never sends it again) is recovered by
// reconciliation.
import { randomBytes } from 'node:crypto'
import { buildApp } from './app.js'
import { maskTokenInUrl } from '../lib/index.js'
import { demoQueuedPath } from './demo-queue.js'
import { startLangGraphServer, waitUntilRunning } from './langgraph-server.js'
import { freePort } from './redis-server.js'

const TIMEOUT_MS = 20_000
const token = randomBytes(32).toString('hex')

// 1. The LangGraph server, quiet unless LOG_LEVEL is set.
const lg = await startLangGraphServer({ nWorkers: 3 })
const { client, graphId } = lg
console.log(`LangGraph server at ${lg.url}, graph '${graphId}'`)

let exitCode = 0
// 2. The receiver, listening before any run starts (the server's webhook call throws when nothing listens).
const port = await freePort()
const app = await buildApp({
  token,
  logger: { level: 'error' },
  langgraph: {
    client,
    webhookUrl: `http://127.0.0.1:${port}/webhooks/langgraph`,
    // A run without a handled delivery a second after it started is fetched from the server.
    reconcileAfterMs: 1000,
    reconcileEveryMs: 500
  }
})
// The receiver is "deploying" for one run: its webhook gets 503, and is not sent again.
let deploying: string | undefined
app.addHook('preHandler', async (request, reply) => {
  if (deploying !== undefined && (request.body as { run_id?: string } | undefined)?.run_id === deploying) {
    deploying = undefined
    return reply.code(503).send()
  }
})
try {
  await app.listen({ port, host: '127.0.0.1' })
  console.log(`receiver listening, webhook URL ${maskTokenInUrl(app.langgraphWebhooks.webhookUrl)}`)

  // 3. Four runs, on four threads so that they run side by side, started through the plugin (webhook set, tracked).
  const [ok, failing, slow, lost] = await Promise.all([1, 2, 3, 4].map(() => client.threads.create()))
  const { runs } = app.langgraphWebhooks
  const started = await Promise.all([
    runs.create(ok.thread_id, graphId, { input: { messages: ['hello'] } }),
    runs.create(failing.thread_id, graphId, { input: { messages: ['fail:the node threw'] } }),
    runs.create(slow.thread_id, graphId, { input: { messages: ['sleep:30000'] } }),
    runs.create(lost.thread_id, graphId, { input: { messages: ['sleep:200'] } }).then((run) => {
      deploying = run.run_id
      return run
    })
  ])
  console.log('started 4 runs: one succeeds, one fails, one is cancelled while running, one\'s webhook gets 503\n')
  await waitUntilRunning(client, slow.thread_id, started[2].run_id)
  await client.runs.cancel(slow.thread_id, started[2].run_id, false, 'interrupt')

  // 4. Wait for the four deliveries (three webhooks, one reconciliation), then for their listeners (close waits for them).
  await Promise.all(started.map((run) => app.langgraphWebhooks.waitForRun(run.run_id, { timeoutMs: TIMEOUT_MS })))
  await app.close()
  console.log(`\nall ${started.length} runs delivered`)

  // 5. The queued path, when redis-server is on the PATH.
  await demoQueuedPath(lg, token, TIMEOUT_MS)
} catch (err) {
  console.error(err)
  exitCode = 1
} finally {
  await app.close()
  await lg.close()
}
process.exitCode = exitCode
