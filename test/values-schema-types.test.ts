import { test } from 'tap'
import { execFile } from 'node:child_process'
import { cp, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)
const root = resolve(import.meta.dirname, '..')
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')

// The declarations name TypeBox 1.x's types for its users; a project with
// neither typebox nor zod installed must still compile against them, with
// its library checks on.
test('the built declarations compile in a project without typebox or zod, skipLibCheck off', async (t) => {
  const consumer = await mkdtemp(join(tmpdir(), 'lgw-types-'))
  t.teardown(() => rm(consumer, { recursive: true, force: true }))
  const modules = join(consumer, 'node_modules')
  await mkdir(join(modules, 'fastify-langgraph-webhooks'), { recursive: true })
  // A copy, not a link: the repo's own node_modules (which has typebox) must not be found from it.
  await cp(join(root, 'dist'), join(modules, 'fastify-langgraph-webhooks', 'dist'), { recursive: true })
  await cp(join(root, 'package.json'), join(modules, 'fastify-langgraph-webhooks', 'package.json'))
  for (const name of ['fastify', '@sinclair', '@fastify', '@types']) await symlink(join(root, 'node_modules', name), join(modules, name), 'dir')
  await writeFile(join(consumer, 'package.json'), '{ "type": "module" }')
  await writeFile(join(consumer, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { strict: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', lib: ['es2022'], noEmit: true, skipLibCheck: false, types: ['node'] },
    files: ['app.ts']
  }))
  const app = `
    import Fastify from 'fastify'
    import { Type } from '@sinclair/typebox'
    import langgraphWebhooks, { type StandardSchemaV1 } from 'fastify-langgraph-webhooks'
    // A hand-made Standard Schema, as any validator library ships one.
    const Counted: StandardSchemaV1<unknown, { count: number }> = {
      '~standard': { version: 1, vendor: 'mine', validate: (value) => ({ value: value as { count: number } }) }
    }
    const app = Fastify()
    await app.register(langgraphWebhooks, { token: 'x'.repeat(32), valuesSchema: Counted })
    app.langgraphWebhooks.withValues(Counted).onRun((run) => { const count: number | undefined = run.values?.count; console.log(count) })
    const Legacy = Type.Object({ messages: Type.Array(Type.String()) })
    app.langgraphWebhooks.withValues(Legacy).onRun((run) => { const first: string | undefined = run.values?.messages[0]; console.log(first) })
    // @ts-expect-error the output type is precise, not any
    app.langgraphWebhooks.withValues(Counted).onRun((run) => { const wrong: string | undefined = run.values?.count; console.log(wrong) })
  `
  await writeFile(join(consumer, 'app.ts'), app)
  const compiled = await run(process.execPath, [tsc, '-p', '.'], { cwd: consumer }).then(() => '', (error) => String(error.stdout))
  t.equal(compiled, '', 'no type errors')

  // The control: typebox is indeed out of reach of this project.
  const control = await run(process.execPath, ['--input-type=module', '-e', "await import('typebox')"], { cwd: consumer }).then(() => '', (error) => String(error.stderr))
  t.match(control, /Cannot find package 'typebox'/)
})
