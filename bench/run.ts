/**
 * `npm run bench`: the plugin against a bare Fastify route and against the
 * route one would write by hand, over the real JS-server body and a 1 MiB one.
 *
 * This process is the load generator (autocannon); every (case, body) pair
 * gets its own server process (bench/server.ts, logger off), started once,
 * warmed up, then measured once per round. Rounds interleave every pair, in
 * a rotated order, so that a change of load on the machine falls on every
 * case alike; each case's ratio to (a) is taken within a round, and the
 * report gives the median of the rounds.
 *
 * Options (`npm run bench -- --rounds 5`): --rounds, --duration-small and
 * --duration-large (seconds per measurement), --warmup (seconds before each
 * measurement), --initial-warmup (seconds per server before the first
 * round), --cases abcdefgh (g and h, the queued cases, need redis-server and use the real body only), --bodies small,large, --connections-small,
 * --connections-large, --out <dir> (default bench/; writes results.json,
 * results.md, ratios.svg), --cpu-prof <dir> (start the servers with
 * node --cpu-prof; see bench/profile.ts), --lib <path/to/lib/index.ts>
 * (benchmark another build of the plugin, e.g. an older commit's),
 * --baseline <path/to/lib/index.ts> (add case (p): that build as (b), in the
 * same rounds, and the target (b) ÷ (p): before and after, side by side).
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import { BODIES, stampRunId, type BenchBody } from './bodies.js'
import { startLocalRedis } from '../examples/redis-server.js'
import { CASES, PATH, REDIS_CASES, type BenchCase } from './cases.js'
import { renderMarkdown, renderSvg, summarise, type Measurement, type Results } from './report.js'
import type { ServerMark } from './server.js'

const here = dirname(fileURLToPath(import.meta.url))

/**
 * Pins a process (all its threads) to one CPU with taskset, when there are
 * two or more: the load generator on CPU 0, every server on CPU 1, so that
 * no server is measured on a CPU the others do not share. False when it cannot.
 */
function pin (pid: number, cpu: number): boolean {
  if (os.availableParallelism() < 2) return false
  try {
    execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}
const pinned = pin(process.pid, 0)

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '10' },
    'duration-small': { type: 'string', default: '0.75' },
    'duration-large': { type: 'string', default: '2' },
    warmup: { type: 'string', default: '0.2' },
    'initial-warmup': { type: 'string', default: '1.5' },
    cases: { type: 'string', default: CASES.map((c) => c.name).join('') },
    bodies: { type: 'string', default: BODIES.map((b) => b.name).join(',') },
    'connections-small': { type: 'string', default: '16' },
    'connections-large': { type: 'string', default: '8' },
    out: { type: 'string', default: here },
    lib: { type: 'string' },
    baseline: { type: 'string' },
    'cpu-prof': { type: 'string' }
  }
})

const rounds = Number(args.rounds)
const durations: Record<string, number> = {
  small: Number(args['duration-small']),
  large: Number(args['duration-large'])
}
const warmup = Number(args.warmup)
const initialWarmup = Number(args['initial-warmup'])
// The queued cases need a redis-server on the PATH; without one they are left out.
const redis = CASES.some((c) => REDIS_CASES.includes(c.name) && args.cases.includes(c.name)) ? await startLocalRedis() : undefined
if (redis === undefined && REDIS_CASES.some((name) => args.cases.includes(name))) console.log('bench: redis-server is not on the PATH; cases g and h are left out')
const cases = CASES.filter((c) => c.name === 'p'
  ? args.baseline !== undefined
  : args.cases.includes(c.name) && (redis !== undefined || !REDIS_CASES.includes(c.name)))
const bodies = BODIES.filter((b) => args.bodies.split(',').includes(b.name))
const connections: Record<string, number> = {
  small: Number(args['connections-small']),
  large: Number(args['connections-large'])
}
if (!(rounds >= 1) || !(durations.small > 0) || !(durations.large > 0) || cases.length === 0 || bodies.length === 0) {
  throw new Error('bad options: see the comment at the top of bench/run.ts')
}

interface Server {
  readonly case: BenchCase
  readonly body: BenchBody
  readonly child: ChildProcess
  readonly port: string
  mark(): Promise<ServerMark>
}

