'use strict'
const fs = require('node:fs')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { SessionStore, claudeBridge, terminalBridge } = require('..')
const { BACKENDS, codeOf, deferred, errorOf, nextTurn, runNode, thrownBy, tempDirs } = require('./helpers')

const tmpDir = tempDirs('eren-store-')
const tmpDb = () => path.join(tmpDir(), 'sessions.db')

/** Collects a subscription's messages; `until(n)` resolves once n arrived. */
function collector() {
  const seen = []
  let waiter = null
  const cb = (m) => {
    seen.push(m)
    if (waiter && seen.length >= waiter.n) waiter.resolve()
  }
  const until = (n) => {
    if (seen.length >= n) return Promise.resolve()
    waiter = { n, ...deferred() }
    return waiter.promise
  }
  return { seen, cb, until }
}

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

// Every test in here runs against each backend: an in-memory SQLite store
// and a PostgreSQL store in a schema of its own.
describe.each(BACKENDS)('%s store', (_backend, makeStore) => {
  const stores = []
  const newStore = async () => {
    const store = await makeStore()
    stores.push(store)
    return store
  }
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((store) => store.close()))
  })

  describe('sessions', () => {
    test('createSession makes a UUID v4 when no id is given, and new sessions are idle and empty', async () => {
      const store = await newStore()
      const id = await store.createSession()
      expect(id).toMatch(UUID_V4)
      const session = await store.getSession(id)
      expect(session).toEqual({
        id,
        claudeSessionId: null,
        agentStatus: 'idle',
        errorMessage: null,
        closed: false,
        createdAt: expect.any(Number),
        lastSequence: 0,
        title: null,
        cwd: null,
        command: null,
        tags: [],
        archived: false,
        updatedAt: session.createdAt,
        parentSessionId: null,
        forkedAtSequence: null,
        usage: {
          inputTokens: 0,
          outputTokens: 0,
          cacheReadTokens: 0,
          cacheCreationTokens: 0,
          costUsd: 0,
          turns: 0,
          durationMs: 0,
        },
      })
      expect(Math.abs(session.createdAt - Date.now())).toBeLessThan(60000)
      await store.close()
    })

    test('createSession with a taken id rejects with SESSION_EXISTS', async () => {
      const store = await newStore()
      await store.createSession('taken')
      expect(await codeOf(() => store.createSession('taken'))).toBe('SESSION_EXISTS')
    })

    test('getSession of an unknown id resolves null; listSessions is in creation order', async () => {
      const store = await newStore()
      expect(await store.getSession('ghost')).toBeNull()
      for (const id of ['c', 'a', 'b']) await store.createSession(id)
      expect((await store.listSessions()).map((s) => s.id)).toEqual(['c', 'a', 'b'])
    })

    test('messages of an unknown session rejects with SESSION_NOT_FOUND naming it', async () => {
      const store = await newStore()
      const error = await errorOf(() => store.messages('missing'))
      expect(error.code).toBe('SESSION_NOT_FOUND')
      expect(error.message).toContain('missing')
    })

    test('messages honours afterSequence and limit', async () => {
      const store = await newStore()
      await store.createSession('s')
      for (let i = 0; i < 10; i++) await terminalBridge.storeStdout(store, 's', `l${i}`)
      const page = await store.messages('s', { afterSequence: 3, limit: 4 })
      expect(page.map((m) => m.sequenceNumber)).toEqual([4, 5, 6, 7])
      expect((await store.messages('s')).length).toBe(10)
    })

    test('appending to a closed session rejects with SESSION_CLOSED and stores nothing', async () => {
      const store = await newStore()
      await store.createSession('s')
      await terminalBridge.storeStdout(store, 's', 'before')
      await store.closeSession('s')
      expect(await codeOf(() => terminalBridge.storeStdout(store, 's', 'after'))).toBe('SESSION_CLOSED')
      expect(await codeOf(() => claudeBridge.storeEvent(store, 's', '{}'))).toBe('SESSION_CLOSED')
      const session = await store.getSession('s')
      expect(session.closed).toBe(true)
      expect(session.lastSequence).toBe(1)
    })

    test('deleteSession removes the session and its messages and reports whether it existed', async () => {
      const store = await newStore()
      await store.createSession('d')
      await terminalBridge.storeStdout(store, 'd', 'x')
      expect(await store.deleteSession('d')).toBe(true)
      expect(await store.deleteSession('d')).toBe(false)
      expect(await store.getSession('d')).toBeNull()
      expect(await codeOf(() => store.messages('d'))).toBe('SESSION_NOT_FOUND')
    })

    test('message ids are unique within the store', async () => {
      const store = await newStore()
      await store.createSession('a')
      await store.createSession('b')
      const messages = await Promise.all(
        Array.from({ length: 200 }, (_, i) => terminalBridge.storeStdout(store, i % 2 ? 'a' : 'b', `${i}`)),
      )
      expect(new Set(messages.map((m) => m.id)).size).toBe(200)
    })

    test('close waits for pending writes, then everything rejects with STORE_CLOSED', async () => {
      const store = await newStore()
      await store.createSession('s')
      const pending = Array.from({ length: 500 }, (_, i) => terminalBridge.storeStdout(store, 's', `${i}`))
      await store.close()
      const written = await Promise.all(pending)
      expect(written.map((m) => m.sequenceNumber)).toEqual(Array.from({ length: 500 }, (_, i) => i + 1))
      expect(await codeOf(() => terminalBridge.storeStdout(store, 's', 'late'))).toBe('STORE_CLOSED')
      expect(await codeOf(() => store.getSession('s'))).toBe('STORE_CLOSED')
      expect(await codeOf(() => store.createSession())).toBe('STORE_CLOSED')
      expect(await codeOf(() => store.subscribe('s', () => {}))).toBe('STORE_CLOSED')
      await store.close()
    })
  })

  describe('subscribe', () => {
    test('subscribe on an unknown session throws SESSION_NOT_FOUND', async () => {
      const store = await newStore()
      const error = thrownBy(() => store.subscribe('nobody', () => {}))
      expect(error.code).toBe('SESSION_NOT_FOUND')
      expect(error.message).toContain('nobody')
    })

    test('by default only messages committed after subscribing are delivered', async () => {
      const store = await newStore()
      await store.createSession('s')
      await terminalBridge.storeStdout(store, 's', 'old')
      const c = collector()
      const unsubscribe = store.subscribe('s', c.cb)
      await terminalBridge.storeStdout(store, 's', 'new')
      await c.until(1)
      expect(c.seen.map((m) => m.sequenceNumber)).toEqual([2])
      expect(JSON.parse(c.seen[0].content).content).toBe('new')
      unsubscribe()
      unsubscribe()
    })

    test('the callback runs after the call that committed, never inside subscribe', async () => {
      const store = await newStore()
      await store.createSession('s')
      await terminalBridge.storeStdout(store, 's', 'stored')
      const c = collector()
      store.subscribe('s', c.cb, { afterSequence: 0 })
      expect(c.seen).toEqual([])
      await c.until(1)
      expect(c.seen[0].sequenceNumber).toBe(1)
    })

    test('afterSequence replay racing concurrent appends delivers every message once and in order', async () => {
      const store = await newStore()
      await store.createSession('r')
      await Promise.all(Array.from({ length: 3000 }, (_, i) => terminalBridge.storeStdout(store, 'r', `a${i}`)))
      const racing = Array.from({ length: 3000 }, (_, i) => terminalBridge.storeStdout(store, 'r', `b${i}`))
      const c = collector()
      store.subscribe('r', c.cb, { afterSequence: 100 })
      await Promise.all(racing)
      await c.until(5900)
      await nextTurn()
      expect(c.seen.map((m) => m.sequenceNumber)).toEqual(Array.from({ length: 5900 }, (_, i) => i + 101))
      await store.close()
    })

    test('unsubscribe stops delivery', async () => {
      const store = await newStore()
      await store.createSession('s')
      const gone = collector()
      const kept = collector()
      const unsubscribe = store.subscribe('s', gone.cb)
      store.subscribe('s', kept.cb)
      unsubscribe()
      await terminalBridge.storeStdout(store, 's', 'x')
      await kept.until(1)
      await nextTurn()
      expect(gone.seen).toEqual([])
    })

    test('a callback that unsubscribes from inside itself is never called again', async () => {
      const store = await newStore()
      await store.createSession('s')
      await Promise.all(Array.from({ length: 500 }, (_, i) => terminalBridge.storeStdout(store, 's', `m${i}`)))
      const seen = []
      const unsubscribe = store.subscribe(
        's',
        (m) => {
          seen.push(m.sequenceNumber)
          unsubscribe()
        },
        { afterSequence: 0 },
      )
      // Replays are served in order: once this one has all 500, the first
      // subscription's deliveries have all been through the queue.
      const all = collector()
      store.subscribe('s', all.cb, { afterSequence: 0 })
      await all.until(500)
      await nextTurn()
      expect(seen).toEqual([1])
    })
  })

  describe('settling without blocking the loop', () => {
    test('a replay of 1,000 stored messages yields to the event loop between slices', async () => {
      const store = await newStore()
      await store.createSession('s')
      await Promise.all(Array.from({ length: 1000 }, (_, i) => terminalBridge.storeStdout(store, 's', `m${i}`)))
      const replay = collector()
      let deliveredWhenTheLoopRan = null
      store.subscribe(
        's',
        (m) => {
          if (replay.seen.length === 0) setImmediate(() => (deliveredWhenTheLoopRan = replay.seen.length))
          replay.cb(m)
        },
        { afterSequence: 0 },
      )
      await replay.until(1000)
      // Node runs up to 1,000 threadsafe-function calls per loop turn; settling
      // in slices lets a setImmediate in between long before that.
      expect(deliveredWhenTheLoopRan).not.toBeNull()
      expect(deliveredWhenTheLoopRan).toBeLessThan(1000)
      expect(replay.seen.map((m) => m.sequenceNumber)).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1))
    })

    test('1,000 appends in flight resolve in order of commit, each with its own message', async () => {
      const store = await newStore()
      await store.createSession('s')
      const messages = await Promise.all(
        Array.from({ length: 1000 }, (_, i) => terminalBridge.storeStdout(store, 's', `line ${i}`)),
      )
      expect(messages.map((m) => JSON.parse(m.content).content)).toEqual(messages.map((_, i) => `line ${i}`))
      expect(new Set(messages.map((m) => m.sequenceNumber)).size).toBe(1000)
    })
  })

  describe('bridges', () => {
    test('storeEvent stores the raw JSON byte for byte', async () => {
      const store = await newStore()
      await store.createSession('c')
      const raw = '{"type":"assistant",  "message":{"content":[{"type":"text","text":"hé 🚀"}]}}'
      const m = await claudeBridge.storeEvent(store, 'c', raw)
      expect(m).toEqual({
        id: expect.any(Number),
        sessionId: 'c',
        sequenceNumber: 1,
        content: raw,
        createdAt: expect.any(Number),
      })
      expect((await store.messages('c'))[0].content).toBe(raw)
    })

    test('sequences increase over many events', async () => {
      const store = await newStore()
      await store.createSession('c')
      const seqs = []
      for (let i = 0; i < 50; i++) seqs.push((await claudeBridge.storeEvent(store, 'c', `{"n":${i}}`)).sequenceNumber)
      expect(seqs).toEqual(Array.from({ length: 50 }, (_, i) => i + 1))
    })

    test('setRunning then setIdle', async () => {
      const store = await newStore()
      await store.createSession('c')
      await claudeBridge.setRunning(store, 'c')
      expect((await store.getSession('c')).agentStatus).toBe('running')
      await claudeBridge.setIdle(store, 'c')
      expect((await store.getSession('c')).agentStatus).toBe('idle')
    })

    test('updateClaudeSessionId stores the id and resolves false for an unknown session', async () => {
      const store = await newStore()
      await store.createSession('c')
      expect(await claudeBridge.updateClaudeSessionId(store, 'c', 'abc-123')).toBe(true)
      expect((await store.getSession('c')).claudeSessionId).toBe('abc-123')
      expect(await claudeBridge.updateClaudeSessionId(store, 'nope', 'x')).toBe(false)
    })

    test('bridges reject an unknown session with SESSION_NOT_FOUND', async () => {
      const store = await newStore()
      expect(await codeOf(() => claudeBridge.storeEvent(store, 'ghost', '{}'))).toBe('SESSION_NOT_FOUND')
      expect(await codeOf(() => claudeBridge.setRunning(store, 'ghost'))).toBe('SESSION_NOT_FOUND')
      expect(await codeOf(() => terminalBridge.storeStdout(store, 'ghost', 'x'))).toBe('SESSION_NOT_FOUND')
      expect(await codeOf(() => terminalBridge.storeFinished(store, 'ghost', 0))).toBe('SESSION_NOT_FOUND')
    })

    test('terminal stdout, stderr and finished contents', async () => {
      const store = await newStore()
      await store.createSession('t')
      const parse = (m) => JSON.parse(m.content)
      expect(parse(await terminalBridge.storeStdout(store, 't', 'build succeeded'))).toEqual({
        type: 'terminal_output',
        stream: 'stdout',
        content: 'build succeeded',
      })
      expect(parse(await terminalBridge.storeStderr(store, 't', 'warning: unused var'))).toEqual({
        type: 'terminal_output',
        stream: 'stderr',
        content: 'warning: unused var',
      })
      for (const code of [0, 127, -1, null]) {
        expect(parse(await terminalBridge.storeFinished(store, 't', code))).toEqual({
          type: 'terminal_finished',
          exit_code: code,
        })
      }
      expect(parse(await terminalBridge.storeStdout(store, 't', ''))).toEqual({
        type: 'terminal_output',
        stream: 'stdout',
        content: '',
      })
    })

    test('stdout and stderr interleaved keep their order', async () => {
      const store = await newStore()
      await store.createSession('t')
      await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          i % 2 ? terminalBridge.storeStderr(store, 't', `e${i}`) : terminalBridge.storeStdout(store, 't', `o${i}`),
        ),
      )
      const stored = (await store.messages('t')).map((m) => JSON.parse(m.content))
      expect(stored.map((c) => c.stream)).toEqual(Array.from({ length: 40 }, (_, i) => (i % 2 ? 'stderr' : 'stdout')))
      expect(stored.map((c) => c.content)).toEqual(Array.from({ length: 40 }, (_, i) => (i % 2 ? `e${i}` : `o${i}`)))
    })

    test('an 8 MiB line and non-ASCII text round-trip', async () => {
      const store = await newStore()
      await store.createSession('big')
      const big = `${'x'.repeat(8 * 1024 * 1024 - 3)}é€`
      const text = 'naïve café — 日本語 🚀 \u0000 \t "quotes" \\ backslash'
      await terminalBridge.storeStdout(store, 'big', big)
      await claudeBridge.storeEvent(store, 'big', JSON.stringify({ text }))
      const [first, second] = await store.messages('big')
      expect(JSON.parse(first.content).content).toBe(big)
      expect(JSON.parse(second.content).text).toBe(text)
      await store.close()
    })
  })

  describe('session ids are checked the same way at every entry point', () => {
    const { ProcessRegistry } = require('..')
    const bad = ['', 'x'.repeat(257), 'user-\uD800', 'job-\uDC00', 42]

    test('empty, over 256 bytes, a lone surrogate or not a string is INVALID_ARGUMENT everywhere', async () => {
      const store = await newStore()
      await store.createSession('ok')
      const registry = new ProcessRegistry()
      for (const id of bad) {
        for (const call of [
          () => registry.register(id),
          () => registry.stop(id),
          () => registry.remove(id),
          () => registry.status(id),
          () => registry.onStop(id, () => {}),
          () => store.subscribe(id, () => {}),
        ]) {
          expect(thrownBy(call)?.code).toBe('INVALID_ARGUMENT')
        }
        for (const call of [
          () => store.createSession(id),
          () => store.getSession(id),
          () => store.messages(id),
          () => store.closeSession(id),
          () => store.deleteSession(id),
          () => claudeBridge.storeEvent(store, id, '{}'),
          () => claudeBridge.updateClaudeSessionId(store, id, 'c'),
          () => claudeBridge.setRunning(store, id),
          () => claudeBridge.setIdle(store, id),
          () => terminalBridge.storeStdout(store, id, 'x'),
          () => terminalBridge.storeStderr(store, id, 'x'),
          () => terminalBridge.storeFinished(store, id, 0),
        ]) {
          expect(await codeOf(call)).toBe('INVALID_ARGUMENT')
        }
      }
      expect(registry.count()).toBe(0)
      expect((await store.listSessions()).map((s) => s.id)).toEqual(['ok'])
    })

    test('ids with lone surrogates never collide with their U+FFFD look-alikes', async () => {
      const store = await newStore()
      await store.createSession('user-\uFFFD')
      expect(await codeOf(() => store.createSession('user-\uD800'))).toBe('INVALID_ARGUMENT')
      const registry = new ProcessRegistry()
      const handle = registry.register('job-\uFFFD')
      expect(thrownBy(() => registry.stop('job-\uDC00')).code).toBe('INVALID_ARGUMENT')
      expect(handle.stopped).toBe(false)
      // Well-formed pairs are fine.
      await store.createSession('emoji-\uD83D\uDE00')
      expect((await store.getSession('emoji-😀')).id).toBe('emoji-😀')
    })
  })

  describe('bad input stores nothing', () => {
    test('an event that is not JSON, or is an array, rejects INVALID_JSON and leaves lastSequence unchanged', async () => {
      const store = await newStore()
      await store.createSession('j')
      await claudeBridge.storeEvent(store, 'j', '{"ok":true}')
      for (const bad of ['not json', '[1,2,3]', '"a string"', '42', 'null', '', '{"a":1}{"b":2}', '{"unterminated":']) {
        const error = await errorOf(() => claudeBridge.storeEvent(store, 'j', bad))
        expect(error.code).toBe('INVALID_JSON')
        expect(error.message).toContain('j')
      }
      expect((await store.getSession('j')).lastSequence).toBe(1)
    })

    test('an empty or over-long id is INVALID_ARGUMENT', async () => {
      const store = await newStore()
      expect(await codeOf(() => store.createSession(''))).toBe('INVALID_ARGUMENT')
      expect(await codeOf(() => store.createSession('x'.repeat(257)))).toBe('INVALID_ARGUMENT')
      expect(await store.listSessions()).toEqual([])
    })

    test('wrong JS types are INVALID_ARGUMENT and never crash', async () => {
      const store = await newStore()
      await store.createSession('w')
      const bads = [undefined, null, 42, {}, [], Symbol('x')]
      for (const bad of bads) {
        expect(await codeOf(() => claudeBridge.storeEvent(bad, 'w', '{}'))).toBe('INVALID_ARGUMENT')
        expect(await codeOf(() => claudeBridge.storeEvent(store, bad, '{}'))).toBe('INVALID_ARGUMENT')
        expect(await codeOf(() => claudeBridge.storeEvent(store, 'w', bad))).toBe('INVALID_ARGUMENT')
        expect(await codeOf(() => terminalBridge.storeStdout(store, 'w', bad))).toBe('INVALID_ARGUMENT')
        expect(await codeOf(() => store.getSession(bad))).toBe('INVALID_ARGUMENT')
        expect(await codeOf(() => store.subscribe('w', bad))).toBe('INVALID_ARGUMENT')
      }
      for (const bad of ['1', 1.5, -1, {}]) {
        expect(await codeOf(() => store.messages('w', { afterSequence: bad }))).toBe('INVALID_ARGUMENT')
        expect(await codeOf(() => store.messages('w', { limit: bad }))).toBe('INVALID_ARGUMENT')
        expect(await codeOf(() => store.subscribe('w', () => {}, { afterSequence: bad }))).toBe('INVALID_ARGUMENT')
      }
      for (const bad of ['1', 1.5, 2 ** 40, {}]) {
        expect(await codeOf(() => terminalBridge.storeFinished(store, 'w', bad))).toBe('INVALID_ARGUMENT')
      }
      expect(await codeOf(() => SessionStore.open(42))).toBe('INVALID_ARGUMENT')
      expect(await codeOf(() => SessionStore.open(''))).toBe('INVALID_ARGUMENT')
      expect((await store.getSession('w')).lastSequence).toBe(0)
    })
  })
})

