// The example application: Fastify with the plugin and one listener that prints a
// readable line per webhook. Used by `npm start` (examples/server.ts) and `npm run demo`.
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import langgraphWebhooks, { serializeRequest, type LanggraphOptions, type RunWebhook } from '../lib/index.js'

export interface BuildAppOptions {
  /** the shared secret the LangGraph server puts in the webhook URL (?token=) */
  token: string | string[]
  /** Fastify's logger option. Default false */
  logger?: FastifyServerOptions['logger']
  /** where the one-line summaries go. Default console.log */
  print?: (line: string) => void
  /** the LangGraph client and the public webhook URL, to start runs with app.langgraphWebhooks.runs */
  langgraph?: LanggraphOptions
}

/** `success  run 01a2…  46 ms  last message: "echo:1"` */
export function describeRun (run: RunWebhook): string {
  const started = run.run_started_at == null ? NaN : Date.parse(run.run_started_at)
  const ended = run.run_ended_at == null ? NaN : Date.parse(run.run_ended_at)
  const duration = Number.isNaN(started) || Number.isNaN(ended) ? '?' : String(ended - started)
  let detail: string
  if (run.error != null) {
    detail = 'error: ' + (typeof run.error === 'string' ? run.error : `${run.error.error}: ${run.error.message}`)
  } else {
    const messages = (run.values as { messages?: unknown[] } | null | undefined)?.messages
    detail = Array.isArray(messages) && messages.length > 0
      ? `last message: ${JSON.stringify(messages.at(-1))}`
      : '(no values)'
  }
  return `${run.status.padEnd(11)}  run ${run.run_id}  ${duration.padStart(5)} ms  ${detail}`
}

export async function buildApp ({ token, logger = false, print = console.log, langgraph }: BuildAppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    // mask the token in the URL of every request log, including paths outside the plugin
    logger: logger !== null && typeof logger === 'object'
      ? { ...logger, serializers: { req: serializeRequest, ...logger.serializers } }
      : logger
  })
  await app.register(langgraphWebhooks, { token, langgraph })
  app.langgraphWebhooks.onRun((run, { reconciled }) => {
    print(describeRun(run) + (reconciled ? '  (reconciled: fetched from the LangGraph server)' : ''))
  })
  return app
}
