/**
 * A real Redis Cluster for the tests: six `redis-server --cluster-enabled
 * yes` on free loopback ports, joined by `redis-cli --cluster create` as
 * three masters with a replica each, stopped at the end (also when a test
 * fails). A short `cluster-node-timeout` (`nodeTimeoutMs`) lets a replica
 * take over a killed master within seconds.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import { Cluster, Redis, type ClusterOptions } from 'ioredis'
import { freePort } from './redis-server.js'

export interface ClusterNode {
  readonly port: number
  readonly process: ChildProcess
  /** Killed by the test (and not restarted). */
  readonly dead: boolean
}

interface Node extends ClusterNode {
  process: ChildProcess
  dead: boolean
  readonly args: readonly string[]
}

export interface RedisCluster {
  readonly nodes: readonly ClusterNode[]
  /** Where an ioredis `Cluster` starts: every node. */
  readonly startupNodes: ReadonlyArray<{ host: string, port: number }>
  /** An ioredis Cluster client as an application makes one, closed at the end of `test`. */
  connect(test: Test, options?: ClusterOptions): Promise<Cluster>
  /** The node that masters the slot of `key` now (as the live nodes agree). */
  masterOf(key: string): Promise<ClusterNode>
  /** Runs a command on one node, and returns its answer as a string. */
  ask(node: ClusterNode, ...command: string[]): Promise<string>
  /** The live replicas of a master. */
  replicasOf(master: ClusterNode): Promise<ClusterNode[]>
  /** Kills a node with SIGKILL, as a crash would, and waits for it to exit. */
  kill(node: ClusterNode): Promise<void>
  /** Starts a killed node again on its port: it rejoins the cluster, as a replica if another took over its slots. */
  restart(node: ClusterNode): Promise<void>
  /** Stalls a node (SIGSTOP): its connections stay open, it answers nothing. */
  pause(node: ClusterNode): void
  resume(node: ClusterNode): void
  /** Waits until every live node says `cluster_state:ok` and no live node sees the slot of `key` mastered by a dead node. */
  settled(key?: string, timeoutMs?: number): Promise<void>
  stop(): Promise<void>
}

export interface RedisClusterOptions {
  /** How long a master may not answer before its replica takes over, in ms. Default 5000: no failover because the machine is busy. */
  nodeTimeoutMs?: number
}

const HOST = '127.0.0.1'
const NODES = 6

function noop (): void {}

/** One short-lived connection that runs `command` on a node and quits. */
async function ask (port: number, ...command: string[]): Promise<string> {
  const client = new Redis(port, HOST, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, enableOfflineQueue: false })
  client.on('error', noop)
  try {
    await client.connect()
    return String(await client.call(command[0], ...command.slice(1)))
  } finally {
    client.disconnect()
  }
}

async function until (condition: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`${what} not reached in ${timeoutMs} ms`)
    await sleep(50)
  }
}

