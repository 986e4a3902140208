/**
 * One benchmarked server: `node --import tsx bench/server.ts <case>`, run
 * as a child of bench/run.ts with an IPC channel. It listens on a free
 * loopback port, tells the parent the port, and answers `mark` messages with
 * its CPU time and peak RSS so far (the parent diffs them around each
 * measurement).
 */
import { buildApp, CASES, type CaseName } from './cases.js'

export interface ServerMark {
  type: 'mark'
  /** User + system CPU time since the process started, µs. */
  cpuUs: number
  /** System (kernel) CPU time alone, µs. */
  systemUs: number
  /** Peak resident set size so far, bytes. */
  maxRssBytes: number
  /** Current resident set size, bytes. */
  rssBytes: number
}

const name = process.argv[2] as CaseName
if (!CASES.some((c) => c.name === name)) {
  console.error(`usage: bench/server.ts <${CASES.map((c) => c.name).join('|')}>`)
  process.exit(2)
}
if (process.send === undefined) {
  console.error('bench/server.ts runs as a child of bench/run.ts (it needs an IPC channel)')
  process.exit(2)
}

const app = await buildApp(name)
const address = await app.listen({ port: 0, host: '127.0.0.1' })
process.send({ type: 'ready', port: new URL(address).port })

process.on('message', (message: { type: string }) => {
  if (message.type === 'mark') {
    const cpu = process.cpuUsage()
    const mark: ServerMark = {
      type: 'mark',
      cpuUs: cpu.user + cpu.system,
      systemUs: cpu.system,
      maxRssBytes: process.resourceUsage().maxRSS * 1024,
      rssBytes: process.memoryUsage.rss()
    }
    process.send!(mark)
  } else if (message.type === 'close') {
    // A clean exit, so that --cpu-prof writes its profile.
    app.close().then(() => process.exit(0), () => process.exit(1))
  }
})
process.on('disconnect', () => process.exit(0))
