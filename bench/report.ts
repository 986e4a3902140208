/**
 * Turns the measurements of bench/run.ts into medians, target verdicts, a
 * markdown table and an SVG chart of the ratios (written by hand, no deps).
 */

export interface Measurement {
  round: number
  case: string
  body: string
  requests: number
  rps: number
  p50Ms: number
  p99Ms: number
  /** Server CPU time (user + system) per request over the measurement. */
  cpuUsPerRequest: number
  /** The part of it spent in the kernel (socket reads and writes, mostly). */
  systemUsPerRequest: number
  /** The server's peak RSS since it started (its warm-ups and earlier rounds included). */
  peakRssBytes: number
}

export interface Summary {
  case: string
  body: string
  rps: number
  /** Median over rounds of (this case's req/s ÷ (a)'s req/s in the same round). */
  ratioToA: number
  /**
   * This case's best round ÷ (a)'s best round, in req/s. Interference from
   * other work on the machine only ever slows a round down, so the best
   * rounds estimate the undisturbed ratio; reported beside the median.
   */
  bestRatioToA: number
  p50Ms: number
  p99Ms: number
  cpuUsPerRequest: number
  /** The least server CPU time per request of any round. */
  bestCpuUsPerRequest: number
  peakRssMiB: number
}

export interface Target {
  description: string
  /** Median over rounds of the ratio within each round: the verdict. */
  value: number
  /** The same ratio of the cases' best rounds (see Summary.bestRatioToA). */
  best: number
  threshold: number
  /** Whether `value` must be at least (`>=`) or at most (`<=`) the threshold. */
  op: '>=' | '<='
  met: boolean
}

export interface Results {
  date: string
  machine: Record<string, string | number>
  loadAverage: { before: number[], after: number[] }
  settings: Record<string, unknown>
  bodies: Array<{ name: string, label: string, bytes: number }>
  cases: Array<{ name: string, label: string, status: number }>
  summary: Summary[]
  targets: Target[]
  measurements: Measurement[]
}

