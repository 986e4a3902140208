// The CommonJS entry of `fastify-langgraph-webhooks/testing`: the ES module, required.
import type * as esm from './testing.js' with { 'resolution-mode': 'import' }

export = require('./testing.js') as typeof esm