describe('SQLite files', () => {
  test('a database file that open creates is mode 0600, with its -wal and -shm', async () => {
    const file = tmpDb()
    const store = SessionStore.open(file)
    await store.createSession('s')
    for (const f of [file, `${file}-wal`, `${file}-shm`]) {
      expect((fs.statSync(f).mode & 0o777).toString(8)).toBe('600')
    }
    await store.close()
  })

  test('an existing database file keeps its mode', async () => {
    const file = tmpDb()
    await SessionStore.open(file).close()
    fs.chmodSync(file, 0o640)
    const store = SessionStore.open(file)
    await store.createSession('s')
    await store.close()
    expect((fs.statSync(file).mode & 0o777).toString(8)).toBe('640')
  })

  test('a closed store rejects with STORE_CLOSED and its file is unchanged', async () => {
    const file = tmpDb()
    const store = SessionStore.open(file)
    await store.createSession('c')
    await store.close()
    expect(await codeOf(() => claudeBridge.storeEvent(store, 'c', '{}'))).toBe('STORE_CLOSED')
    const reopened = SessionStore.open(file)
    expect((await reopened.getSession('c')).lastSequence).toBe(0)
    await reopened.close()
  })

  test('an unwritable path is STORAGE_ERROR', async () => {
    expect(await codeOf(() => SessionStore.open('/nonexistent-dir/for/sure/db.sqlite'))).toBe('STORAGE_ERROR')
  })
})

