// The test processes' TypeScript: `node --import ./test/loader/register.mjs file.ts`
// (tap passes it to every test file, and spawned workers inherit it).
import { register } from 'node:module'

register('./hooks.mjs', import.meta.url)
