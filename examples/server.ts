// `npm start`: the example app alone. Configure the printed URL as the `webhook` of
// your LangGraph runs.
//
//   LANGGRAPH_WEBHOOK_TOKEN=<secret> PORT=3000 HOST=127.0.0.1 npm start [-- --show-token]
import { randomBytes } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { buildApp } from './app.js'
import { maskTokenInUrl } from '../lib/index.js'

const showToken = process.argv.includes('--show-token')
const port = Number(process.env.PORT ?? 3000)
const host = process.env.HOST ?? '127.0.0.1'
const fromEnv = process.env.LANGGRAPH_WEBHOOK_TOKEN
const token = fromEnv !== undefined && fromEnv !== '' ? fromEnv : randomBytes(32).toString('hex')

const app = await buildApp({ token, logger: { level: process.env.LOG_LEVEL ?? 'info' } })
await app.listen({ port, host })

const publicHost = host === '0.0.0.0' || host === '::' ? 'localhost' : host
const { port: listening } = app.server.address() as AddressInfo
const url = `http://${publicHost}:${listening}${app.langgraphWebhooks.path}?token=${encodeURIComponent(token)}`
console.log(`webhook URL: ${showToken ? url : maskTokenInUrl(url)}`)
if (!showToken) {
  console.log(fromEnv
    ? '(token from LANGGRAPH_WEBHOOK_TOKEN; pass --show-token to print it)'
    : '(a random token was generated; set LANGGRAPH_WEBHOOK_TOKEN, or pass --show-token to print it)')
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    app.close().then(() => process.exit(0), () => process.exit(1))
  })
}