describe('sequence numbers and durability', () => {
  test('5,000 appends in flight across 5 sessions give contiguous 1..N per session', async () => {
    const store = SessionStore.open(tmpDb())
    const ids = ['s0', 's1', 's2', 's3', 's4']
    for (const id of ids) await store.createSession(id)
    const all = await Promise.all(
      Array.from({ length: 5000 }, (_, i) => terminalBridge.storeStdout(store, ids[i % 5], `line ${i}`)),
    )
    for (const id of ids) {
      const acknowledged = all.filter((m) => m.sessionId === id).map((m) => m.sequenceNumber)
      expect(acknowledged.sort((a, b) => a - b)).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1))
      const stored = await store.messages(id)
      expect(stored.map((m) => m.sequenceNumber)).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1))
      expect((await store.getSession(id)).lastSequence).toBe(1000)
    }
    await store.close()
  })

  test('a file store closed and reopened keeps everything and continues the sequence', async () => {
    const file = tmpDb()
    let store = SessionStore.open(file)
    await store.createSession('s')
    await claudeBridge.updateClaudeSessionId(store, 's', 'claude-xyz')
    for (let i = 0; i < 20; i++) await terminalBridge.storeStdout(store, 's', `${i}`)
    const before = await store.messages('s')
    await store.close()

    store = SessionStore.open(file)
    expect(await store.messages('s')).toEqual(before)
    expect((await store.getSession('s')).claudeSessionId).toBe('claude-xyz')
    const next = await terminalBridge.storeStdout(store, 's', 'after reopen')
    expect(next.sequenceNumber).toBe(21)
    expect(next.id).toBeGreaterThan(Math.max(...before.map((m) => m.id)))
    await store.close()
  })

  test('SIGKILL mid-stream: every acknowledged message survives, integrity_check is ok (20 runs)', async () => {
    for (let run = 0; run < 20; run++) {
      const file = tmpDb()
      const setup = SessionStore.open(file)
      await setup.createSession('k')
      await setup.close()

      const child = spawn(process.execPath, [path.join(__dirname, 'fixtures', 'append-and-report.js'), file, 'k'], {
        stdio: ['ignore', 'pipe', 'inherit'],
      })
      let out = ''
      const exited = new Promise((resolve) => child.on('exit', (_code, signal) => resolve(signal)))
      await new Promise((resolve) => {
        child.stdout.on('data', (d) => {
          out += d
          // Kill after a varying number of acknowledgements.
          if (out.split('\n').length > 200 + run * 37) resolve()
        })
      })
      child.kill('SIGKILL')
      expect(await exited).toBe('SIGKILL')
      const acknowledged = out
        .split('\n')
        .filter((l) => /^\d+$/.test(l))
        .map(Number)
      const highest = Math.max(...acknowledged)

      const store = SessionStore.open(file)
      const session = await store.getSession('k')
      expect(session.lastSequence).toBeGreaterThanOrEqual(highest)
      const stored = await store.messages('k')
      expect(stored.map((m) => m.sequenceNumber)).toEqual(Array.from({ length: session.lastSequence }, (_, i) => i + 1))
      const next = await terminalBridge.storeStdout(store, 'k', 'after crash')
      expect(next.sequenceNumber).toBe(session.lastSequence + 1)
      await store.close()
      expect(integrityCheck(file)).toBe('ok')
    }
  })
})

