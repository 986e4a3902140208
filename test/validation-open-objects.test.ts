/**
 * The run check stays one compiled pass with no per-key work on open objects
 * (metadata, configurable, values...), which would cost more than the rest
 * of the check on a real body; and open objects still accept any keys.
 */
import t from 'tap'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { RunWebhookSchema } from '../lib/schemas.js'
import { buildRunWebhook } from '../lib/testing.js'
import { createRunValidator } from '../lib/schemas.js'

t.test('the compiled check walks no open object key by key', async (t) => {
  const code = TypeCompiler.Code(RunWebhookSchema, [], { language: 'javascript' })
  t.notMatch(code, /Object\.entries\(/)
})

t.test('open objects accept any keys and values', async (t) => {
  const validate = createRunValidator()
  for (const key of ['', 'a\nb', '__proto__x', 'ключ', '\u0000', ' ']) {
    const body = buildRunWebhook({ metadata: { [key]: 1 }, values: { [key]: { deep: [key] } }, kwargs: { config: { configurable: { [key]: null } } } })
    t.equal(validate(body), undefined, JSON.stringify(key))
  }
  t.match(String(validate(buildRunWebhook({ metadata: [] as any }))), /metadata: expected union value/, 'an array is not an open object')
})
