import { Writable } from 'node:stream'

/** A Fastify logger option whose JSON lines are collected, parsed, in `lines`. */
export function logSink (level = 'info') {
  const lines: Array<Record<string, any>> = []
  const stream = new Writable({
    write (chunk, _encoding, callback) {
      for (const line of String(chunk).split('\n')) if (line !== '') lines.push(JSON.parse(line))
      callback()
    }
  })
  return { lines, logger: { level, stream } }
}
