// Module hooks that run the TypeScript sources as they are, through esbuild:
// whitespace and lines kept, with an inline source map, so that coverage maps
// back to the TypeScript lines.
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { transform } from 'esbuild'

const target = `node${process.versions.node}`

export async function resolve (specifier, context, nextResolve) {
  try {
    return await nextResolve(specifier, context)
  } catch (error) {
    // The sources import each other as `./x.js` (NodeNext), tap's mocks by URL
    // (`…/x.js?tapmock=…`): the file is `x.ts`. Tried second, so that tap's
    // mocks still see the specifier as it is written.
    const source = specifier.replace(/\.js(\?.*)?$/, '.ts$1')
    if (error?.code !== 'ERR_MODULE_NOT_FOUND' || source === specifier) throw error
    return nextResolve(source, context)
  }
}

export async function load (url, context, nextLoad) {
  if (!url.startsWith('file:') || !new URL(url).pathname.endsWith('.ts')) return nextLoad(url, context)
  const path = fileURLToPath(url)
  const { code } = await transform(await readFile(path, 'utf8'), {
    loader: 'ts',
    format: 'esm',
    target,
    sourcefile: path,
    sourcemap: 'inline',
    tsconfigRaw: { compilerOptions: { useDefineForClassFields: true } }
  })
  return { format: 'module', source: code, shortCircuit: true }
}
