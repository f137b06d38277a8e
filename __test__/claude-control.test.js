'use strict'
// The Claude control plane against the fast stand-in for the CLI
// (fixtures/fake-claude.js, which answers control requests as CLI 2.1.x
// does): control(), the typed helpers, initialization, content blocks in
// send() and prompt, and onStatus. The real CLI's answers are checked in
// claude-real.test.js.
const path = require('node:path')
const { ProcessRegistry, SessionStore, spawnClaude } = require('..')
const { codeOf, deferred, thrownCode } = require('./helpers')

const FAKE_CLAUDE = path.join(__dirname, 'fixtures', 'fake-claude.js')
const MARK = { EREN_TEST_CHILD: '1' }

const registries = []
afterEach(() => {
  for (const registry of registries.splice(0)) for (const id of registry.sessionIds()) registry.stop(id)
})

/** A conversation with the fake CLI, idle and waiting for input. */
async function conversation(opts = {}) {
  const store = SessionStore.inMemory()
  const sessionId = await store.createSession()
  const registry = new ProcessRegistry()
  registries.push(registry)
  const run = await spawnClaude({
    store,
    registry,
    sessionId,
    claudePath: FAKE_CLAUDE,
    env: MARK,
    conversation: true,
    ...opts,
  })
  const stored = async () => (await store.messages(sessionId)).map((m) => JSON.parse(m.content))
  return { store, registry, sessionId, run, stored }
}

describe('control()', () => {
  test('resolves with the CLI response, and the request and response are stored in order', async () => {
    const { run, stored } = await conversation()
    expect(await run.control('set_model', { model: 'claude-sonnet-4-5' })).toEqual({ model: 'claude-sonnet-4-5' })
    const events = await stored()
    const request = events.findIndex((e) => e.type === 'control_request' && e.request.subtype === 'set_model')
    expect(request).toBeGreaterThanOrEqual(0)
    expect(events[request].request).toEqual({ subtype: 'set_model', model: 'claude-sonnet-4-5' })
    // Stored by the time control() resolves, after its request.
    const response = events.findIndex(
      (e) => e.type === 'control_response' && e.response.request_id === events[request].request_id,
    )
    expect(events[response].response.subtype).toBe('success')
    expect(response).toBeGreaterThan(request)
    run.end()
    await run.exited
  })

  test('a request the CLI refuses rejects with INVALID_ARGUMENT carrying its text', async () => {
    const { run } = await conversation()
    const refused = await run.control('no_such_thing').catch((e) => e)
    expect(refused.code).toBe('INVALID_ARGUMENT')
    expect(refused.message).toContain('Unsupported control request subtype: no_such_thing')
    run.end()
    await run.exited
  })

  test('a request still unanswered when the run ends rejects with NOT_RUNNING, as does one after', async () => {
    const { run, registry, sessionId } = await conversation()
    const unanswered = run.control('fake_never_answers')
    registry.stop(sessionId)
    expect(await codeOf(() => unanswered)).toBe('NOT_RUNNING')
    await run.exited
    expect(await codeOf(() => run.control('set_model', { model: 'x' }))).toBe('NOT_RUNNING')
  })

  test('bad arguments are INVALID_ARGUMENT and nothing is written', async () => {
    const { run, stored } = await conversation()
    expect(thrownCode(() => run.control())).toBe('INVALID_ARGUMENT')
    expect(thrownCode(() => run.control(''))).toBe('INVALID_ARGUMENT')
    expect(thrownCode(() => run.control('set_model', 'claude'))).toBe('INVALID_ARGUMENT')
    expect(thrownCode(() => run.control('set_model', [1]))).toBe('INVALID_ARGUMENT')
    expect((await stored()).filter((e) => e.type === 'control_request')).toEqual([])
    run.end()
    await run.exited
  })
})

