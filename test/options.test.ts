import { test } from 'tap'
import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import langgraphWebhooks from '../lib/index.js'
import { resolveOptions } from '../lib/options.js'
import { TOKEN, buildApp } from './helpers/app.js'

async function registerWith (options: unknown) {
  const app = Fastify()
  await app.register(langgraphWebhooks, options as any)
  return app
}

test('bad options fail register with FST_LANGGRAPH_WEBHOOKS_INVALID_OPTION and say what to do', async (t) => {
  const store = { reserve () { return 'reserved' as const }, complete () {}, release () {} }
  const cases: Array<[string, unknown, RegExp]> = [
    ['no options', {}, /token is required.*randomBytes\(32\)/],
    ['empty token', { token: '' }, /token is required/],
    ['whitespace token', { token: '   ' }, /token is required/],
    ['empty token list', { token: [] }, /token is required/],
    ['a blank token in the list', { token: [TOKEN, ''] }, /token is required/],
    ['a numeric token', { token: 42 }, /token is required/],
    ['relative path', { token: TOKEN, path: 'webhooks' }, /path must be a URL path starting with "\/"/],
    ['path with a query', { token: TOKEN, path: '/hooks?x=1' }, /without query/],
    ['numeric path', { token: TOKEN, path: 5 }, /path must be/],
    ['no token source', { token: TOKEN, tokenSources: [] }, /tokenSources must be a non-empty array/],
    ['unknown token source', { token: TOKEN, tokenSources: ['cookie'] }, /"query" and\/or "bearer"/],
    ['token source not in an array', { token: TOKEN, tokenSources: 'query' }, /tokenSources/],
    ['unknown ack', { token: TOKEN, ack: 'later' }, /ack must be "handled" or "received"/],
    ['non-boolean redactToken', { token: TOKEN, redactToken: 'yes' }, /redactToken must be a boolean/],
    ['non-function onRun', { token: TOKEN, onRun: 'log' }, /onRun must be a function/],
    ['plain object valuesSchema', { token: TOKEN, valuesSchema: { type: 'object' } }, /valuesSchema must be a TypeBox schema/],
    ['null valuesSchema', { token: TOKEN, valuesSchema: null }, /valuesSchema must be a TypeBox schema/],
    ['negative bodyLimit', { token: TOKEN, bodyLimit: -1 }, /bodyLimit must be a positive integer/],
    ['fractional maxAgeMs', { token: TOKEN, maxAgeMs: 1.5 }, /maxAgeMs must be a positive integer/],
    ['string listenerTimeoutMs', { token: TOKEN, listenerTimeoutMs: '10' }, /listenerTimeoutMs must be a positive integer/],
    ['string dedupe', { token: TOKEN, dedupe: 'yes' }, /dedupe must be true, false, or/],
    ['null dedupe', { token: TOKEN, dedupe: null }, /dedupe must be true, false, or/],
    ['array dedupe', { token: TOKEN, dedupe: [] }, /dedupe must be true, false, or/],
    ['incomplete store', { token: TOKEN, dedupe: { store: { reserve () {} } } }, /dedupe\.store must implement reserve/],
    ['null store', { token: TOKEN, dedupe: { store: null } }, /dedupe\.store must implement/],
    ['zero ttlMs', { token: TOKEN, dedupe: { store, ttlMs: 0 } }, /dedupe\.ttlMs must be a positive integer/],
    ['misspelt option', { token: TOKEN, redactTokens: false }, /unknown option "redactTokens"; the options are: token, path, /]
  ]
  for (const [name, options, message] of cases) {
    await t.rejects(registerWith(options), { code: 'FST_LANGGRAPH_WEBHOOKS_INVALID_OPTION', message }, name)
  }
})

test('resolveOptions refuses a non-object', async (t) => {
  t.throws(() => resolveOptions(null), { code: 'FST_LANGGRAPH_WEBHOOKS_INVALID_OPTION', message: /options must be an object/ })
  t.throws(() => resolveOptions('token'), { code: 'FST_LANGGRAPH_WEBHOOKS_INVALID_OPTION' })
})

