// The CommonJS entry: `require('fastify-langgraph-webhooks')` returns the
// plugin itself, carrying every named export, as CommonJS Fastify plugins do,
// so that `app.register(require('fastify-langgraph-webhooks'), options)` and
// `const { RunSchema } = require('fastify-langgraph-webhooks')` both work and
// type-check. It loads the ES module (Node's require of ES modules), so both
// entries share one instance of every class and schema.
import type * as esm from './index.js' with { 'resolution-mode': 'import' }

const library: typeof esm = require('./index.js')

export = Object.assign(library.default, library) as typeof esm.default & typeof esm
