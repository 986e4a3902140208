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
 * Masks the value of every `token` query parameter in a URL, whatever its
 * value (a wrong or stale token is no less secret than the right one) and
 * however its key is percent-encoded (Fastify decodes `%74oken` to `token`).
 */
export function maskTokenInUrl (url: string): string {
  const query = url.indexOf('?')
  if (query === -1) return url
  const fragment = url.indexOf('#', query)
  const end = fragment === -1 ? url.length : fragment
  // One pass over the parameters, copying only when one is masked.
  let masked = ''
  let copied = 0
  for (let start = query + 1; start <= end;) {
    let next = url.indexOf('&', start)
    if (next === -1 || next > end) next = end
    let keyEnd = url.indexOf('=', start)
    if (keyEnd === -1 || keyEnd > next) keyEnd = next
    // A key decodes to at most as many characters: "token" needs five.
    if (keyEnd - start >= 5 && isTokenKey(url.slice(start, keyEnd))) {
      masked += `${url.slice(copied, keyEnd)}=${MASK}`
      copied = next
    }
    start = next + 1
  }
  return copied === 0 ? url : masked + url.slice(copied)
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
