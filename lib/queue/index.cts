// The CommonJS entry of `fastify-langgraph-webhooks/queue`: the ES module, required.
import type * as esm from './index.js' with { 'resolution-mode': 'import' }

export = require('./index.js') as typeof esm