/** Starts the cluster; with `test`, it is stopped at the end of that test. */
export async function startRedisCluster (test?: Test, { nodeTimeoutMs = 5000 }: RedisClusterOptions = {}): Promise<RedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'redis-cluster-'))
  const nodes: Node[] = []
  const killAll = (): void => {
    for (const node of nodes) node.process.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  }
  process.once('exit', killAll)

  const stop = async (): Promise<void> => {
    process.removeListener('exit', killAll)
    await Promise.all(nodes.map(async (node) => {
      const { process: child } = node
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGKILL') // no data to save: the fastest stop
      await exited
    }))
    rmSync(dir, { recursive: true, force: true })
  }
  test?.teardown(stop)

  try {
    for (let i = 0; i < NODES; i++) {
      // The cluster bus gets a port of its own: port + 10000 may be taken, or beyond 65535.
      const [port, busPort] = [await freePort(), await freePort()]
      const args = [
        '--port', String(port), '--cluster-port', String(busPort), '--bind', HOST,
        '--cluster-enabled', 'yes', '--cluster-node-timeout', String(nodeTimeoutMs),
        '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--dir', dir,
        '--save', '', '--appendonly', 'no', '--repl-diskless-sync-delay', '0', '--logfile', join(dir, `log-${port}`)
      ]
      nodes.push({ port, args, process: spawn('redis-server', args, { stdio: 'ignore' }), dead: false })
    }
    await Promise.all(nodes.map((node) => until(async () => await ask(node.port, 'PING') === 'PONG', 30_000, `redis-server on ${node.port} answering`)))
    const created = spawnSync('redis-cli', [
      '--cluster', 'create', ...nodes.map((node) => `${HOST}:${node.port}`), '--cluster-replicas', '1', '--cluster-yes'
    ], { encoding: 'utf8', timeout: 60_000 })
    if (created.status !== 0) throw new Error(`redis-cli --cluster create failed:\n${created.stdout}${created.stderr}`)
  } catch (error) {
    await stop()
    throw error
  }

  const live = (): ClusterNode[] => nodes.filter((node) => !node.dead)
  const byPort = (port: number): ClusterNode | undefined => nodes.find((node) => node.port === port)

  async function masterOf (key: string): Promise<ClusterNode> {
    const slot = Number(await ask(live()[0].port, 'CLUSTER', 'KEYSLOT', key))
    // CLUSTER SLOTS: [[start, end, [host, port, id], replicas...], ...]
    const client = new Redis(live()[0].port, HOST, { lazyConnect: true, retryStrategy: () => null })
    client.on('error', noop)
    try {
      const ranges = await client.call('CLUSTER', 'SLOTS') as Array<[number, number, [string, number]]>
      const range = ranges.find(([start, end]) => start <= slot && slot <= end)
      const node = range === undefined ? undefined : byPort(range[2][1])
      if (node === undefined) throw new Error(`no node masters slot ${slot}`)
      return node
    } finally {
      client.disconnect()
    }
  }

  async function settled (key?: string, timeoutMs = 30_000): Promise<void> {
    await until(async () => {
      for (const node of live()) {
        if (!(await ask(node.port, 'CLUSTER', 'INFO')).includes('cluster_state:ok')) return false
      }
      return key === undefined || !(await masterOf(key)).dead
    }, timeoutMs, 'cluster_state:ok on every live node')
  }

  // A replica takes over only once it has synced with its master.
  const synced = (node: ClusterNode, replica = false): Promise<void> => until(async () => {
    const replication = await ask(node.port, 'INFO', 'replication')
    return (!replica && replication.includes('role:master')) || replication.includes('master_link_status:up')
  }, 30_000, `the replica on ${node.port} in sync`)

  await settled()
  await Promise.all(nodes.map((node) => synced(node)))

  return {
    nodes,
    startupNodes: nodes.map((node) => ({ host: HOST, port: node.port })),
    async connect (test, options = {}) {
      const client = new Cluster(nodes.map((node) => ({ host: HOST, port: node.port })), options)
      client.on('error', noop) // reported by the plugin, which listens too
      test.teardown(() => client.disconnect())
      await client.ping()
      return client
    },
    masterOf,
    ask: (node, ...command) => ask(node.port, ...command),
    async kill (node) {
      const target = node as Node
      target.dead = true
      const exited = new Promise((resolve) => target.process.once('exit', resolve))
      target.process.kill('SIGKILL')
      await exited
    },
    async replicasOf (master) {
      const replicas: ClusterNode[] = []
      for (const node of live()) {
        if ((await ask(node.port, 'INFO', 'replication')).includes(`master_port:${master.port}\r\n`)) replicas.push(node)
      }
      return replicas
    },
    async restart (node) {
      const target = node as Node
      target.process = spawn('redis-server', target.args, { stdio: 'ignore' })
      await until(async () => await ask(target.port, 'PING') === 'PONG', 30_000, `redis-server on ${target.port} answering`)
      target.dead = false
      await settled()
      await synced(target, true)
    },
    pause: (node) => { node.process.kill('SIGSTOP') },
    resume: (node) => { node.process.kill('SIGCONT') },
    settled,
    stop
  }
}
