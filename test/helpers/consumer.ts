import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, rename, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, relative, resolve } from 'node:path'
import { promisify } from 'node:util'
import ts from 'typescript'

const run = promisify(execFile)
export const root = resolve(import.meta.dirname, '../..')

export interface Consumer {
  /** The consumer project; the package is installed in its node_modules, as `npm install` would. */
  dir: string
  /** The packed tarball, as it would be published. */
  tarball: string
  /** Writes a file of the consumer project. */
  write (file: string, text: string): Promise<string>
  remove (): Promise<void>
}

/**
 * Packs the built package (`npm pack`, without its scripts: `npm test` has
 * built dist/ already) and unpacks it into the node_modules of a fresh
 * project, beside links to this repository's dependencies: only the files
 * that would be published are there. `without` leaves dependencies out, as
 * a project that did not install them; `packed` reuses a tarball packed already.
 */
export async function createConsumer ({ without = [], packed }: { without?: string[], packed?: string } = {}): Promise<Consumer> {
  if (!existsSync(join(root, 'dist/index.js'))) throw new Error('dist/ is not built: run npm run build first')
  const dir = await mkdtemp(join(tmpdir(), 'lgw-consumer-'))
  const tarball = packed ?? await pack(dir)
  const modules = join(dir, 'node_modules')
  await mkdir(modules)
  await run('tar', ['xzf', tarball, '-C', dir])
  await rename(join(dir, 'package'), join(modules, 'fastify-langgraph-webhooks'))
  for (const entry of await readdir(join(root, 'node_modules'))) {
    if (!entry.startsWith('.') && !without.includes(entry)) await symlink(join(root, 'node_modules', entry), join(modules, entry), 'dir')
  }
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true }))
  return {
    dir,
    tarball,
    async write (file, text) {
      const path = join(dir, file)
      await writeFile(path, text)
      return path
    },
    remove: () => rm(dir, { recursive: true, force: true })
  }
}

async function pack (dir: string): Promise<string> {
  const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: root })
  return join(dir, JSON.parse(stdout)[0].filename)
}

/** What a consumer's compiler options share: strict, and the package's declarations checked (no skipLibCheck). */
export const consumerOptions: ts.CompilerOptions = {
  strict: true,
  noEmit: true,
  skipLibCheck: false,
  skipDefaultLibCheck: true,
  target: ts.ScriptTarget.ES2022,
  lib: ['lib.es2022.d.ts'],
  types: ['node'],
  allowJs: true,
  checkJs: true
}

const parsed = new Map<string, ts.SourceFile | undefined>()

/**
 * Type-checks `files` and the package's declarations under `options`. Only
 * the consumer's own files and the installed package are checked: the
 * dependencies' declarations (Fastify, Node) are their maintainers' concern,
 * and checking them would cost most of the time. Parsed files are shared
 * between calls, which keeps several resolutions cheap.
 */
export function typeCheck (consumer: Consumer, files: string[], options: ts.CompilerOptions): string[] {
  const host = ts.createCompilerHost(options)
  const getSourceFile = host.getSourceFile.bind(host)
  host.getSourceFile = (fileName, languageVersion, onError, shouldCreate) => {
    if (fileName.startsWith(consumer.dir) && !fileName.includes('node_modules')) {
      return getSourceFile(fileName, languageVersion, onError, shouldCreate)
    }
    const format = typeof languageVersion === 'object' ? `${languageVersion.languageVersion}:${languageVersion.impliedNodeFormat}` : languageVersion
    const key = `${format}:${fileName}`
    if (!parsed.has(key)) parsed.set(key, getSourceFile(fileName, languageVersion, onError, shouldCreate))
    return parsed.get(key)
  }
  const program = ts.createProgram({ rootNames: files, options: { ...consumerOptions, ...options }, host })
  const diagnostics = [...program.getOptionsDiagnostics(), ...program.getGlobalDiagnostics()]
  for (const source of program.getSourceFiles()) {
    if (!source.fileName.startsWith(consumer.dir)) continue
    const inDependency = source.fileName.includes('/node_modules/') && !source.fileName.includes('/node_modules/fastify-langgraph-webhooks/')
    if (inDependency) continue
    diagnostics.push(...program.getSyntacticDiagnostics(source), ...program.getSemanticDiagnostics(source))
  }
  return diagnostics.map((diagnostic) => {
    const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')
    if (diagnostic.file === undefined || diagnostic.start === undefined) return message
    const { line, character } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start)
    return `${relative(consumer.dir, diagnostic.file.fileName)}(${line + 1},${character + 1}): ${message}`
  })
}
