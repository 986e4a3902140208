/**
 * A throwaway `redis-server` for the demo and the benchmark: on a free
 * loopback port, without persistence, stopped with `stop()`. Returns
 * `undefined` when redis-server is not on the PATH.
 */
import { spawn, spawnSync } from 'node:child_process'
import { connect, createServer } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'

export interface LocalRedis {
  readonly url: string
  stop(): Promise<void>
}

/** A free loopback port. */
export function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

function answers (port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.setTimeout(500, () => { socket.destroy(); resolve(false) })
    socket.once('error', () => resolve(false))
    socket.once('connect', () => socket.write('PING\r\n'))
    socket.once('data', (chunk) => { socket.destroy(); resolve(chunk.toString().startsWith('+PONG')) })
  })
}

export async function startLocalRedis (): Promise<LocalRedis | undefined> {
  if (spawnSync('redis-server', ['--version']).error !== undefined) return undefined
  const port = await freePort()
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  process.once('exit', () => child.kill('SIGKILL'))
  for (let tries = 0; !(await answers(port)); tries++) {
    if (tries === 200) throw new Error(`redis-server did not start on 127.0.0.1:${port}`)
    await sleep(25)
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    async stop () {
      child.kill('SIGTERM')
      await exited
    }
  }
}
