import type { FastifyRequest } from 'fastify'

export const MASK = '[REDACTED]'

function isTokenKey (key: string): boolean {
  // A key decodes to at most as many characters: "token" needs five.
  if (key.length < 5) return false
  // A key without escapes is its own decoding: skip the decoder.
  if (!key.includes('%') && !key.includes('+')) return key.length === 5 && key.toLowerCase() === 'token'
  let decoded = key
  try {
    decoded = decodeURIComponent(key.replaceAll('+', ' '))
  } catch {}
  return decoded.toLowerCase() === 'token'
}

/**
 * Where a query starts for Fastify's router (find-my-way): after the first
 * '?' or '#', or ';' with its useSemicolonDelimiter option. ';' is taken
 * whatever the option: masking more than the router reads is harmless.
 */
const QUERY_START = /[?#;]/

/**
 * Masks the value of every `token` query parameter in a URL, whatever its
 * value (a wrong or stale token is no less secret than the right one) and
 * however its key is percent-encoded (Fastify decodes `%74oken` to `token`).
 * The query is what the router reads: from the first '?', '#' or ';' to the
 * end, parameters split on '&' only (a '#' inside a value is part of it).
 */
export function maskTokenInUrl (url: string): string {
  const query = url.search(QUERY_START)
  if (query === -1) return url
  const params = url.slice(query + 1).split('&')
  let masked = false
  for (let i = 0; i < params.length; i++) {
    const param = maskParam(params[i])
    if (param === undefined) continue
    params[i] = param
    masked = true
  }
  return masked ? url.slice(0, query + 1) + params.join('&') : url
}

/**
 * The parameter masked from its token key to its end, or undefined when it
 * holds none. A key is looked for at its start and after every '?', '#' or
 * ';' in it: where the query starts when the router reads the URL otherwise
 * (`/p;a=1?token=T` without useSemicolonDelimiter).
 */
function maskParam (param: string): string | undefined {
  let at = 0
  do {
    const rest = param.slice(at)
    const equals = rest.indexOf('=')
    const key = equals === -1 ? rest : rest.slice(0, equals)
    if (isTokenKey(key)) return `${param.slice(0, at)}${key}=${MASK}`
    const next = rest.search(QUERY_START)
    at = next === -1 ? -1 : at + next + 1
  } while (at !== -1)
  return undefined
}

/** Masks the token that LangGraph echoes in `kwargs.webhook`, in place. */
export function redactRun (run: { kwargs?: { webhook?: unknown } }): void {
  const kwargs = run.kwargs
  if (kwargs !== undefined && typeof kwargs.webhook === 'string') {
    kwargs.webhook = maskTokenInUrl(kwargs.webhook)
  }
}

/**
 * Fastify's request serializer with the token masked: the route uses it for
 * its own request logs, and a host application can put it in its logger
 * options so that mistyped paths (logged by the host's 404 handler) are
 * masked too.
 */
export function serializeRequest (request: FastifyRequest): Record<string, unknown> {
  return {
    method: request.method,
    url: maskTokenInUrl(request.url),
    version: request.headers?.['accept-version'],
    host: request.host,
    remoteAddress: request.ip,
    remotePort: request.socket?.remotePort
  }
}