/** PRAGMA integrity_check through the sqlite3 CLI if present, else Python's sqlite3. */
function integrityCheck(file) {
  const { execFileSync } = require('node:child_process')
  const script =
    'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("PRAGMA integrity_check").fetchone()[0])'
  return execFileSync('python3', ['-c', script, file]).toString().trim()
}

describe('subscriptions and the process lifetime', () => {
  test('a subscribe that still has stored messages to replay keeps the process alive until they are delivered', async () => {
    const file = tmpDb()
    const store = SessionStore.open(file)
    await store.createSession('big')
    for (let batch = 0; batch < 20; batch++) {
      await Promise.all(Array.from({ length: 5000 }, (_, i) => terminalBridge.storeStdout(store, 'big', `line ${i}`)))
    }
    await store.close()
    const result = await runNode(path.join(__dirname, 'fixtures', 'replay-subscriber.js'), [file])
    expect(result.code).toBe(0)
    expect(result.stdout.trim()).toBe('100000')
  })
})

describe('several processes on one file', () => {
  test('subscribe sees a session another process created and every message it commits, in order, once', async () => {
    const file = tmpDb()
    const store = SessionStore.open(file)
    const other = spawn(
      process.execPath,
      [path.join(__dirname, 'fixtures', 'other-writer.js'), file, 'theirs', '300'],
      {
        stdio: ['pipe', 'pipe', 'inherit'],
        env: { ...process.env, EREN_TEST_CHILD: '1' },
      },
    )
    const exited = new Promise((resolve) => other.on('exit', resolve))
    await new Promise((resolve) => other.stdout.on('data', (d) => String(d).includes('created') && resolve()))
    const seen = collector()
    const unsubscribe = store.subscribe('theirs', seen.cb, { afterSequence: 0 })
    other.stdin.end('go\n')
    await seen.until(300)
    unsubscribe()
    expect(seen.seen.map((m) => m.sequenceNumber)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1))
    expect(seen.seen.map((m) => JSON.parse(m.content).content)).toEqual(
      Array.from({ length: 300 }, (_, i) => `line ${i}`),
    )
    await exited
    await store.close()
  })
})

