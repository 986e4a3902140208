// A LangGraph StateGraph that needs no LLM, for the demo and the end-to-end tests.
// It is loaded by the real LangGraph server (`graphs: { echo: '<this file>:graph' }`).
//
// The last message of the input picks the behaviour:
//   'fail:<text>'  the node throws `Error('echo graph failed: <text>')`
//   'sleep:<ms>'   the node sleeps <ms> ms first (aborted early when the run is cancelled)
//   'ask:<text>'   the node calls interrupt(<text>); resumed with `command: { resume: v }`,
//                  it appends `resume:<v>`
//   anything else  the node appends `echo:<n>`, n being the number of messages so far
import { Annotation, StateGraph, START, END, interrupt } from '@langchain/langgraph'
import type { LangGraphRunnableConfig } from '@langchain/langgraph'

export const FAIL_PREFIX = 'echo graph failed: '

const State = Annotation.Root({
  messages: Annotation<string[]>({
    reducer: (left, right) => left.concat(right),
    default: () => []
  })
})

function sleep (ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason)
    const onAbort = () => {
      clearTimeout(timer)
      reject(signal!.reason)
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

async function respond (state: typeof State.State, config: LangGraphRunnableConfig) {
  const last = state.messages.at(-1) ?? ''
  const n = state.messages.length
  if (last.startsWith('fail:')) {
    throw new Error(FAIL_PREFIX + last.slice('fail:'.length))
  }
  if (last.startsWith('sleep:')) {
    await sleep(Number(last.slice('sleep:'.length)), config.signal)
  }
  if (last.startsWith('ask:')) {
    const answer = interrupt(last.slice('ask:'.length))
    return { messages: [`echo:${n}`, `resume:${String(answer)}`] }
  }
  return { messages: [`echo:${n}`] }
}

export const graph = new StateGraph(State)
  .addNode('respond', respond)
  .addEdge(START, 'respond')
  .addEdge('respond', END)
  .compile()
