/**
 * A real `redis-server` for the Redis tests: spawned on a free loopback
 * port, without persistence unless asked for an append-only file, and
 * stoppable, killable, pausable (SIGSTOP) and restartable on the same port.
 * The tests never mock Redis.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort } from '../../examples/redis-server.js'

export { freePort }

export interface RedisServer {
  readonly port: number
  /** `redis://127.0.0.1:<port>` */
  readonly url: string
  /** Stops the server (SIGTERM) and waits for it to exit. */
  stop(): Promise<void>
  /** Starts it again on the same port (empty, unless it keeps an append-only file). */
  start(): Promise<void>
  /** Kills it with SIGKILL, as a crash would, and waits for it to exit. */
  kill(): Promise<void>
  /** Stalls it (SIGSTOP): connections stay open, nothing is answered. */
  pause(): void
  /** Lets a paused server go on (SIGCONT). */
  resume(): void
}

export interface RedisServerOptions {
  /** Keep an append-only file (fsync every second) in a temporary directory, so a restart keeps the data. */
  appendonly?: boolean
}

const INSTALL_HINT = 'redis-server is not installed (or not on PATH); the Redis dedupe tests need a real one: apt-get install redis-server (macOS: brew install redis)'

function ping (port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    let reply = ''
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(500, () => done(false))
    socket.once('error', () => done(false))
    socket.once('connect', () => socket.write('PING\r\n'))
    socket.on('data', (chunk) => {
      reply += chunk.toString()
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'))
    })
  })
}

/** Spawns `redis-server` on a free 127.0.0.1 port and waits until it answers PING. */
export async function startRedisServer ({ appendonly = false }: RedisServerOptions = {}): Promise<RedisServer> {
  const probe = spawnSync('redis-server', ['--version'], { encoding: 'utf8' })
  if (probe.error !== undefined) throw new Error(`${INSTALL_HINT} (${probe.error.message})`)

  const port = await freePort()
  const dir = appendonly ? mkdtempSync(join(tmpdir(), 'redis-aof-')) : undefined
  let child: ChildProcess | undefined
  let output = ''
  const killOnExit = () => {
    child?.kill('SIGKILL')
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
  }
  process.once('exit', killOnExit)

  async function start (): Promise<void> {
    output = ''
    const persistence = dir === undefined
      ? ['--appendonly', 'no']
      : ['--appendonly', 'yes', '--appendfsync', 'everysec', '--dir', dir]
    const spawned = spawn('redis-server', [
      '--port', String(port), '--bind', '127.0.0.1', '--save', '', ...persistence
    ], { stdio: ['ignore', 'pipe', 'pipe'] })
    child = spawned
    spawned.stdout.on('data', (chunk) => { output += chunk })
    spawned.stderr.on('data', (chunk) => { output += chunk })
    let exited = false
    spawned.once('exit', () => { exited = true })
    const deadline = Date.now() + 10_000
    while (!(await ping(port))) {
      if (exited || Date.now() > deadline) {
        spawned.kill('SIGKILL')
        throw new Error(`redis-server did not start on 127.0.0.1:${port}:\n${output}`)
      }
      await sleep(20)
    }
  }

  async function end (signal: NodeJS.Signals): Promise<void> {
    const running = child
    child = undefined
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return
    const exited = new Promise((resolve) => running.once('exit', resolve))
    running.kill('SIGCONT') // a paused server would not act on SIGTERM
    running.kill(signal)
    await exited
  }

  // Stopping keeps the append-only file for a restart; it goes when the process exits.
  const stop = () => end('SIGTERM')

  await start()
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    start,
    stop,
    kill: () => end('SIGKILL'),
    pause: () => { child?.kill('SIGSTOP') },
    resume: () => { child?.kill('SIGCONT') }
  }
}
