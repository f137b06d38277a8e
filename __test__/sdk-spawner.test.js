'use strict'
// sdkSpawner's process object, as the Agent SDK uses it, against the fast
// stand-in CLI (fixtures/fake-claude.js); the real SDK driving the real
// CLI through it is in claude-real.test.js.
const path = require('node:path')
const readline = require('node:readline')
const { ProcessRegistry, SessionStore, sdkSpawner } = require('..')
const { thrownCode } = require('./helpers')

const FAKE_CLAUDE = path.join(__dirname, 'fixtures', 'fake-claude.js')
const ARGS = [FAKE_CLAUDE, '-p', '--input-format', 'stream-json', '--output-format', 'stream-json', '--verbose']
const userLine = (text) =>
  `${JSON.stringify({ type: 'user', message: { role: 'user', content: [{ type: 'text', text }] } })}\n`

async function setup(opts = {}) {
  const store = SessionStore.inMemory()
  const sessionId = await store.createSession()
  const registry = new ProcessRegistry()
  const spawnProcess = sdkSpawner({ store, registry, sessionId, ...opts })
  const start = (extra = {}) =>
    spawnProcess({
      command: process.execPath,
      args: ARGS,
      env: { ...process.env, EREN_TEST_CHILD: '1', NOT_SET: undefined },
      signal: new AbortController().signal,
      ...extra,
    })
  return { store, sessionId, registry, start }
}

const exitOf = (proc) => new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })))

/** The CLI's stdout lines as the SDK reads them, until `stop` says so. */
async function readUntil(proc, stop) {
  const lines = []
  for await (const line of readline.createInterface({ input: proc.stdout })) {
    lines.push(line)
    if (stop(line)) break
  }
  return lines
}

test('the process object takes lines at once, streams stdout, and exits like a ChildProcess', async () => {
  const delivered = []
  const { store, sessionId, registry, start } = await setup({ onMessage: (m) => delivered.push(m.sequenceNumber) })
  const proc = start()
  expect(proc).toMatchObject({ killed: false, exitCode: null, signalCode: null })
  const exited = exitOf(proc)
  // Written before the run has started: queued, in order.
  proc.stdin.write(userLine('success'))
  const lines = await readUntil(proc, (line) => line.includes('"type":"result"'))
  expect(JSON.parse(lines.at(-1))).toMatchObject({ type: 'result', result: 'All done.' })
  expect(registry.sessionIds()).toEqual([sessionId])
  proc.stdin.end()
  expect(await exited).toEqual({ code: 0, signal: null })
  expect(proc).toMatchObject({ exitCode: 0, signalCode: null, killed: false })
  expect(registry.sessionIds()).toEqual([])
  const session = await store.getSession(sessionId)
  expect(session).toMatchObject({ agentStatus: 'idle', title: 'success', claudeSessionId: 'fake-claude-session-1' })
  const stored = (await store.messages(sessionId)).map((m) => JSON.parse(m.content))
  expect(stored[0]).toMatchObject({ type: 'user', message: { content: [{ text: 'success' }] } })
  expect(stored.at(-1)).toMatchObject({ type: 'result' })
  expect(delivered).toEqual(stored.map((_, i) => i + 1))
})

test('kill() signals the program and the exit says which signal', async () => {
  const { store, sessionId, start } = await setup()
  const proc = start()
  const exited = exitOf(proc)
  proc.stdin.write(userLine('success'))
  await readUntil(proc, (line) => line.includes('"type":"system"'))
  expect(proc.kill('SIGKILL')).toBe(true)
  expect(proc.killed).toBe(true)
  expect(await exited).toEqual({ code: null, signal: 'SIGKILL' })
  expect(proc.kill('SIGTERM')).toBe(false)
  expect((await store.getSession(sessionId)).agentStatus).toBe('error')
})

test("the SDK's abort stops the run through the registry, SIGINT first", async () => {
  const { store, sessionId, start } = await setup()
  const abort = new AbortController()
  const proc = start({ signal: abort.signal })
  const exited = exitOf(proc)
  proc.stdin.write(userLine('success'))
  await readUntil(proc, (line) => line.includes('"type":"system"'))
  abort.abort()
  await exited
  expect((await store.getSession(sessionId)).agentStatus).toBe('not_available')
})

test('a program that cannot start is an error event with its code, and nothing stays registered', async () => {
  const { registry, start } = await setup()
  const proc = start({ command: '/nonexistent/claude', args: [] })
  const error = await new Promise((resolve) => proc.once('error', resolve))
  expect(error.code).toBe('SPAWN_FAILED')
  expect(registry.sessionIds()).toEqual([])
})

test('bad options throw INVALID_ARGUMENT, as spawn() throws for bad arguments, and start nothing', async () => {
  const store = SessionStore.inMemory()
  const registry = new ProcessRegistry()
  expect(thrownCode(() => sdkSpawner())).toBe('INVALID_ARGUMENT')
  expect(thrownCode(() => sdkSpawner({ store, registry }))).toBe('INVALID_ARGUMENT')
  expect(thrownCode(() => sdkSpawner({ store, registry, sessionId: 's', onMessage: 1 }))).toBe('INVALID_ARGUMENT')
  const { registry: used, start } = await setup()
  expect(thrownCode(() => start({ env: { A: 1 } }))).toBe('INVALID_ARGUMENT')
  expect(thrownCode(() => start({ command: 5 }))).toBe('INVALID_ARGUMENT')
  expect(thrownCode(() => start({ args: 'x' }))).toBe('INVALID_ARGUMENT')
  expect(used.sessionIds()).toEqual([])
})
