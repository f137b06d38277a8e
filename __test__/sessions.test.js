'use strict'
// Sessions a desktop app can list, name, search, fork and account for:
// titles, tags, archiving, usage totals, listing and paging, search, forks,
// the Claude CLI's own history, and the change feed, on both backends.
const fs = require('node:fs')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { ProcessRegistry, SessionStore, claudeBridge, spawnTerminal, terminalBridge } = require('..')
const { BACKENDS, codeOf, deferred, postgresSchemaUrl, tempDirs } = require('./helpers')

const tmpDir = tempDirs('eren-sessions-')
const PROMPT = JSON.stringify({ type: 'user', message: { role: 'user', content: 'Fix the flaky\nlogin test' } })
const result = (cost, input) =>
  JSON.stringify({
    type: 'result',
    subtype: 'success',
    is_error: false,
    num_turns: 2,
    duration_ms: 1000,
    total_cost_usd: cost,
    usage: { input_tokens: input, output_tokens: 3, cache_read_input_tokens: 5, cache_creation_input_tokens: 7 },
  })

/** Resolves when `feed` has heard `count` changes matching `test`. */
function changeFeed(store) {
  const heard = []
  const waiters = []
  const off = store.onSessionsChanged((change) => {
    heard.push(change)
    for (const waiter of waiters.slice()) {
      if (waiter.test(change)) {
        waiters.splice(waiters.indexOf(waiter), 1)
        waiter.resolve(change)
      }
    }
  })
  const until = (test) => {
    const found = heard.find(test)
    if (found) return Promise.resolve(found)
    const wait = deferred()
    waiters.push({ test, resolve: wait.resolve })
    return wait.promise
  }
  return { heard, until, off }
}

