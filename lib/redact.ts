import type { FastifyRequest } from 'fastify'

export const MASK = '[REDACTED]'

function isTokenKey (key: string): boolean {
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
  const params = url.slice(query + 1, end).split('&')
  for (let i = 0; i < params.length; i++) {
    const equals = params[i].indexOf('=')
    const key = equals === -1 ? params[i] : params[i].slice(0, equals)
    if (isTokenKey(key)) params[i] = `${key}=${MASK}`
  }
  return url.slice(0, query + 1) + params.join('&') + url.slice(end)
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