describe('store options', () => {
  test("durability 'normal' and 'full' both store and reopen; anything else is INVALID_ARGUMENT", async () => {
    for (const durability of ['normal', 'full', undefined]) {
      const file = tmpDb()
      const store = SessionStore.open(file, { durability })
      await store.createSession('s')
      await terminalBridge.storeStdout(store, 's', 'kept')
      await store.close()
      const reopened = SessionStore.open(file)
      expect((await reopened.getSession('s')).lastSequence).toBe(1)
      await reopened.close()
    }
    for (const opts of ['normal', 5, { durability: 'fast' }, { durability: 1 }]) {
      const file = tmpDb()
      expect(await codeOf(() => SessionStore.open(file, opts))).toBe('INVALID_ARGUMENT')
      expect(fs.existsSync(file)).toBe(false)
    }
  })

  test("open takes a plain path, never a URI, and ':memory:' is INVALID_ARGUMENT", async () => {
    const dir = tmpDir()
    const cwd = process.cwd()
    process.chdir(dir)
    try {
      const store = SessionStore.open('file:notes.db')
      await store.createSession('s')
      await store.close()
      expect(fs.readdirSync(dir).filter((f) => !f.endsWith('-wal') && !f.endsWith('-shm'))).toEqual(['file:notes.db'])
      expect(await codeOf(() => SessionStore.open(':memory:'))).toBe('INVALID_ARGUMENT')
      expect(fs.existsSync(path.join(dir, ':memory:'))).toBe(false)
    } finally {
      process.chdir(cwd)
    }
  })
})

