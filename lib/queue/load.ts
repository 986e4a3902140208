import { MissingPeerError } from '../errors.js'

export type Bullmq = typeof import('bullmq')
export interface Ioredis { Redis: typeof import('ioredis').Redis }

/** Loads an optional peer; a missing package becomes a registration error that says what to install. */
export async function loadPeer<T> (name: string, option: string, importer: () => Promise<T>): Promise<T> {
  try {
    return await importer()
  } catch (error) {
    const code = (error as { code?: unknown }).code
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new MissingPeerError(option, name, name)
    }
    throw error
  }
}

export function loadBullmq (): Promise<Bullmq> {
  return loadPeer('bullmq', 'queue', () => import('bullmq'))
}

export function loadIoredis (): Promise<Ioredis> {
  return loadPeer('ioredis', 'queue.connection (options or a URL)', () => import('ioredis'))
}
