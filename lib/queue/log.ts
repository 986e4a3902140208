import type { FastifyBaseLogger } from 'fastify'

const LEVELS = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 } as const
type Level = keyof typeof LEVELS

function serialize (value: unknown): unknown {
  if (value instanceof AggregateError) return { type: value.name, message: value.message, stack: value.stack, errors: value.errors.map(serialize) }
  if (value instanceof Error) return { type: value.name, message: value.message, stack: value.stack }
  return value
}

/**
 * A small logger in pino's JSON line format, for worker processes that give
 * none: info and above, one line per entry on `stream`.
 */
export function jsonLineLogger (stream: { write(line: string): unknown } = process.stdout, bindings: Record<string, unknown> = {}): FastifyBaseLogger {
  const threshold = LEVELS.info
  const logger: Record<string, unknown> = {
    level: 'info',
    child: (more: Record<string, unknown>) => jsonLineLogger(stream, { ...bindings, ...more }),
    silent: () => {}
  }
  for (const [name, level] of Object.entries(LEVELS) as Array<[Level, number]>) {
    logger[name] = (objOrMessage: unknown, message?: string) => {
      if (level < threshold) return
      const fields = typeof objOrMessage === 'object' && objOrMessage !== null
        ? Object.fromEntries(Object.entries(objOrMessage).map(([key, value]) => [key, serialize(value)]))
        : { msg: objOrMessage }
      stream.write(JSON.stringify({ level, time: Date.now(), ...bindings, ...fields, ...(message === undefined ? {} : { msg: message }) }) + '\n')
    }
  }
  return logger as unknown as FastifyBaseLogger
}
