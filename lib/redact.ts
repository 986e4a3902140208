import type { FastifyRequest } from 'fastify'

export const MASK = '[REDACTED]'

function isTokenKey (key: string): boolean {
  // A key without escapes is its own decoding: skip the decoder.
  if (!key.includes('%') && !key.includes('+')) return key.length === 5 && key.toLowerCase() === 'token'
  let decoded = key
  try {
    decoded = decodeURIComponent(key.replaceAll('+', ' '))
  } catch {}
  return decoded.toLowerCase() === 'token'
}

/**
 * Where a query starts for Fastify's router (find-my-way), from `from` on:
 * the first '?' or '#', or ';' with its useSemicolonDelimiter option. ';' is
 * taken whatever the option: masking more than the router reads is harmless.
 */
function queryStart (url: string, from: number, end = url.length): number {
  for (let i = from; i < end; i++) {
    const c = url.charCodeAt(i)
    if (c === 0x3f || c === 0x23 || c === 0x3b) return i
  }
  return -1
}

/**
 * Masks the value of every `token` query parameter in a URL, whatever its
 * value (a wrong or stale token is no less secret than the right one) and
 * however its key is percent-encoded (Fastify decodes `%74oken` to `token`).
 * The query is what the router reads: from the first '?', '#' or ';' to the
 * end, parameters split on '&' only (a '#' inside a value is part of it).
 */
export function maskTokenInUrl (url: string): string {
  const query = queryStart(url, 0)
  if (query === -1) return url
  // One pass over the parameters, copying only when one is masked.
  let masked = ''
  let copied = 0
  for (let start = query + 1; start <= url.length;) {
    let end = url.indexOf('&', start)
    if (end === -1) end = url.length
    const keyEnd = tokenKeyEnd(url, start, end)
    if (keyEnd !== -1) {
      masked += `${url.slice(copied, keyEnd)}=${MASK}`
      copied = end
    }
    start = end + 1
  }
  return copied === 0 ? url : masked + url.slice(copied)
}

/**
 * The end of the token key in the parameter `url[start, end)`, or -1 when it
 * holds none. A key is looked for at its start and after every '?', '#' or
 * ';' in it: where the query starts when the router reads the URL otherwise
 * (`/p;a=1?token=T` without useSemicolonDelimiter).
 */
function tokenKeyEnd (url: string, start: number, end: number): number {
  for (let at = start; at !== -1;) {
    let equals = url.indexOf('=', at)
    if (equals === -1 || equals > end) equals = end
    // A key decodes to at most as many characters: "token" needs five.
    if (equals - at >= 5 && isTokenKey(url.slice(at, equals))) return equals
    const next = queryStart(url, at, end)
    at = next === -1 ? -1 : next + 1
  }
  return -1
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