test('defaults', async (t) => {
  const options = resolveOptions({ token: TOKEN })
  t.equal(options.path, '/webhooks/langgraph')
  t.equal(options.bodyLimit, 10 * 1024 * 1024)
  t.equal(options.ack, 'handled')
  t.equal(options.redactToken, true)
  t.same([...options.tokenSources], ['query', 'bearer'])
  t.equal(options.dedupe, undefined, 'dedupe is off by default')
  t.equal(options.maxAgeMs, undefined, 'the replay window is off by default')
  t.equal(options.listenerTimeoutMs, 25_000)
  const dedupe = resolveOptions({ token: TOKEN, dedupe: true }).dedupe!
  t.same({ ttlMs: dedupe.ttlMs, leaseMs: dedupe.leaseMs }, { ttlMs: 3_600_000, leaseMs: 60_000 })
  t.equal(typeof dedupe.store.reserve, 'function', 'an in-memory store when none is given')
  t.equal(resolveOptions({ token: TOKEN, dedupe: false }).dedupe, undefined)
})

test('valid options of every kind are accepted, with Fastify\'s own register options', async (t) => {
  const app = await registerWith({
    token: [TOKEN, `${TOKEN}-old`],
    path: '/hooks',
    tokenSources: ['bearer'],
    bodyLimit: 1024,
    ack: 'received',
    redactToken: false,
    onRun () {},
    valuesSchema: Type.Object({}),
    dedupe: { ttlMs: 1000, leaseMs: 500, maxKeys: 10 },
    maxAgeMs: 60_000,
    listenerTimeoutMs: 1000,
    logLevel: 'warn'
  })
  await app.ready()
  t.equal(app.langgraphWebhooks.path, '/hooks')
})

test('a token shorter than 32 characters gets one warning at registration', async (t) => {
  const { lines } = await buildApp({ token: ['short-token', TOKEN] })
  const warnings = lines.map((line) => JSON.parse(line)).filter((entry) => entry.level === 40)
  t.equal(warnings.length, 1)
  t.match(warnings[0].msg, /shorter than 32 characters.*randomBytes\(32\)\.toString\('hex'\)/)
  t.notMatch(warnings[0].msg, /short-token/, 'the warning does not quote the token')

  const { lines: quiet } = await buildApp({ token: TOKEN })
  t.equal(quiet.map((line) => JSON.parse(line)).filter((entry) => entry.level === 40).length, 0)
})

test('a nested option object is checked as strictly as the top level', async (t) => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['misspelt ttlMs', { ttl: 5 }, /unknown option "dedupe\.ttl"; the options of dedupe are: store, ttlMs, leaseMs, maxKeys/],
    ['misspelt maxKeys', { maxkeys: 5 }, /unknown option "dedupe\.maxkeys"/],
    ['a string ttlMs', { ttlMs: '5000' }, /dedupe\.ttlMs must be a positive integer of milliseconds, got the string "5000" \(convert it first/]
  ]
  for (const [name, dedupe, message] of cases) {
    await t.rejects(registerWith({ token: TOKEN, dedupe }), { code: 'FST_LANGGRAPH_WEBHOOKS_INVALID_OPTION', message }, name)
  }
})

