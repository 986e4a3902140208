#!/usr/bin/env node
// `fastify-langgraph-webhooks send <url>`: posts a sample run webhook as a LangGraph server sends it, to try an endpoint from the shell.
import { realpathSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { buildRunWebhook } from './testing.js'

const HELP = `Usage: fastify-langgraph-webhooks send <url> [options]

Posts a run webhook to <url> as a LangGraph server sends it, and prints the
reply: its status, and the code and message of an error body.

Options:
  --status <status>      the sample run's status (default: success); error adds an error
  --sender js|python     the server to imitate (default: js)
                           js:     content-type text/plain;charset=UTF-8, the token in ?token=
                           python: content-type application/json, the token in the header
                                   --token-header names, or in ?token= if none is named
  --token <token>        the webhook token (default: $LANGGRAPH_WEBHOOK_TOKEN, else the
                         token=… already in <url>); never printed
  --token-header <name>  with --sender python: the header that carries the token, as
                         langgraph.json's webhooks.headers sends it (authorization: Bearer <token>)
  --body <file.json>     send this file as the body instead of a sample run
  -h, --help             show this help

Exit status: 0 on a 2xx reply; 1 on any other reply, a refused connection or no
reply within 30 s (the Python server's read timeout); 2 on bad usage.

Example:
  LANGGRAPH_WEBHOOK_TOKEN=… npx fastify-langgraph-webhooks send http://127.0.0.1:3000/webhooks/langgraph --status error
`

const OPTIONS = { status: { type: 'string', default: 'success' }, sender: { type: 'string', default: 'js' }, token: { type: 'string' }, 'token-header': { type: 'string' }, body: { type: 'string' }, help: { type: 'boolean', short: 'h' } } as const

/** Where the command writes: `process`, or anything with two writable streams. */
export interface CliIo { stdout: { write (text: string): unknown }, stderr: { write (text: string): unknown } }

/** Runs the command line `argv` (without node and the script) and resolves with the exit status. */
export async function main (argv: string[], env: Record<string, string | undefined>, io: CliIo): Promise<number> {
  const request = await prepare(argv, env).catch((error: Error) => error)
  if (request instanceof Error) {
    io.stderr.write(`${request.message}\nSee fastify-langgraph-webhooks --help.\n`)
    return 2
  }
  if (request === undefined) {
    io.stdout.write(HELP)
    return 0
  }
  const { url, token, init, described } = request
  io.stdout.write(`POST ${url.origin}${url.pathname} ${described}\n`)
  try {
    const response = await fetch(url, { ...init, method: 'POST', signal: AbortSignal.timeout(30_000) })
    const { code, message } = errorBody(await response.text())
    const line = `${response.status} ${response.statusText}${code === undefined ? '' : ` ${code}`}${message ? `: ${message}` : ''}`
    io.stdout.write(`${line.replaceAll(token, '[REDACTED]')}\n`)
    return response.ok ? 0 : 1
  } catch (error) {
    const cause = (error as { cause?: { code?: string, message?: string } }).cause
    io.stderr.write(cause?.code === 'ECONNREFUSED'
      ? `Connection refused by ${url.host}: is the app listening there?\n`
      : `Request to ${url.host} failed: ${cause?.message ?? (error as Error).message}\n`)
    return 1
  }
}

async function prepare (argv: string[], env: Record<string, string | undefined>) {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: OPTIONS })
  if (values.help === true) return undefined
  const [command, target, ...extra] = positionals
  if (command !== 'send' || target === undefined || extra.length > 0) throw new Error('Usage: fastify-langgraph-webhooks send <url> [options]')
  const url = URL.parse(target)
  if (url?.protocol !== 'http:' && url?.protocol !== 'https:') throw new Error('<url> is not an http(s) URL, e.g. http://127.0.0.1:3000/webhooks/langgraph')
  const { sender, status, 'token-header': header } = values
  if (sender !== 'js' && sender !== 'python') throw new Error('--sender is js or python')
  if (header !== undefined && sender === 'js') throw new Error('--token-header needs --sender python: the JS server sends no headers of its own')
  const token = values.token ?? env.LANGGRAPH_WEBHOOK_TOKEN ?? url.searchParams.get('token')
  if (!token) throw new Error('No token: pass --token, or set LANGGRAPH_WEBHOOK_TOKEN')
  url.searchParams.delete('token')
  const headers: Record<string, string> = { 'content-type': sender === 'js' ? 'text/plain;charset=UTF-8' : 'application/json' }
  if (header === undefined) url.searchParams.set('token', token)
  else headers[header] = header.toLowerCase() === 'authorization' ? `Bearer ${token}` : token
  const file = values.body
  const run = file === undefined ? sampleRun(status, sender, url.href) : undefined
  const body = file === undefined ? JSON.stringify(run) : await readFile(file, 'utf8')
  const described = `as the ${sender} server: ${file ?? `run ${run?.run_id} (${status})`}`
  return { url, token, init: { headers, body }, described }
}

// A run as each server shapes it: the Python server writes times with microseconds and +00:00, and an error as an object.
function sampleRun (status: string, sender: 'js' | 'python', webhook: string): Record<string, unknown> {
  const run: Record<string, unknown> = buildRunWebhook({ status, kwargs: { webhook } })
  if (status === 'error') run.error = sender === 'js' ? 'sample failure' : { error: 'ValueError', message: 'sample failure' }
  if (sender === 'python') for (const field of Object.keys(run).filter((key) => key.endsWith('_at'))) run[field] = String(run[field]).replace('Z', '000+00:00')
  return run
}

function errorBody (text: string): { code?: string, message?: string } {
  try {
    return Object(JSON.parse(text))
  } catch {
    return { message: text.slice(0, 500) }
  }
}

if (import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) process.exitCode = await main(process.argv.slice(2), process.env, process)