function median (values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/** Median over rounds of f(case x, case y) within each round, for one body. */
function pairedMedian (results: Results, body: string, x: string, y: string, f: (mx: Measurement, my: Measurement) => number): number {
  const values: number[] = []
  const rounds = new Set(results.measurements.map((m) => m.round))
  for (const round of rounds) {
    const mx = results.measurements.find((m) => m.round === round && m.body === body && m.case === x)
    const my = results.measurements.find((m) => m.round === round && m.body === body && m.case === y)
    if (mx !== undefined && my !== undefined) values.push(f(mx, my))
  }
  return values.length === 0 ? NaN : median(values)
}

const rpsRatio = (mx: Measurement, my: Measurement) => mx.rps / my.rps

/** The best round of a case: the most req/s, or the least CPU per request. */
function best (results: Results, body: string, c: string, metric: 'rps' | 'cpu'): number {
  const ms = results.measurements.filter((m) => m.body === body && m.case === c)
  if (ms.length === 0) return NaN
  return metric === 'rps' ? Math.max(...ms.map((m) => m.rps)) : Math.min(...ms.map((m) => m.cpuUsPerRequest))
}

export function summarise (results: Results): void {
  results.summary = []
  for (const body of results.bodies) {
    for (const c of results.cases) {
      const ms = results.measurements.filter((m) => m.body === body.name && m.case === c.name)
      if (ms.length === 0) continue
      results.summary.push({
        case: c.name,
        body: body.name,
        rps: median(ms.map((m) => m.rps)),
        ratioToA: pairedMedian(results, body.name, c.name, 'a', rpsRatio),
        bestRatioToA: best(results, body.name, c.name, 'rps') / best(results, body.name, 'a', 'rps'),
        p50Ms: median(ms.map((m) => m.p50Ms)),
        p99Ms: median(ms.map((m) => m.p99Ms)),
        cpuUsPerRequest: median(ms.map((m) => m.cpuUsPerRequest)),
        bestCpuUsPerRequest: best(results, body.name, c.name, 'cpu'),
        peakRssMiB: Math.max(...ms.map((m) => m.peakRssBytes)) / 2 ** 20
      })
    }
  }

  const rps = (body: string, x: string, y: string) => ({
    value: pairedMedian(results, body, x, y, rpsRatio),
    best: best(results, body, x, 'rps') / best(results, body, y, 'rps')
  })
  const targets: Array<Omit<Target, 'met'>> = [
    { description: '(b) ÷ (f), req/s, real body', ...rps('small', 'b', 'f'), threshold: 1, op: '>=' },
    { description: '(b) ÷ (a), req/s, real body', ...rps('small', 'b', 'a'), threshold: 0.95, op: '>=' },
    { description: '(b) ÷ (p), req/s, real body: this build against the --baseline build', ...rps('small', 'b', 'p'), threshold: 0.97, op: '>=' },
    { description: '(b) ÷ (a), req/s, 1 MiB body', ...rps('large', 'b', 'a'), threshold: 0.97, op: '>=' },
    { description: '(c) ÷ (a), req/s, real body', ...rps('small', 'c', 'a'), threshold: 0.88, op: '>=' },
    { description: '(c) ÷ (a), req/s, 1 MiB body', ...rps('large', 'c', 'a'), threshold: 0.88, op: '>=' },
    { description: '(g) ÷ (h), req/s, real body: the queued route against a hand-written queue.add', ...rps('small', 'g', 'h'), threshold: 0.9, op: '>=' },
    {
      description: 'cost of a 401 ÷ cost of a valid delivery, 1 MiB body: (e) ÷ (b), server CPU per request',
      value: pairedMedian(results, 'large', 'e', 'b', (me, mb) => me.cpuUsPerRequest / mb.cpuUsPerRequest),
      best: best(results, 'large', 'e', 'cpu') / best(results, 'large', 'b', 'cpu'),
      threshold: 0.2,
      op: '<='
    },
    {
      description: 'time of a 401 ÷ time of a valid delivery, 1 MiB body: (b) ÷ (e), req/s',
      ...rps('large', 'b', 'e'),
      threshold: 0.2,
      op: '<='
    }
  ]
  results.targets = targets
    .filter((t) => !Number.isNaN(t.value))
    .map((t) => ({ ...t, met: t.op === '>=' ? t.value >= t.threshold : t.value <= t.threshold }))
}

const fixed = (n: number, digits: number) => Number.isFinite(n) ? n.toFixed(digits) : '–'

export function renderMarkdown (results: Results): string {
  const lines: string[] = []
  const label = (name: string) => results.cases.find((c) => c.name === name)?.label ?? name
  for (const body of results.bodies) {
    lines.push(`**${body.label}** (${body.bytes.toLocaleString('en')} bytes)`, '')
    lines.push('| case | req/s | ratio to (a) | best rounds\' ratio | p50 ms | p99 ms | server CPU µs/req | peak RSS MiB |')
    lines.push('|---|--:|--:|--:|--:|--:|--:|--:|')
    for (const s of results.summary.filter((x) => x.body === body.name)) {
      lines.push(`| (${s.case}) ${label(s.case)} | ${fixed(s.rps, 0)} | ${fixed(s.ratioToA, 2)} | ${fixed(s.bestRatioToA, 2)} | ${fixed(s.p50Ms, 2)} | ${fixed(s.p99Ms, 2)} | ${fixed(s.cpuUsPerRequest, 0)} | ${fixed(s.peakRssMiB, 0)} |`)
    }
    lines.push('')
  }
  lines.push('| target | median of rounds | best rounds | goal | met (median) |', '|---|--:|--:|--:|:-:|')
  for (const t of results.targets) {
    lines.push(`| ${t.description} | ${fixed(t.value, 3)} | ${fixed(t.best, 3)} | ${t.op} ${t.threshold} | ${t.met ? 'yes' : 'no'} |`)
  }
  const m = results.machine
  const s = results.settings as { rounds: number, durationSeconds: Record<string, number>, warmupSeconds: number, connections: Record<string, number> }
  lines.push('', `Medians of ${s.rounds} interleaved rounds; in each round every case runs ${s.durationSeconds.small} s (real body, ${s.connections.small} connections) ` +
    `or ${s.durationSeconds.large} s (1 MiB body, ${s.connections.large} connections) after ${s.warmupSeconds} s of warm-up; ratios are taken within each round. ` +
    `${m.cpu}, ${m.memoryGiB} GiB, ${m.os}, Node ${m.node}, Fastify ${m.fastify}, autocannon ${m.autocannon}; ` +
    `load average ${results.loadAverage.before.map((l) => l.toFixed(1)).join(' ')} before, ${results.loadAverage.after.map((l) => l.toFixed(1)).join(' ')} after. ${results.date}.`, '')
  return lines.join('\n')
}

const escape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

/** The targets that are ratios to (a), drawn as markers on the chart. */
const RATIO_TARGETS: Record<string, number> = { 'b small': 0.95, 'b large': 0.97, 'c small': 0.88, 'c large': 0.88 }

/** A horizontal bar chart of each case's req/s ratio to (a), one bar per body. */
export function renderSvg (results: Results): string {
  const colours = ['#3b82f6', '#f59e0b']
  const cap = 1.5
  const left = 320
  const plot = 380
  const barH = 14
  const gap = 4
  const groupGap = 14
  const top = 48
  const bodies = results.bodies
  const cases = results.cases
  const groupH = bodies.length * (barH + gap) + groupGap
  const height = top + cases.length * groupH + 52
  const width = left + plot + 70
  const x = (ratio: number) => left + Math.min(ratio, cap) / cap * plot
  const n = (value: number) => value.toFixed(1)
  const out: string[] = []
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="12">`)
  out.push(`<rect width="${width}" height="${height}" fill="#fff"/>`)
  out.push('<text x="12" y="18" font-size="14" font-weight="600">Requests per second, as a ratio to a bare Fastify route (a): higher is better</text>')
  bodies.forEach((b, i) => {
    const lx = 12 + i * 190
    out.push(`<rect x="${lx}" y="27" width="10" height="10" fill="${colours[i]}"/><text x="${lx + 14}" y="36">${escape(b.label)}</text>`)
  })
  out.push(`<path d="M${12 + bodies.length * 190},26 v12" stroke="#dc2626" stroke-width="2" stroke-dasharray="3,2"/><text x="${18 + bodies.length * 190}" y="36">target</text>`)
  for (const tick of [0, 0.25, 0.5, 0.75, 1, 1.25, 1.5]) {
    const tx = n(x(tick))
    out.push(`<line x1="${tx}" y1="${top - 4}" x2="${tx}" y2="${height - 42}" stroke="${tick === 1 ? '#111' : '#e5e7eb'}" stroke-width="${tick === 1 ? 1.5 : 1}"/>`)
    out.push(`<text x="${tx}" y="${height - 28}" text-anchor="middle" fill="#374151">${tick === cap ? `≥${tick}` : tick}</text>`)
  }
  cases.forEach((c, ci) => {
    const gy = top + ci * groupH
    out.push(`<text x="${left - 8}" y="${gy + (bodies.length * (barH + gap)) / 2 + 3}" text-anchor="end" fill="#111">(${c.name}) ${escape(c.label)}</text>`)
    bodies.forEach((b, bi) => {
      const s = results.summary.find((r) => r.case === c.name && r.body === b.name)
      if (s === undefined) return
      const y = gy + bi * (barH + gap)
      const w = x(s.ratioToA) - left
      out.push(`<rect x="${left}" y="${y}" width="${n(w)}" height="${barH}" fill="${colours[bi]}"><title>${escape(`(${c.name}) ${b.label}: ${fixed(s.ratioToA, 3)} × (a)`)}</title></rect>`)
      if (s.ratioToA > cap) {
        // Broken bar: the value is written, not drawn to scale.
        out.push(`<path d="M${n(left + w - 14)},${y - 1} l6,${barH + 2} M${n(left + w - 8)},${y - 1} l6,${barH + 2}" stroke="#fff" stroke-width="3"/>`)
      }
      const target = RATIO_TARGETS[`${c.name} ${b.name}`]
      if (target !== undefined) {
        out.push(`<path d="M${n(x(target))},${y - 2} v${barH + 4}" stroke="#dc2626" stroke-width="2" stroke-dasharray="3,2"/>`)
      }
      out.push(`<text x="${n(Math.max(left + w, target === undefined ? 0 : x(target)) + 4)}" y="${y + barH - 3}" fill="#111">${fixed(s.ratioToA, 2)}×</text>`)
    })
  })
  const m = results.machine
  out.push(`<text x="12" y="${height - 8}" font-size="11" fill="#6b7280">${escape(`Median of ${(results.settings as { rounds: number }).rounds} interleaved rounds · ${m.cpu} · Node ${m.node} · Fastify ${m.fastify} · npm run bench`)}</text>`)
  out.push('</svg>')
  return out.join('\n') + '\n'
}
