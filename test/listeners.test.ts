import { test } from 'tap'
import { RunListeners, type RunContext } from '../lib/listeners.js'
import { buildRunWebhook } from '../lib/testing.js'

const context = {} as RunContext

test('on() refuses what is not a listener or a status', async (t) => {
  const listeners = new RunListeners()
  t.throws(() => listeners.on('success'), TypeError)
  t.throws(() => listeners.on('success', 'not a function'), TypeError)
  t.throws(() => listeners.on([], () => {}), /non-empty array/)
  t.throws(() => listeners.on([''], () => {}), /non-empty array/)
  t.throws(() => listeners.on(42, () => {}), /give a run status/)
})

test('count() tells how many listeners a status reaches; off() removes exactly one subscription', async (t) => {
  const listeners = new RunListeners()
  const listener = () => {}
  const offAll = listeners.on(listener)
  const offTwice = listeners.on(['success', 'success', 'error'], listener)
  const offAgain = listeners.on('success', listener)
  t.equal(listeners.count('success'), 3, 'a status listed twice subscribes once')
  t.equal(listeners.count('error'), 2)
  t.equal(listeners.count('timeout'), 1)
  offAgain()
  t.equal(listeners.count('success'), 2, 'the same function subscribed twice: one unsubscribe leaves the other')
  offTwice()
  offAll()
  t.equal(listeners.count('success'), 0)
  t.equal(listeners.count('error'), 0)
})

test('receive() runs matching listeners concurrently and gathers failures into one AggregateError', async (t) => {
  const listeners = new RunListeners()
  const events: string[] = []
  listeners.on(async () => {
    events.push('slow start')
    await new Promise((resolve) => setTimeout(resolve, 30))
    events.push('slow end')
  })
  listeners.on('error', async () => {
    events.push('fast')
    throw new Error('rejected')
  })
  listeners.on(['error'], () => { throw new Error('thrown') })
  listeners.on('success', () => { events.push('not reached') })
  const run = buildRunWebhook({ status: 'error', error: 'x' })
  const outcome = listeners.receive(run, context)
  if (!(outcome instanceof Promise)) throw new Error('receive() answered at once although a listener returned a promise')
  const error = await outcome.then(() => undefined, (e: unknown) => e) as AggregateError
  t.ok(error instanceof AggregateError)
  t.equal(error.message, `2 listeners failed for run ${run.run_id} (error)`)
  t.same(error.errors.map((e: Error) => e.message).sort(), ['rejected', 'thrown'])
  t.same(events, ['slow start', 'fast', 'slow end'], 'the slow listener did not hold the others back, and was awaited')
})

test('receive() answers synchronous listeners without a promise, and rejects for a synchronous throw', async (t) => {
  const listeners = new RunListeners()
  t.equal(listeners.receive(buildRunWebhook(), context), undefined, 'no listener: nothing to wait for')
  let calls = 0
  listeners.on(() => { calls++ })
  t.equal(listeners.receive(buildRunWebhook(), context), undefined, 'one synchronous listener: no promise')
  listeners.on('success', () => 'a value')
  t.equal(listeners.receive(buildRunWebhook(), context), undefined, 'two synchronous listeners: no promise')
  t.equal(calls, 2, 'each synchronous listener ran before receive() returned')
  listeners.on(() => { throw new Error('sync') })
  await t.rejects(async () => await listeners.receive(buildRunWebhook(), context), { message: /1 listener failed for run/ })
  const single = new RunListeners()
  const off = single.on(() => { throw new Error('alone') })
  await t.rejects(async () => await single.receive(buildRunWebhook(), context), { message: /1 listener failed for run/ })
  off()
  single.on(async () => { throw new Error('later') })
  const rejected = await single.receive(buildRunWebhook(), context)?.then(() => undefined, (e: unknown) => e) as AggregateError
  t.ok(rejected instanceof AggregateError, 'one listener that rejects: an AggregateError too')
  t.same(rejected.errors.map((e: Error) => e.message), ['later'])
})

test('receive() awaits thenables that are not native promises', async (t) => {
  const listeners = new RunListeners()
  let settled = false
  listeners.on(() => ({ then (resolve: () => void) { setTimeout(() => { settled = true; resolve() }, 10) } }))
  await listeners.receive(buildRunWebhook(), context)
  t.ok(settled)
  const fn = Object.assign(() => {}, { then: (resolve: () => void) => resolve() })
  const other = new RunListeners()
  other.on(() => fn)
  t.ok(other.receive(buildRunWebhook(), context) instanceof Promise, 'a thenable function counts too')
})

test('a listener that unsubscribes during a delivery does not disturb the others', async (t) => {
  const listeners = new RunListeners()
  const seen: string[] = []
  const off = listeners.on(() => { seen.push('once'); off() })
  listeners.on(() => { seen.push('always') })
  listeners.receive(buildRunWebhook(), context)
  listeners.receive(buildRunWebhook(), context)
  t.same(seen, ['once', 'always', 'always'])
})