describe.each(BACKENDS)('%s', (_backend, makeStore) => {
  const stores = []
  const newStore = async () => {
    const store = await makeStore()
    stores.push(store)
    return store
  }
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((store) => store.close()))
  })

  test('a new session has its fields, and its title comes from the first prompt until one is set', async () => {
    const store = await newStore()
    const id = await store.createSession()
    const fresh = await store.getSession(id)
    expect(fresh).toMatchObject({
      title: null,
      cwd: null,
      command: null,
      tags: [],
      archived: false,
      updatedAt: fresh.createdAt,
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
    await claudeBridge.storeEvent(store, id, JSON.stringify({ type: 'system', subtype: 'init' }))
    await claudeBridge.storeEvent(store, id, PROMPT)
    await claudeBridge.storeEvent(store, id, PROMPT.replace('Fix', 'Then'))
    expect((await store.getSession(id)).title).toBe('Fix the flaky')
    await store.setTitle(id, 'Login flake')
    expect((await store.getSession(id)).title).toBe('Login flake')
    await store.setTitle(id, null)
    expect((await store.getSession(id)).title).toBe('Fix the flaky')
  })

  test('a terminal run records its cwd and command line, and the command line titles the session', async () => {
    const store = await newStore()
    const id = await store.createSession()
    const cwd = tmpDir()
    const run = await spawnTerminal({
      store,
      registry: new ProcessRegistry(),
      sessionId: id,
      command: 'sh',
      args: ['-c', "echo it's done"],
      cwd,
    })
    await run.exited
    const session = await store.getSession(id)
    expect(session.cwd).toBe(cwd)
    expect(session.command).toBe(`sh -c 'echo it'\\''s done'`)
    expect(session.title).toBe(session.command)
    expect(session.updatedAt).toBeGreaterThanOrEqual(session.createdAt)
  })

  test('tags and archiving, and bad inputs that store nothing', async () => {
    const store = await newStore()
    const id = await store.createSession()
    await store.addTag(id, 'work')
    await store.addTag(id, 'work')
    await store.addTag(id, 'urgent')
    await store.removeTag(id, 'absent')
    await store.archive(id)
    expect(await store.getSession(id)).toMatchObject({ tags: ['work', 'urgent'], archived: true })
    await store.removeTag(id, 'work')
    await store.unarchive(id)
    expect(await store.getSession(id)).toMatchObject({ tags: ['urgent'], archived: false })
    expect(await codeOf(() => store.addTag(id, ''))).toBe('INVALID_ARGUMENT')
    expect(await codeOf(() => store.addTag(id, 5))).toBe('INVALID_ARGUMENT')
    expect(await codeOf(() => store.setTitle(id, {}))).toBe('INVALID_ARGUMENT')
    expect(await codeOf(() => store.archive('ghost'))).toBe('SESSION_NOT_FOUND')
    expect(await codeOf(() => store.addTag('ghost', 'x'))).toBe('SESSION_NOT_FOUND')
    expect((await store.getSession(id)).tags).toEqual(['urgent'])
  })

  test('each result event adds its usage, cost, turns and time to the session, and usageSummary sums sessions', async () => {
    const store = await newStore()
    const a = await store.createSession()
    const b = await store.createSession()
    await claudeBridge.storeEvent(store, a, result(0.5, 100))
    await claudeBridge.storeEvent(store, a, PROMPT)
    await claudeBridge.storeEvent(store, a, result(0.25, 10))
    await claudeBridge.storeEvent(store, b, result(1, 1))
    // A terminal line that prints a result event's JSON is not one.
    await terminalBridge.storeStdout(store, b, result(100, 100))
    expect((await store.getSession(a)).usage).toEqual({
      inputTokens: 110,
      outputTokens: 6,
      cacheReadTokens: 10,
      cacheCreationTokens: 14,
      costUsd: 0.75,
      turns: 4,
      durationMs: 2000,
    })
    const listed = await store.listSessions()
    expect(listed.find((s) => s.id === b).usage.costUsd).toBe(1)
    const all = await store.usageSummary()
    expect(all).toMatchObject({ inputTokens: 111, costUsd: 1.75, turns: 6 })
    const created = (await store.getSession(b)).createdAt
    expect((await store.usageSummary({ from: created + 1 })).inputTokens).toBe(0)
    expect((await store.usageSummary({ from: 0, to: created + 1 })).inputTokens).toBe(111)
    expect(await codeOf(() => store.usageSummary({ from: -1 }))).toBe('INVALID_ARGUMENT')
  })

  test('listSessions filters by status, tag, archived, cwd and text, and orders by creation or change', async () => {
    const store = await newStore()
    const ids = []
    for (let i = 0; i < 5; i++) ids.push(await store.createSession(`s${i}`))
    await store.addTag('s1', 'x')
    await store.addTag('s3', 'x')
    await store.archive('s2')
    await store.setTitle('s4', 'Deploy STAGING')
    await claudeBridge.setRunning(store, 's0')
    const list = async (opts) => (await store.listSessions(opts)).map((s) => s.id)
    expect(await list()).toEqual(ids)
    expect(await list({ tag: 'x' })).toEqual(['s1', 's3'])
    expect(await list({ archived: false })).toEqual(['s0', 's1', 's3', 's4'])
    expect(await list({ archived: true })).toEqual(['s2'])
    expect(await list({ query: 'staging' })).toEqual(['s4'])
    expect(await list({ status: 'running' })).toEqual(['s0'])
    expect(await list({ tag: 'x', archived: false, limit: 1 })).toEqual(['s1'])
    expect(await list({ cwd: '/nowhere' })).toEqual([])
    await terminalBridge.storeStdout(store, 's2', 'latest')
    expect((await list({ orderBy: 'updatedAt' }))[0]).toBe('s2')
    for (const bad of [
      { status: 'busy' },
      { orderBy: 'title' },
      { limit: 0 },
      { limit: 1.5 },
      { tag: 1 },
      { archived: 'yes' },
      { cursor: 'nonsense' },
    ]) {
      expect(await codeOf(() => store.listSessions(bad))).toBe('INVALID_ARGUMENT')
    }
  })

  test('pageSessions walks every session once, also while sessions are created and changed', async () => {
    const store = await newStore()
    for (let i = 0; i < 25; i++) await store.createSession(`p${String(i).padStart(2, '0')}`)
    for (const orderBy of ['createdAt', 'updatedAt']) {
      const seen = []
      let cursor
      let pages = 0
      do {
        const page = await store.pageSessions({ orderBy, limit: 10, cursor })
        seen.push(...page.sessions.map((s) => s.id))
        cursor = page.nextCursor ?? undefined
        // Created meanwhile: after the walk in creation order, and, newest
        // first, ahead of where the walk is.
        if (pages++ === 0) await store.createSession(`new-${orderBy}`)
      } while (cursor)
      const expected = Array.from({ length: 25 }, (_, i) => `p${String(i).padStart(2, '0')}`)
      if (orderBy === 'createdAt') expected.push('new-createdAt')
      expect(seen.filter((id) => id.startsWith('p'))).toHaveLength(25)
      expect(new Set(seen).size).toBe(seen.length)
      expect([...seen].sort()).toEqual([...expected, ...(orderBy === 'updatedAt' ? ['new-createdAt'] : [])].sort())
    }
    const first = await store.pageSessions({ limit: 10 })
    expect(await codeOf(() => store.pageSessions({ orderBy: 'updatedAt', cursor: first.nextCursor }))).toBe(
      'INVALID_ARGUMENT',
    )
    expect((await store.pageSessions()).sessions).toHaveLength(27)
  })

  test('search finds the committed messages with every word, ranked, with a marked snippet', async () => {
    const store = await newStore()
    const a = await store.createSession()
    const b = await store.createSession()
    await terminalBridge.storeStdout(store, a, 'compiling the widgets')
    await terminalBridge.storeStderr(store, a, 'error: the frobnicator failed to start')
    await claudeBridge.storeEvent(
      store,
      b,
      JSON.stringify({ type: 'assistant', message: { content: [{ type: 'text', text: 'I fixed the Frobnicator.' }] } }),
    )
    await claudeBridge.storeEvent(store, b, JSON.stringify({ type: 'system', frobnicator: true }))
    const hits = await store.search('frobnicator')
    expect(hits.map((h) => [h.sessionId, h.sequenceNumber]).sort()).toEqual(
      [
        [a, 2],
        [b, 1],
      ].sort(),
    )
    for (const hit of hits) {
      expect(hit.snippet).toMatch(/<mark>frobnicator<\/mark>/i)
      expect(typeof hit.rank).toBe('number')
    }
    expect(hits[0].rank).toBeGreaterThanOrEqual(hits[1].rank)
    expect(await store.search('frobnicator failed')).toHaveLength(1)
    expect(await store.search('frobnicator', { sessionId: b })).toEqual([expect.objectContaining({ sessionId: b })])
    expect(await store.search('frobnicator', { limit: 1 })).toHaveLength(1)
    expect(await store.search('absent')).toEqual([])
    // Operators of either engine are plain words.
    expect(await store.search('frobnicator OR "widgets" NEAR(a b) *')).toEqual([])
    expect(await codeOf(() => store.search('  *** '))).toBe('INVALID_ARGUMENT')
    expect(await codeOf(() => store.search(5))).toBe('INVALID_ARGUMENT')
    expect(await codeOf(() => store.search('x', { limit: 0 }))).toBe('INVALID_ARGUMENT')
    expect(await codeOf(() => store.search('x', { sessionId: 'ghost' }))).toBe('SESSION_NOT_FOUND')
    await store.deleteSession(a)
    expect(await store.search('frobnicator')).toHaveLength(1)
  })

  test('forkSession copies the transcript up to a sequence into a new session that links back', async () => {
    const store = await newStore()
    const source = await store.createSession()
    await claudeBridge.updateClaudeSessionId(store, source, 'claude-abc')
    await store.addTag(source, 'feature')
    await claudeBridge.storeEvent(store, source, PROMPT)
    const long = 'x'.repeat(5000)
    await terminalBridge.storeStdout(store, source, long)
    await terminalBridge.storeStdout(store, source, 'after the fork point')
    const fork = await store.forkSession(source, { atSequence: 2, newSessionId: 'rewound' })
    expect(fork).toBe('rewound')
    expect(await store.getSession(fork)).toMatchObject({
      parentSessionId: source,
      forkedAtSequence: 2,
      lastSequence: 2,
      claudeSessionId: 'claude-abc',
      title: 'Fix the flaky',
      tags: ['feature'],
    })
    const copied = await store.messages(fork)
    const original = await store.messages(source)
    expect(copied.map((m) => m.content)).toEqual(original.slice(0, 2).map((m) => m.content))
    expect(copied.map((m) => m.sequenceNumber)).toEqual([1, 2])
    for (const m of copied) expect(original.some((o) => o.id === m.id)).toBe(false)
    expect((await terminalBridge.storeStdout(store, fork, 'a new branch')).sequenceNumber).toBe(3)
    expect(await store.messages(source)).toHaveLength(3)
    const generated = await store.forkSession(source, { atSequence: 0 })
    expect(generated).toMatch(/^[0-9a-f-]{36}$/)
    expect((await store.getSession(generated)).lastSequence).toBe(0)
    expect(await codeOf(() => store.forkSession(source, { atSequence: 4 }))).toBe('INVALID_ARGUMENT')
    expect(await codeOf(() => store.forkSession(source, {}))).toBe('INVALID_ARGUMENT')
    expect(await codeOf(() => store.forkSession(source))).toBe('INVALID_ARGUMENT')
    expect(await codeOf(() => store.forkSession(source, { atSequence: 1, newSessionId: 'rewound' }))).toBe(
      'SESSION_EXISTS',
    )
    expect(await codeOf(() => store.forkSession('ghost', { atSequence: 0 }))).toBe('SESSION_NOT_FOUND')
    expect(await codeOf(() => store.forkSession(source, { atSequence: 0, newSessionId: '' }))).toBe('INVALID_ARGUMENT')
    expect(await store.listSessions()).toHaveLength(3)
  })

  test('importClaudeSessions reads the CLI transcripts once, keeping malformed lines', async () => {
    const store = await newStore()
    const projects = tmpDir()
    const project = path.join(projects, '-home-me-app')
    fs.mkdirSync(project)
    const id = '5d0c8a52-51b4-4b8e-9a57-1f1f7e3c2a10'
    const lines = [
      JSON.stringify({ type: 'summary', summary: 'Login page', leafUuid: 'u2' }),
      JSON.stringify({
        type: 'user',
        cwd: '/home/me/app',
        sessionId: id,
        message: { role: 'user', content: 'Add a login page' },
      }),
      '{"type":"assistant", truncated',
    ]
    const file = path.join(project, `${id}.jsonl`)
    fs.writeFileSync(file, `${lines.join('\n')}\n`)
    fs.writeFileSync(path.join(project, 'not-a-session.txt'), 'x')
    expect(await store.importClaudeSessions({ projectsDir: projects })).toEqual({
      sessions: 1,
      messages: 3,
      malformed: 1,
    })
    expect(await store.getSession(id)).toMatchObject({
      title: 'Add a login page',
      cwd: '/home/me/app',
      claudeSessionId: id,
      lastSequence: 3,
    })
    const stored = await store.messages(id)
    expect(stored[1].content).toBe(lines[1])
    expect(JSON.parse(stored[2].content)).toEqual({ type: 'claude_output', content: lines[2] })
    expect(await store.importClaudeSessions({ projectsDir: projects })).toEqual({
      sessions: 0,
      messages: 0,
      malformed: 0,
    })
    fs.appendFileSync(file, `${JSON.stringify({ type: 'assistant', message: { content: 'Done' } })}\n`)
    expect(await store.importClaudeSessions({ projectsDir: projects })).toEqual({
      sessions: 1,
      messages: 1,
      malformed: 0,
    })
    expect(await store.importClaudeSessions({ projectsDir: projects, since: Date.now() + 60_000 })).toEqual({
      sessions: 0,
      messages: 0,
      malformed: 0,
    })
    expect(await codeOf(() => store.importClaudeSessions({ projectsDir: path.join(projects, 'nope') }))).toBe(
      'INVALID_ARGUMENT',
    )
    expect(await codeOf(() => store.importClaudeSessions({ projectsDir: 3 }))).toBe('INVALID_ARGUMENT')
  })

  test("requestStop stops the session's run and resolves once the end is stored", async () => {
    const store = await newStore()
    const id = await store.createSession()
    // Nothing runs: at once.
    await store.requestStop(id)
    const run = await spawnTerminal({
      store,
      registry: new ProcessRegistry(),
      sessionId: id,
      command: 'sh',
      args: ['-c', 'echo up; sleep 300'],
    })
    // (Another process's or host's store: the CLI's and the core's tests.)
    const feed = changeFeed(store)
    await store.requestStop(id)
    // Resolved after the end was stored: nothing to wait for.
    const last = (await store.messages(id)).at(-1)
    expect((await run.exited).stopped).toBe(true)
    expect(JSON.parse(last.content)).toMatchObject({ type: 'terminal_finished', stopped: true })
    await feed.until((c) => c.kind === 'run')
    feed.off()
    expect(await codeOf(() => store.requestStop('ghost'))).toBe('SESSION_NOT_FOUND')
    expect(await codeOf(() => store.requestStop(7))).toBe('INVALID_ARGUMENT')
  })

  test("onSessionsChanged tells this store's changes in order, and nothing after unsubscribing", async () => {
    const store = await newStore()
    const feed = changeFeed(store)
    const id = await store.createSession()
    await claudeBridge.storeEvent(store, id, PROMPT)
    await claudeBridge.storeEvent(store, id, result(0.1, 1))
    await claudeBridge.setRunning(store, id)
    await store.addTag(id, 't')
    await store.archive(id)
    await store.closeSession(id)
    await store.deleteSession(id)
    await feed.until((c) => c.kind === 'deleted')
    expect(feed.heard.map((c) => c.kind)).toEqual([
      'created',
      'messages',
      'title',
      'messages',
      'usage',
      'status',
      'tags',
      'archived',
      'closed',
      'deleted',
    ])
    expect(feed.heard.every((c) => c.sessionId === id)).toBe(true)
    feed.off()
    feed.off()
    await store.createSession()
    await new Promise((resolve) => setImmediate(resolve))
    expect(feed.heard).toHaveLength(10)
    expect(() => store.onSessionsChanged('nope')).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }))
  })
})