describe('typed helpers', () => {
  test('setPermissionMode takes every mode the CLI accepts, dontAsk and auto included, and refuses others', async () => {
    const { run, stored } = await conversation()
    for (const mode of ['acceptEdits', 'plan', 'dontAsk', 'auto', 'default']) {
      await expect(run.setPermissionMode(mode)).resolves.toBeUndefined()
    }
    const refused = await run.setPermissionMode('reckless').catch((e) => e)
    expect(refused.code).toBe('INVALID_ARGUMENT')
    expect(refused.message).toContain('must be one of')
    expect(thrownCode(() => run.setPermissionMode(3))).toBe('INVALID_ARGUMENT')
    const modes = (await stored())
      .filter((e) => e.type === 'control_request' && e.request.subtype === 'set_permission_mode')
      .map((e) => e.request.mode)
    expect(modes).toEqual(['acceptEdits', 'plan', 'dontAsk', 'auto', 'default', 'reckless'])
    run.end()
    await run.exited
  })

  test('setModel, setMaxThinkingTokens and mcpServerStatus', async () => {
    const { run, stored } = await conversation()
    await expect(run.setModel('claude-opus-4-1')).resolves.toBeUndefined()
    await expect(run.setModel()).resolves.toBeUndefined()
    await expect(run.setMaxThinkingTokens(2048)).resolves.toBeUndefined()
    await expect(run.setMaxThinkingTokens(null)).resolves.toBeUndefined()
    expect(thrownCode(() => run.setMaxThinkingTokens(-1))).toBe('INVALID_ARGUMENT')
    expect(thrownCode(() => run.setModel(7))).toBe('INVALID_ARGUMENT')
    expect(await run.mcpServerStatus()).toEqual([{ name: 'fake-server', status: 'connected' }])
    const requests = (await stored()).filter((e) => e.type === 'control_request').map((e) => e.request)
    expect(requests).toEqual([
      { subtype: 'set_model', model: 'claude-opus-4-1' },
      { subtype: 'set_model', model: null },
      { subtype: 'set_max_thinking_tokens', max_thinking_tokens: 2048 },
      { subtype: 'set_max_thinking_tokens', max_thinking_tokens: null },
      { subtype: 'mcp_status' },
    ])
    run.end()
    await run.exited
  })

  test('initialization asks the CLI once, however often it is read', async () => {
    const { run, stored } = await conversation()
    const [first, second] = await Promise.all([run.initialization, run.initialization])
    expect(first).toMatchObject({ commands: [{ name: 'compact' }], account: { email: 'fake@example.com' } })
    expect(second).toEqual(first)
    expect(await run.initialization).toEqual(first)
    const asked = (await stored()).filter((e) => e.type === 'control_request' && e.request.subtype === 'initialize')
    expect(asked).toHaveLength(1)
    run.end()
    await run.exited
  })
})

describe('content blocks', () => {
  const IMAGE = { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } }

  test('send() and prompt take content blocks, stored and written as sent', async () => {
    const { run, stored } = await conversation({ prompt: [{ type: 'text', text: 'look' }, IMAGE] })
    const sent = await run.send([IMAGE, { type: 'text', text: 'and this' }])
    expect(JSON.parse(sent.content).message.content).toEqual([IMAGE, { type: 'text', text: 'and this' }])
    const users = (await stored()).filter((e) => e.type === 'user' && e.parent_tool_use_id === null)
    expect(users.map((u) => u.message.content)).toEqual([
      [{ type: 'text', text: 'look' }, IMAGE],
      [IMAGE, { type: 'text', text: 'and this' }],
    ])
    run.end()
    await run.exited
  })

  test.each([[[]], [[{ text: 'no type' }]], [[1]], [{ type: 'text' }], [5]])(
    'send(%p) is INVALID_ARGUMENT and stores nothing',
    async (content) => {
      const { run, stored } = await conversation()
      const before = (await stored()).length
      expect(await codeOf(() => run.send(content))).toBe('INVALID_ARGUMENT')
      expect((await stored()).length).toBe(before)
      run.end()
      await run.exited
    },
  )
})

describe('onStatus', () => {
  test('reports each status the run stores from then on, and not after unsubscribing', async () => {
    const { run } = await conversation()
    const seen = []
    const idle = deferred()
    const unsubscribe = run.onStatus((status) => {
      seen.push(status)
      if (status === 'idle') idle.resolve()
    })
    await run.send('hello')
    await idle.promise
    expect(seen).toEqual(['running', 'idle'])
    unsubscribe()
    await run.send('again')
    run.end()
    await run.exited
    expect(seen).toEqual(['running', 'idle'])
  })

  test('a stop ends with not_available', async () => {
    const { run, registry, sessionId } = await conversation({ prompt: 'hang' })
    const seen = []
    run.onStatus((status) => seen.push(status))
    registry.stop(sessionId)
    await run.exited
    expect(seen.at(-1)).toBe('not_available')
    expect(thrownCode(() => run.onStatus('nope'))).toBe('INVALID_ARGUMENT')
  })
})

