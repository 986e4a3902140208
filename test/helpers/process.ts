import type { Test } from 'tap'

/** What escaped to the process while the test ran (unhandled rejections, uncaught exceptions): checked at its end. */
export function watchProcess (t: Test): unknown[] {
  const escaped: unknown[] = []
  const record = (error: unknown): void => { escaped.push(error) }
  process.on('unhandledRejection', record)
  process.on('uncaughtException', record)
  t.teardown(() => {
    process.off('unhandledRejection', record)
    process.off('uncaughtException', record)
  })
  return escaped
}
