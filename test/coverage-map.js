// Coverage is measured on the library: test helpers, examples and the
// end-to-end harness are not part of the published package.
import { readdirSync } from 'node:fs'

const library = readdirSync('lib', { recursive: true })
  .filter((file) => file.endsWith('.ts'))
  .map((file) => `lib/${file}`)

export default function coverageMap (testFile) {
  // It exercises the packed package (dist/), not lib/: no coverage to take,
  // and recording it would slow its compilers down.
  if (testFile === 'test/published.test.ts') return null
  return library
}
