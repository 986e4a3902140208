import { test } from 'tap'
import Fastify from 'fastify'
import plugin from '../lib/index.js'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'

test('smoke', async (t) => {
  const app = Fastify()
  await app.register(plugin, { token: 'x'.repeat(32) })
  const res = await deliverRun(app, buildRunWebhook(), { token: 'x'.repeat(32) })
  t.equal(res.statusCode, 204)
})
