import Fastify from 'fastify'
import type { Job, Queue, Worker } from 'bullmq'
import { expectTypeOf } from 'expect-type'
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter'
import langgraphWebhooks from 'fastify-langgraph-webhooks'
import { createRunWorker } from 'fastify-langgraph-webhooks/queue'

const app = Fastify()
await app.register(langgraphWebhooks, { token: 'x'.repeat(32), queue: { connection: 'redis://127.0.0.1:6379' } })

// The plugin's BullMQ Queue, as the worker's `bullmq` is its Worker: for BullMQ's own API and bull-board.
const queue = app.langgraphWebhooks.queue.bullmq
expectTypeOf(queue).toEqualTypeOf<Queue>()
expectTypeOf(createRunWorker({ connection: 'redis://127.0.0.1:6379' }).bullmq).toEqualTypeOf<Worker>()
expectTypeOf(queue.getFailed(0, 9)).toExtend<Promise<Job[]>>()
expectTypeOf(new BullMQAdapter(queue, { readOnlyMode: true })).toEqualTypeOf<BullMQAdapter>()
// Read-only: the plugin owns the queue (and closes it).
// @ts-expect-error
app.langgraphWebhooks.queue.bullmq = queue
