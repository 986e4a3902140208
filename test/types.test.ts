// The type tests of types/ (expect-type, and @ts-expect-error where a use
// must not compile), checked against the built declarations as a user's
// compiler sees them, in tap's pool beside the other files.
import t from 'tap'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { resolve } from 'node:path'
import { promisify } from 'node:util'

t.test('the declarations type-check as types/ expects', async (t) => {
  const root = resolve(import.meta.dirname, '..')
  t.ok(existsSync(resolve(root, 'dist/index.d.ts')), 'dist/ is built (npm test builds it first)')
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
  const { code = 0, stdout, stderr }: { code?: number, stdout: string, stderr: string } = await promisify(execFile)(process.execPath, [tsc, '-p', resolve(root, 'types/tsconfig.json')])
    .catch((error: { code: number, stdout: string, stderr: string }) => error)
  t.equal(stdout + stderr, '', 'no type test failed')
  t.equal(code, 0, 'tsc succeeded')
})