async function startServer (benchCase: BenchCase, body: BenchBody): Promise<Server> {
  const execArgv = ['--import', 'tsx']
  if (args['cpu-prof'] !== undefined) {
    // One directory per server: the main thread and tsx's loader thread each write a profile.
    execArgv.push('--cpu-prof', `--cpu-prof-dir=${join(resolve(args['cpu-prof']), `${benchCase.name}-${body.name}`)}`)
  }
  const env = { ...process.env, ...(args.lib === undefined ? {} : { BENCH_LIB: resolve(args.lib) }), ...(args.baseline === undefined ? {} : { BENCH_BASELINE: resolve(args.baseline) }), ...(redis === undefined ? {} : { REDIS_URL: redis.url }) }
  const child = fork(join(here, 'server.ts'), [benchCase.name], { execArgv, env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  if (pinned) pin(child.pid!, 1)
  const port = await new Promise<string>((resolve, reject) => {
    child.once('message', (message: { type: string, port: string }) => resolve(message.port))
    child.once('exit', (code) => reject(new Error(`server ${benchCase.name} exited with ${code}`)))
  })
  const waiting: Array<(mark: ServerMark) => void> = []
  child.on('message', (message: ServerMark) => {
    if (message.type === 'mark') waiting.shift()?.(message)
  })
  return {
    case: benchCase,
    body,
    child,
    port,
    mark: () => new Promise((resolve) => {
      waiting.push(resolve)
      child.send({ type: 'mark' })
    })
  }
}

async function stopServer (server: Server): Promise<void> {
  const exited = new Promise((resolve) => server.child.once('exit', resolve))
  server.child.send({ type: 'close' })
  await exited
}

let runIds = 0

interface LoadResult {
  count: number
  /** Steady-state throughput: responses between the first and the last, over the time between them. */
  rps: number
  latenciesMs: Float64Array
  statuses: Record<string, number>
  errors: number
}

/** Runs autocannon against one server; every request carries a fresh run_id. */
async function load (server: Server, seconds: number): Promise<LoadResult> {
  const body = server.body
  const latencies: number[] = []
  const statuses: Record<string, number> = {}
  let first = 0
  let last = 0
  const instance = autocannon({
    url: `http://127.0.0.1:${server.port}${PATH}?token=${server.case.token}`,
    method: 'POST',
    connections: connections[body.name],
    duration: seconds,
    // autocannon checks the end of the run at every sample: sample often, so
    // that a run lasts `seconds`, not `seconds` rounded up to whole seconds.
    sampleInt: 100,
    headers: { 'content-type': 'text/plain;charset=UTF-8', 'user-agent': 'node' },
    body: body.buffer,
    requests: [{
      setupRequest (request) {
        stampRunId(body, ++runIds)
        request.body = body.buffer
        return request
      }
    }]
  })
  // autocannon's own latency histogram counts whole milliseconds: record
  // the exact times, of every status (401s included).
  instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
    last = performance.now()
    if (latencies.length === 0) first = last
    latencies.push(responseTime)
    statuses[statusCode] = (statuses[statusCode] ?? 0) + 1
  })
  const result = await instance
  return {
    count: latencies.length,
    // Not count ÷ duration: the connections' first requests are still in
    // flight at the start, and the last ones are cut off at the end, which
    // would bias cases of higher latency on short runs.
    rps: (latencies.length - 1) / ((last - first) / 1000),
    latenciesMs: Float64Array.from(latencies).sort(),
    statuses,
    errors: result.errors + result.timeouts
  }
}

function quantile (sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]
}

/** Sends one request and checks the status, before any load. */
async function preflight (server: Server): Promise<void> {
  stampRunId(server.body, ++runIds)
  const res = await fetch(`http://127.0.0.1:${server.port}${PATH}?token=${server.case.token}`, {
    method: 'POST',
    headers: { 'content-type': 'text/plain;charset=UTF-8' },
    body: server.body.buffer
  })
  await res.arrayBuffer()
  if (res.status !== server.case.status) {
    throw new Error(`case ${server.case.name} (${server.body.name}): expected ${server.case.status}, got ${res.status}`)
  }
}

