import Fastify from 'fastify'
import { Cluster } from 'ioredis'
import langgraphWebhooks from 'fastify-langgraph-webhooks'
import { createRedisDedupeStore } from 'fastify-langgraph-webhooks/redis'
import { createRunWorker } from 'fastify-langgraph-webhooks/queue'

// An ioredis Cluster wherever the plugin takes a Redis client.
const cluster = new Cluster([{ host: '127.0.0.1', port: 7000 }], { lazyConnect: true })
const app = Fastify()
await app.register(langgraphWebhooks, { token: 'x'.repeat(32), redis: cluster, dedupe: true })
await app.register(langgraphWebhooks, { token: 'x'.repeat(32), queue: { connection: cluster, waitForReplicas: 1 } })
await app.register(langgraphWebhooks, { token: 'x'.repeat(32), dedupe: { store: createRedisDedupeStore(cluster, { prefix: 'app:' }) } })
createRunWorker({ connection: cluster })
// @ts-expect-error
app.register(langgraphWebhooks, { token: 'x'.repeat(32), queue: { connection: cluster, waitForReplicas: '1' } })