test('a number option given as a string says it got a string', async (t) => {
  for (const name of ['listenerTimeoutMs', 'maxAgeMs']) {
    await t.rejects(registerWith({ token: TOKEN, [name]: '5000' }), {
      code: 'FST_LANGGRAPH_WEBHOOKS_INVALID_OPTION',
      message: new RegExp(`^${name} must be a positive integer of milliseconds, got the string "5000" \\(convert it first, e\\.g\\. Number\\(process\\.env\\.X\\)\\)$`)
    }, name)
  }
  await t.rejects(registerWith({ token: TOKEN, bodyLimit: '10mb' }), {
    message: 'bodyLimit must be a positive integer of bytes (e.g. 10 * 1024 * 1024), got the string "10mb" (convert it first, e.g. Number(process.env.X))'
  }, 'bodyLimit names bytes, not milliseconds')
  await t.rejects(registerWith({ token: TOKEN, dedupe: { maxKeys: 0 } }), { message: 'dedupe.maxKeys must be a positive integer, got 0' }, 'a count names no unit')
  await t.rejects(registerWith({ token: TOKEN, listenerTimeoutMs: -5 }), { message: /got -5$/ }, 'a number is quoted as a number')
  await t.rejects(registerWith({ token: TOKEN, listenerTimeoutMs: null }), { message: /got null$/ })
  await t.rejects(registerWith({ token: TOKEN, listenerTimeoutMs: [5] }), { message: /got an array$/ })
  await t.rejects(registerWith({ token: TOKEN, listenerTimeoutMs: {} }), { message: /got an object$/ })
  await t.rejects(registerWith({ token: TOKEN, listenerTimeoutMs: () => 5 }), { message: /got a function$/ })
})

test('every nested option object is checked the same way', async (t) => {
  const nested: Array<[string, string]> = [
    ['openapi', 'summary, description, tags, hide'],
    ['langgraph', 'client, webhookUrl, reconcileAfterMs, reconcileEveryMs'],
    ['queue', 'connection, name, attempts, backoffMs, concurrency, worker, lockMs, addTimeoutMs, keepCompletedMs, keepFailedMs, waitForReplicas']
  ]
  for (const [name, keys] of nested) {
    const refused = (value: unknown) => () => resolveOptions({ token: TOKEN, [name]: value })
    t.throws(refused({ c: 1 }), { code: 'FST_LANGGRAPH_WEBHOOKS_INVALID_OPTION', message: `unknown option "${name}.c"; the options of ${name} are: ${keys}` })
    t.throws(refused('x'), { message: `${name} must be an object { ${keys} }, got the string "x"` })
    t.throws(refused([]), { message: /got an array$/ })
    t.throws(refused(null), { message: /got null$/ })
  }
})

test('a token the Authorization header cannot carry is refused at registration', async (t) => {
  const ascii = 'a'.repeat(40)
  const cases: Array<[string, unknown, RegExp]> = [
    ['non-ASCII', 'tökén-0123456789abcdef0123456789abcdef', /^the token holds a character other than visible ASCII \(! to ~, no spaces\): Node reads the Authorization header as latin1/],
    ['an emoji', `${ascii}🔑`, /the token holds a character other than visible ASCII/],
    ['an inner space', `${ascii} ${ascii}`, /the token holds a character other than visible ASCII/],
    ['a leading space', ` ${ascii}`, /the token holds/],
    ['a tab', `${ascii}\t`, /the token holds/],
    ['a control character', `${ascii}\u0000`, /the token holds/],
    ['the second of a list', [ascii, `${ascii}é`], /^token\[1\] holds a character other than visible ASCII/]
  ]
  for (const [name, token, message] of cases) {
    await t.rejects(registerWith({ token }), { code: 'FST_LANGGRAPH_WEBHOOKS_INVALID_OPTION', message }, name)
  }
  const err = await registerWith({ token: `${ascii}é` }).catch((error: Error) => error)
  t.notMatch(String((err as Error).message), ascii, 'the message does not quote the token')
  // Every visible ASCII character is accepted.
  const visible = Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => String.fromCharCode(0x21 + i)).join('')
  const app = await registerWith({ token: visible })
  const res = await app.inject({ method: 'POST', url: '/webhooks/langgraph', headers: { authorization: `Bearer ${visible}`, 'content-type': 'application/json' }, payload: '{}' })
  t.equal(res.statusCode, 400, 'a visible-ASCII token verifies as a bearer token (the body is then refused)')
})
