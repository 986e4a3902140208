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

test('a status listed twice subscribes once; off() removes exactly one subscription', async (t) => {
  const listeners = new RunListeners()
  const calls: string[] = []
  const offAll = listeners.on(() => { calls.push('all') })
  const offTwice = listeners.on(['success', 'success', 'error'], () => { calls.push('listed') })
  const same = (): void => { calls.push('same') }
  const offAgain = listeners.on('success', same)
  listeners.on('success', same)
  const reached = async (status: string): Promise<string[]> => {
    calls.length = 0
    await listeners.dispatch(buildRunWebhook({ status: status as 'success' }), context)
    return [...calls].sort()
  }
  t.same(await reached('success'), ['all', 'listed', 'same', 'same'], 'a status listed twice subscribes once')
  t.same(await reached('error'), ['all', 'listed'])
  t.same(await reached('timeout'), ['all'])
  offAgain()
  t.same(await reached('success'), ['all', 'listed', 'same'], 'the same function subscribed twice: one unsubscribe leaves the other')
  offTwice()
  offAll()
  t.same(await reached('error'), [])
})

test('dispatch() runs matching listeners concurrently and gathers failures into one AggregateError', async (t) => {
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
  const error = await listeners.dispatch(run, context)!.then(() => undefined, (e: unknown) => e) as AggregateError
  t.ok(error instanceof AggregateError)
  t.equal(error.message, `2 listeners failed for run ${run.run_id} (error)`)
  t.same(error.errors.map((e: Error) => e.message).sort(), ['rejected', 'thrown'])
  t.same(events, ['slow start', 'fast', 'slow end'], 'the slow listener did not hold the others back, and was awaited')
})

test('dispatch() runs synchronous listeners before it returns, with nothing to wait for, and rejects for a synchronous throw', async (t) => {
  const listeners = new RunListeners()
  t.equal(listeners.dispatch(buildRunWebhook(), context), undefined, 'no listener: nothing to wait for')
  let calls = 0
  listeners.on(() => { calls++ })
  t.equal(listeners.dispatch(buildRunWebhook(), context), undefined, 'a synchronous listener: nothing to wait for')
  t.equal(calls, 1, 'one synchronous listener ran before dispatch() returned')
  listeners.on('success', () => 'a value')
  t.equal(listeners.dispatch(buildRunWebhook(), context), undefined, 'a returned value that is not a promise is not waited for')
  t.equal(calls, 2)
  listeners.on(() => { throw new Error('sync') })
  await t.rejects(listeners.dispatch(buildRunWebhook(), context)!, { message: /1 listener failed for run/ })
  const single = new RunListeners()
  const off = single.on(() => { throw new Error('alone') })
  await t.rejects(single.dispatch(buildRunWebhook(), context)!, { message: /1 listener failed for run/ })
  off()
  single.on(async () => { throw new Error('later') })
  const rejected = await single.dispatch(buildRunWebhook(), context)!.then(() => undefined, (e: unknown) => e) as AggregateError
  t.ok(rejected instanceof AggregateError, 'one listener that rejects: an AggregateError too')
  t.same(rejected.errors.map((e: Error) => e.message), ['later'])
})

test('dispatch() awaits thenables that are not native promises', async (t) => {
  const listeners = new RunListeners()
  let settled = false
  listeners.on(() => ({ then (resolve: () => void) { setTimeout(() => { settled = true; resolve() }, 10) } }))
  await listeners.dispatch(buildRunWebhook(), context)
  t.ok(settled)
  let called = false
  const fn = Object.assign(() => {}, { then: (resolve: () => void) => { called = true; resolve() } })
  const other = new RunListeners()
  other.on(() => fn)
  await other.dispatch(buildRunWebhook(), context)
  t.ok(called, 'a thenable function is awaited too')
})

test('a listener that unsubscribes during a delivery does not disturb the others', async (t) => {
  const listeners = new RunListeners()
  const seen: string[] = []
  const off = listeners.on(() => { seen.push('once'); off() })
  listeners.on(() => { seen.push('always') })
  await listeners.dispatch(buildRunWebhook(), context)
  await listeners.dispatch(buildRunWebhook(), context)
  t.same(seen, ['once', 'always', 'always'])
})
