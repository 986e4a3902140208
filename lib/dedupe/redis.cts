// The CommonJS entry of `fastify-langgraph-webhooks/redis`: the ES module, required.
import type * as esm from './redis.js' with { 'resolution-mode': 'import' }

export = require('./redis.js') as typeof esm