test('another process on the SQLite file sees the changes, with no polling of the list', async () => {
  const db = path.join(tmpDir(), 'shared.db')
  const store = SessionStore.open(db)
  const feed = changeFeed(store)
  const child = spawn(process.execPath, [path.join(__dirname, 'fixtures', 'other-writer.js'), db, 'elsewhere', '2'], {
    stdio: ['pipe', 'ignore', 'inherit'],
  })
  const closed = new Promise((resolve) => child.once('close', resolve))
  expect(await feed.until((c) => c.sessionId === 'elsewhere')).toEqual({ sessionId: 'elsewhere', kind: 'created' })
  child.stdin.end('go\n')
  expect(await closed).toBe(0)
  await store.deleteSession('elsewhere')
  await feed.until((c) => c.kind === 'deleted')
  // Told once each: the other process's create and appends (one change per
  // commit), this store's delete.
  const kinds = feed.heard.map((c) => c.kind)
  expect(kinds[0]).toBe('created')
  expect(kinds.at(-1)).toBe('deleted')
  expect(new Set(kinds.slice(1, -1))).toEqual(new Set(['messages']))
  expect(feed.heard.every((c) => c.sessionId === 'elsewhere')).toBe(true)
  feed.off()
  await store.close()
})

test('another host on PostgreSQL sees the changes through NOTIFY', async () => {
  const url = await postgresSchemaUrl()
  const here = await SessionStore.connect(url)
  const there = await SessionStore.connect(url)
  const feed = changeFeed(here)
  const id = await there.createSession()
  await there.setTitle(id, 'named there')
  expect(await feed.until((c) => c.sessionId === id && c.kind === 'title')).toEqual({ sessionId: id, kind: 'title' })
  expect(feed.heard.filter((c) => c.sessionId === id).map((c) => c.kind)).toEqual(['created', 'title'])
  feed.off()
  await Promise.all([here.close(), there.close()])
})

test('usage totals equal the stored results after a SIGKILL in the middle of a stream of them', async () => {
  const db = path.join(tmpDir(), 'usage.db')
  const store = SessionStore.open(db)
  const id = await store.createSession()
  await store.close()
  const child = spawn(process.execPath, [path.join(__dirname, 'fixtures', 'append-and-report.js'), db, id, 'results'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const acknowledged = deferred()
  let lines = 0
  child.stdout.on('data', (chunk) => {
    lines += chunk.toString().split('\n').length - 1
    if (lines >= 500) acknowledged.resolve()
  })
  await acknowledged.promise
  child.kill('SIGKILL')
  await new Promise((resolve) => child.once('close', resolve))
  const reopened = SessionStore.open(db)
  const stored = (await reopened.messages(id)).map((m) => JSON.parse(m.content))
  expect(stored.length).toBeGreaterThanOrEqual(500)
  const session = await reopened.getSession(id)
  expect(session.usage.turns).toBe(stored.length)
  expect(session.usage.inputTokens).toBe(stored.reduce((sum, r) => sum + r.usage.input_tokens, 0))
  expect(session.usage.durationMs).toBe(stored.reduce((sum, r) => sum + r.duration_ms, 0))
  await reopened.close()
})