describe('every error has a code', () => {
  const { ProcessRegistry, StopHandle, spawnTerminal } = require('..')

  test('new SessionStore() and new StopHandle() are INVALID_ARGUMENT', () => {
    expect(thrownBy(() => new SessionStore()).code).toBe('INVALID_ARGUMENT')
    expect(thrownBy(() => new StopHandle()).code).toBe('INVALID_ARGUMENT')
    // The handles the package makes are unaffected.
    expect(new ProcessRegistry().register('fine').sessionId).toBe('fine')
  })

  test('a method, getter or function called with the wrong `this` is INVALID_ARGUMENT', async () => {
    const store = SessionStore.inMemory()
    const registry = new ProcessRegistry()
    const handle = registry.register('h')
    const { messages } = store
    const illegal = thrownBy(() => messages('x'))
    expect(illegal.name).toBe('TypeError')
    expect(illegal.code).toBe('INVALID_ARGUMENT')
    expect(thrownBy(() => ProcessRegistry.prototype.count.call(store)).code).toBe('INVALID_ARGUMENT')
    const stopped = Object.getOwnPropertyDescriptor(StopHandle.prototype, 'stopped').get
    expect(thrownBy(() => stopped.call({})).code).toBe('INVALID_ARGUMENT')
    // Called properly, nothing changes: values, names, and the package's own codes.
    expect(registry.count()).toBe(1)
    expect(handle.stopped).toBe(false)
    expect(store.messages.name).toBe('messages')
    expect(spawnTerminal.name).toBe('spawnTerminal')
    await expect(store.messages('nope')).rejects.toMatchObject({ code: 'SESSION_NOT_FOUND' })
  })

  test('options whose getters or Proxy traps throw are INVALID_ARGUMENT, not the trap error', async () => {
    const store = SessionStore.inMemory()
    await store.createSession('s')
    const trap = new Proxy(
      {},
      {
        get() {
          throw new Error('trap')
        },
      },
    )
    const getter = {
      get limit() {
        throw new Error('getter')
      },
    }
    expect(await codeOf(() => spawnTerminal(trap))).toBe('INVALID_ARGUMENT')
    expect(await codeOf(() => store.messages('s', getter))).toBe('INVALID_ARGUMENT')
    expect(await codeOf(() => store.messages('s', trap))).toBe('INVALID_ARGUMENT')
    expect(await codeOf(() => SessionStore.open(tmpDb(), trap))).toBe('INVALID_ARGUMENT')
    expect(thrownBy(() => store.subscribe('s', () => {}, trap)).code).toBe('INVALID_ARGUMENT')
  })
})