describe('options the Agent SDK passes at start', () => {
  const fs = require('node:fs')
  const os = require('node:os')

  /** Runs the fake CLI to its end with `options`; resolves with the argv after its six fixed flags. */
  async function flagsFor(options) {
    const argvFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'eren-claude-options-')), 'argv')
    const store = SessionStore.inMemory()
    const sessionId = await store.createSession()
    const run = await spawnClaude({
      store,
      registry: new ProcessRegistry(),
      sessionId,
      claudePath: FAKE_CLAUDE,
      env: { ...MARK, FAKE_CLAUDE_ARGV: argvFile },
      prompt: 'success',
      ...options,
    })
    await run.exited
    return JSON.parse(fs.readFileSync(argvFile, 'utf8')).slice(6)
  }

  test('each becomes its CLI flag, and mcpServers a private file that is removed with the run', async () => {
    const mcpServers = { files: { command: 'mcp-files', env: { TOKEN: 'secret' } } }
    const agents = { reviewer: { description: 'Reviews code', prompt: 'You review code.' } }
    const flags = await flagsFor({
      systemPrompt: 'You are terse.',
      mcpServers,
      agents,
      settingSources: ['project', 'local'],
      additionalDirectories: ['/srv/a', '-odd'],
      fallbackModel: 'sonnet',
      maxBudgetUsd: 1.5,
      maxThinkingTokens: 4096,
      effort: 'high',
      continue: true,
      forkSession: true,
    })
    const mcp = flags.find((a) => a.startsWith('--mcp-config='))
    expect(flags).toEqual([
      '--system-prompt=You are terse.',
      `--agents=${JSON.stringify(agents)}`,
      '--setting-sources=project,local',
      '--add-dir=/srv/a',
      '--add-dir=-odd',
      '--fallback-model=sonnet',
      '--max-budget-usd=1.5',
      '--max-thinking-tokens=4096',
      '--effort=high',
      mcp,
      '--continue',
      '--fork-session',
    ])
    // The secret is in the file, never in argv, and the file went with the run.
    expect(flags.join(' ')).not.toContain('secret')
    expect(fs.existsSync(mcp.slice('--mcp-config='.length))).toBe(false)
  })

  test('the preset system prompt appends, and an empty settingSources loads none', async () => {
    const flags = await flagsFor({
      systemPrompt: { type: 'preset', preset: 'claude_code', append: 'Answer in French.' },
      settingSources: [],
    })
    expect(flags).toEqual(['--append-system-prompt=Answer in French.', '--setting-sources='])
  })

  test.each([
    { systemPrompt: 5 },
    { systemPrompt: { type: 'preset', preset: 'other' } },
    { systemPrompt: { type: 'preset', preset: 'claude_code', append: 'x' }, appendSystemPrompt: 'y' },
    { mcpServers: ['a'] },
    { agents: 'reviewer' },
    { settingSources: ['everything'] },
    { maxBudgetUsd: -1 },
    { maxThinkingTokens: 1.5 },
    { effort: 'extreme' },
    { continue: 'yes' },
    { hooks: 'PreToolUse' },
    { hooks: { PreToolUse: () => ({}) } },
    { hooks: { PreToolUse: [{ hooks: ['not a function'] }] } },
    { hooks: { PreToolUse: [{ matcher: 3, hooks: [] }] } },
    { hooks: { PreToolUse: [{ hooks: [], timeout: 'long' }] } },
  ])('%p is INVALID_ARGUMENT and nothing starts', async (bad) => {
    const store = SessionStore.inMemory()
    const sessionId = await store.createSession()
    const registry = new ProcessRegistry()
    const code = await codeOf(() =>
      spawnClaude({ store, registry, sessionId, claudePath: FAKE_CLAUDE, env: MARK, prompt: 'success', ...bad }),
    )
    expect(code).toBe('INVALID_ARGUMENT')
    expect(await store.messages(sessionId)).toEqual([])
    expect(registry.sessionIds()).toEqual([])
  })
})
