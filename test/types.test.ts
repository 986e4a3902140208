// The type tests of types/ (tsd), run in tap's pool beside the other files
// rather than after them: `npm run test:types` runs them alone.
import t from 'tap'
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { resolve } from 'node:path'

// tsd is CommonJS, its function under `default`.
const { default: tsd, formatter } = createRequire(import.meta.url)('tsd') as typeof import('tsd')

t.test('the declarations type-check as types/ expects (tsd)', async (t) => {
  const root = resolve(import.meta.dirname, '..')
  t.ok(existsSync(resolve(root, 'dist/index.d.ts')), 'dist/ is built (npm test builds it first)')
  const diagnostics = await tsd({ cwd: root })
  t.equal(formatter(diagnostics), '', 'no type test failed')
})