function versionOf (name: string): string {
  return (JSON.parse(readFileSync(join(here, '..', 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version
}

function machine () {
  const cpus = os.cpus()
  return {
    cpu: `${cpus[0]?.model.trim() ?? 'unknown'} × ${cpus.length}`,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    fastify: versionOf('fastify'),
    autocannon: versionOf('autocannon')
  }
}

async function main (): Promise<void> {
  const started = Date.now()
  const loadBefore = os.loadavg()
  const plan = bodies.reduce((sum, body) => sum + cases.length * (initialWarmup + rounds * (warmup + durations[body.name] + 0.2)), 0)
  console.log(`bench: ${cases.length} cases × ${bodies.length} bodies × ${rounds} rounds; about ${Math.ceil(plan / 60)} min. Load average ${loadBefore.map((l) => l.toFixed(2)).join(' ')}${pinned ? '; the load generator on CPU 0, the servers on CPU 1' : ''}`)

  const servers: Server[] = []
  for (const body of bodies) {
    for (const benchCase of cases) {
      // A queue of 1 MiB jobs would fill Redis's memory within a round.
      if (body.name === 'large' && REDIS_CASES.includes(benchCase.name)) continue
      servers.push(await startServer(benchCase, body))
    }
  }
  const measurements: Measurement[] = []
  try {
    for (const server of servers) await preflight(server)
    for (const server of servers) await load(server, initialWarmup)

    for (let round = 0; round < rounds; round++) {
      for (const body of bodies) {
        const ofBody = servers.filter((s) => s.body === body)
        // Rotate the order every round: no case always runs first or last.
        const order = ofBody.map((_, i) => ofBody[(i + round) % ofBody.length])
        for (const server of order) {
          await load(server, warmup)
          const before = await server.mark()
          const result = await load(server, durations[body.name])
          const after = await server.mark()
          const unexpected = Object.entries(result.statuses).filter(([code]) => Number(code) !== server.case.status)
          if (unexpected.length > 0 || result.errors > 0) {
            throw new Error(`case ${server.case.name} (${body.name}): unexpected replies ${JSON.stringify(result.statuses)}, ${result.errors} errors`)
          }
          const m: Measurement = {
            round,
            case: server.case.name,
            body: body.name,
            requests: result.count,
            rps: result.rps,
            p50Ms: quantile(result.latenciesMs, 0.5),
            p99Ms: quantile(result.latenciesMs, 0.99),
            cpuUsPerRequest: (after.cpuUs - before.cpuUs) / result.count,
            systemUsPerRequest: (after.systemUs - before.systemUs) / result.count,
            peakRssBytes: after.maxRssBytes
          }
          measurements.push(m)
          console.log(`round ${round + 1}/${rounds} ${body.name.padEnd(5)} (${m.case}) ${m.rps.toFixed(0).padStart(6)} req/s  p50 ${m.p50Ms.toFixed(2)} ms  p99 ${m.p99Ms.toFixed(2)} ms  ${m.cpuUsPerRequest.toFixed(0)} µs CPU/req (${m.systemUsPerRequest.toFixed(0)} system)  peak RSS ${(m.peakRssBytes / 2 ** 20).toFixed(0)} MiB`)
        }
      }
    }
  } finally {
    await Promise.all(servers.map(stopServer))
    await redis?.stop()
  }

  const results: Results = {
    date: new Date().toISOString(),
    machine: machine(),
    loadAverage: { before: loadBefore, after: os.loadavg() },
    settings: { rounds, durationSeconds: durations, warmupSeconds: warmup, connections },
    bodies: bodies.map((b) => ({ name: b.name, label: b.label, bytes: b.buffer.length })),
    cases: cases.map(({ name, label, status }) => ({ name, label, status })),
    summary: [],
    targets: [],
    measurements
  }
  summarise(results)
  const out = resolve(args.out)
  mkdirSync(out, { recursive: true })
  writeFileSync(join(out, 'results.json'), JSON.stringify(results, null, 2) + '\n')
  const markdown = renderMarkdown(results)
  writeFileSync(join(out, 'results.md'), markdown)
  writeFileSync(join(out, 'ratios.svg'), renderSvg(results))
  console.log('\n' + markdown)
  console.log(`wrote ${join(out, 'results.json')}, results.md and ratios.svg in ${((Date.now() - started) / 1000).toFixed(0)} s`)
}

await main()
