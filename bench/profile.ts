/**
 * Summarises V8 CPU profiles written by `npm run bench -- --cpu-prof <dir>`:
 * `tsx bench/profile.ts <file.cpuprofile>... [--top 30]` prints the
 * self time by function and by package (lib/ of this plugin, fastify,
 * node internals, GC), and the total time under each lib/ function.
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

interface Node {
  id: number
  callFrame: { functionName: string, url: string, lineNumber: number }
  hitCount?: number
  children?: number[]
}
interface Profile { nodes: Node[], samples: number[], timeDeltas: number[] }

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '30' } } })
const top = Number(values.top)

function where (url: string): string {
  if (url === '') return '(native / V8)'
  if (url.startsWith('node:')) return 'node core'
  const lib = /\/lib\/([^/]+(?:\/[^/]+)?\.ts)$/.exec(url)
  if (lib !== null && !url.includes('node_modules')) return `plugin lib/${lib[1]}`
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (pkg !== null) return pkg[1]
  return url.replace(/^file:\/\/.*\/(bench|lib)\//, '$1/')
}

for (const file of positionals) {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  // Time per node from the samples.
  const self = new Map<number, number>()
  let total = 0
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0
    self.set(id, (self.get(id) ?? 0) + dt)
    total += dt
  })
  const idle = [...self].filter(([id]) => byId.get(id)!.callFrame.functionName === '(idle)').reduce((s, [, t]) => s + t, 0)
  const busy = total - idle
  const fnSelf = new Map<string, number>()
  const pkgSelf = new Map<string, number>()
  const libTotal = new Map<string, number>()
  for (const [id, t] of self) {
    const n = byId.get(id)!
    if (n.callFrame.functionName === '(idle)') continue
    const pkg = n.callFrame.functionName === '(garbage collector)' ? '(garbage collector)' : where(n.callFrame.url)
    const fn = `${n.callFrame.functionName || '(anonymous)'} ${pkg}:${n.callFrame.lineNumber + 1}`
    fnSelf.set(fn, (fnSelf.get(fn) ?? 0) + t)
    pkgSelf.set(pkg, (pkgSelf.get(pkg) ?? 0) + t)
    // Inclusive time of every distinct lib/ frame on the stack.
    const seen = new Set<string>()
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const f = byId.get(cur)!.callFrame
      const w = where(f.url)
      if (!w.startsWith('plugin ')) continue
      const key = `${f.functionName || '(anonymous)'} ${w}:${f.lineNumber + 1}`
      if (seen.has(key)) continue
      seen.add(key)
      libTotal.set(key, (libTotal.get(key) ?? 0) + t)
    }
  }
  const pct = (t: number) => `${(100 * t / busy).toFixed(1).padStart(5)} %`
  const print = (title: string, map: Map<string, number>, n: number) => {
    console.log(`\n  ${title}`)
    for (const [k, t] of [...map].sort((x, y) => y[1] - x[1]).slice(0, n)) console.log(`  ${pct(t)}  ${k}`)
  }
  console.log(`\n${file}: busy ${(busy / 1000).toFixed(0)} ms of ${(total / 1000).toFixed(0)} ms`)
  print('self time by package', pkgSelf, 15)
  print('self time by function', fnSelf, top)
  print('total time under plugin functions', libTotal, top)
}
