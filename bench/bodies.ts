/**
 * The request bodies of the benchmark: the real body the open-source
 * LangGraph JS server sent (byte for byte, see /work/shared/langgraph-webhooks.md)
 * and the same run whose `values` (a thread of chat messages) makes it 1 MiB.
 *
 * Every request gets a unique `run_id` (the last 12 hex digits are rewritten
 * in place, same length), in every case alike, so that the dedupe case sees
 * new deliveries and every case gets the very same bytes otherwise.
 */

/** The body the JS server POSTed for a finished thread run (1,065 bytes). */
export const REAL_BODY = '{"run_id":"01a220ec-e30f-707b-b63b-d7432b31f88f","thread_id":"01a220ec-e306-707e-86dd-b76222b433ba","assistant_id":"046b5dc7-2108-582c-9c6c-31d556d138f0","metadata":{"created_by":"system","graph_id":"echo","assistant_id":"046b5dc7-2108-582c-9c6c-31d556d138f0"},"status":"success","kwargs":{"input":{"messages":["hi"]},"config":{"configurable":{"user-agent":"node","run_id":"01a220ec-e30f-707b-b63b-d7432b31f88f","thread_id":"01a220ec-e306-707e-86dd-b76222b433ba","graph_id":"echo","assistant_id":"046b5dc7-2108-582c-9c6c-31d556d138f0"},"metadata":{"created_by":"system","graph_id":"echo","assistant_id":"046b5dc7-2108-582c-9c6c-31d556d138f0"}},"context":{},"stream_mode":["values"],"webhook":"http://127.0.0.1:9911/hook?token=abc","temporary":false,"subgraphs":false,"resumable":false},"multitask_strategy":"reject","created_at":"2026-11-28T06:52:05.263Z","updated_at":"2026-11-28T06:52:05.326Z","run_started_at":"2026-11-28T06:52:05.285Z","run_ended_at":"2026-11-28T06:52:05.325Z","webhook_sent_at":"2026-11-28T06:52:05.326Z","values":{"messages":["hi","echo:1"]}}'

export const MIB = 1024 * 1024

/**
 * The real body with `values.messages` grown to a long chat thread (messages
 * shaped like LangChain's serialised ones) so that the body is exactly 1 MiB.
 */
function buildLargeBody (size: number): string {
  const run = JSON.parse(REAL_BODY) as { values: { messages: unknown[] } }
  const messages: unknown[] = []
  run.values = { messages }
  const empty = JSON.stringify(run).length
  const text = 'The quick brown fox jumps over the lazy dog; a long answer from the model, with some numbers 0123456789. '
  // Each message adds its JSON and a comma: add messages while they fit.
  let length = empty - 1
  for (let i = 0; ; i++) {
    const message = {
      type: i % 2 === 0 ? 'human' : 'ai',
      content: text.repeat(3),
      id: `msg-${String(i).padStart(6, '0')}`,
      additional_kwargs: {},
      response_metadata: i % 2 === 0 ? {} : { model_name: 'bench-model', finish_reason: 'stop' }
    }
    const added = JSON.stringify(message).length + 1
    if (length + added > size) break
    messages.push(message)
    length += added
  }
  // Pad the last message's content to the exact size.
  const last = messages.at(-1) as { content: string }
  last.content += 'x'.repeat(size - JSON.stringify(run).length)
  const body = JSON.stringify(run)
  if (Buffer.byteLength(body) !== size) throw new Error(`large body is ${Buffer.byteLength(body)} bytes, not ${size}`)
  return body
}

export interface BenchBody {
  readonly name: string
  readonly label: string
  readonly buffer: Buffer
  /** Byte offset of the 12 hex digits at the end of the top-level run_id. */
  readonly idOffset: number
}

function bench (name: string, label: string, json: string): BenchBody {
  const buffer = Buffer.from(json, 'utf8')
  const idOffset = json.indexOf('"run_id":"') + '"run_id":"'.length + 24
  if (!/^[0-9a-f]{12}"$/.test(json.slice(idOffset, idOffset + 13))) throw new Error('run_id not found')
  return { name, label, buffer, idOffset }
}

export const BODIES: readonly BenchBody[] = [
  bench('small', 'real JS-server body', REAL_BODY),
  bench('large', '1 MiB body (long values)', buildLargeBody(MIB))
]

/**
 * Writes a unique run_id into `body` (in place): the counter, in 12 hex
 * digits, replaces the end of the UUID.
 */
export function stampRunId (body: BenchBody, counter: number): void {
  body.buffer.write(counter.toString(16).padStart(12, '0').slice(-12), body.idOffset, 'latin1')
}
