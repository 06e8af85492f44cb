import type { FastifyInstance } from 'fastify'
import { buildApp, type BuildOptions } from '../../src/app.js'
import { loadConfig } from '../../src/config/index.js'
import { TEST_API_KEY, TEST_SECRET } from './tokens.js'

export interface RunningApp {
  app: FastifyInstance
  http: string
  ws: string
  api (path: string, init?: { method?: string, body?: unknown, key?: string, headers?: Record<string, string> }): Promise<{ status: number, body: any }>
  close (): Promise<void>
}

/** An in-process node on 127.0.0.1 and a kernel-chosen port. */
export async function startApp (env: Record<string, string> = {}, opts: BuildOptions = {}): Promise<RunningApp> {
  // Limits are raised (all clients share 127.0.0.1); tests about limits set them explicitly.
  // The gateway's own events are off, as in BASE_ENV (helpers/node.ts), and on where tests are about them.
  const config = loadConfig({
    NODE_ENV: 'test', JWT_SECRET: TEST_SECRET, API_KEYS: TEST_API_KEY, LOG_LEVEL: 'silent', HOST: '127.0.0.1', PORT: '0',
    MAX_CONNECTIONS_PER_IP: '100000', MAX_CONNECTIONS_PER_USER: '1000', MAX_MESSAGES_PER_MINUTE: '1000000', GATEWAY_EVENTS: 'none',
    ...env,
  })
  const app = await buildApp(config, opts)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  const http = `http://127.0.0.1:${port}`
  return {
    app,
    http,
    ws: `ws://127.0.0.1:${port}`,
    async api (path, init = {}) {
      const headers: Record<string, string> = { ...init.headers }
      if (init.key !== '') headers.authorization = `Bearer ${init.key ?? TEST_API_KEY}`
      if (init.body !== undefined) headers['content-type'] = 'application/json'
      const res = await fetch(http + path, { method: init.method ?? (init.body !== undefined ? 'POST' : 'GET'), headers, body: init.body !== undefined ? JSON.stringify(init.body) : undefined })
      const text = await res.text()
      let body: unknown = text
      try { body = JSON.parse(text) } catch {}
      return { status: res.status, body }
    },
    async close () { await app.close() },
  }
}
