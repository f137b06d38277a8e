// spawnClaude against a fast stand-in for the CLI (fixtures/fake-claude.js)
// that speaks stream-json both ways. The real CLI runs in claude-real.test.js.
const fs = require('node:fs')
const path = require('node:path')
const { ProcessRegistry, SessionStore, spawnClaude } = require('..')
const { codeOf, deferred, tempDirs, withGuardian } = require('./helpers')

const FAKE_CLAUDE = path.join(__dirname, 'fixtures', 'fake-claude.js')
const MARK = { EREN_TEST_CHILD: '1' }
const tmpDir = tempDirs('eren-claude-')

// Runs a failing test left behind are stopped, so no CLI outlives the file.
const registries = []
afterEach(() => {
  for (const registry of registries.splice(0)) for (const id of registry.sessionIds()) registry.stop(id)
})

async function setup() {
  const store = SessionStore.inMemory()
  await store.createSession('c')
  const registry = new ProcessRegistry()
  registries.push(registry)
  return { store, registry }
}

/** Starts the fake CLI; resolves with the run, the store and what onMessage saw. */
async function claude(opts = {}) {
  const ctx = await setup()
  const seen = []
  const run = await spawnClaude({
    store: ctx.store,
    registry: ctx.registry,
    sessionId: 'c',
    claudePath: FAKE_CLAUDE,
    env: MARK,
    onMessage: (m) => seen.push(m),
    ...opts,
  })
  return { ...ctx, run, seen }
}

const contents = async (store) => (await store.messages('c')).map((m) => JSON.parse(m.content))
const types = async (store) => (await contents(store)).map((c) => c.type)

/** onMessage for a run, and `until(test)`: the first content so far or later that matches. */
function watcher() {
  const seen = []
  const waiting = new Set()
  return {
    onMessage: (m) => {
      const content = JSON.parse(m.content)
      seen.push(content)
      for (const wait of waiting) wait(content)
    },
    until: (test) => {
      const found = seen.find(test)
      if (found) return Promise.resolve(found)
      const match = deferred()
      const wait = (content) => {
        if (test(content)) {
          waiting.delete(wait)
          match.resolve(content)
        }
      }
      waiting.add(wait)
      return match.promise
    },
  }
}

/** An onMessage callback and a promise for the first content matching `test`. */
function watchFor(test) {
  const events = watcher()
  return { found: events.until(test), onMessage: events.onMessage }
}

describe('the command line and stdin', () => {
  test('argv is stream-json both ways with the typed options as flags; the prompt goes to stdin only', async () => {
    const dir = tmpDir()
    const argvFile = path.join(dir, 'argv.json')
    const stdinFile = path.join(dir, 'stdin.jsonl')
    const { store, run } = await claude({
      prompt: 'success',
      resumeSessionId: 'prev-session',
      model: 'opus',
      permissionMode: 'plan',
      allowedTools: ['Read', 'Bash(git *)'],
      disallowedTools: ['WebFetch'],
      maxTurns: 3,
      appendSystemPrompt: '-be brief',
      includePartialMessages: true,
      canUseTool: () => ({ behavior: 'allow' }),
      args: ['--fork-session'],
      env: { ...MARK, FAKE_CLAUDE_ARGV: argvFile, FAKE_CLAUDE_STDIN: stdinFile },
    })
    await run.exited
    expect(JSON.parse(fs.readFileSync(argvFile, 'utf8'))).toEqual([
      '-p',
      '--input-format',
      'stream-json',
      '--output-format',
      'stream-json',
      '--verbose',
      '--model=opus',
      '--permission-mode=plan',
      '--allowedTools=Read,Bash(git *)',
      '--disallowedTools=WebFetch',
      '--max-turns=3',
      '--append-system-prompt=-be brief',
      '--resume=prev-session',
      '--permission-prompt-tool=stdio',
      '--include-partial-messages',
      '--fork-session',
    ])
    const written = fs.readFileSync(stdinFile, 'utf8').trim().split('\n').map(JSON.parse)
    expect(written).toEqual([
      {
        type: 'user',
        message: { role: 'user', content: [{ type: 'text', text: 'success' }] },
        parent_tool_use_id: null,
      },
    ])
    expect((await store.getSession('c')).claudeSessionId).toBe('prev-session')
  })

  test.each([
    ['--version', '--version'],
    ['-x is a flag', '-x is a flag'],
    ['--dangerously-skip-permissions', '--dangerously-skip-permissions'],
    ['a 200 KB prompt', 'p'.repeat(200 * 1024)],
  ])('%s as a prompt is a user message, never an option', async (_label, prompt) => {
    const stdinFile = path.join(tmpDir(), 'stdin.jsonl')
    const { store, run } = await claude({
      prompt,
      env: { ...MARK, FAKE_CLAUDE_STDIN: stdinFile },
    })
    expect((await run.exited).exitCode).toBe(0)
    const written = JSON.parse(fs.readFileSync(stdinFile, 'utf8'))
    expect(written.message.content[0].text).toBe(prompt)
    const stored = await contents(store)
    expect(stored[0].message.content[0].text).toBe(prompt)
    expect(stored.at(-1)).toMatchObject({ type: 'result', result: `You said: ${prompt}` })
  })
})

describe('conversation', () => {
  test('one-shot: stdin closes after the first result and the CLI exits', async () => {
    const { store, run } = await claude({ prompt: 'hello there' })
    expect(await run.exited).toMatchObject({ exitCode: 0, signal: null, stopped: false, timedOut: false })
    expect((await store.getSession('c')).agentStatus).toBe('idle')
    expect(await codeOf(() => run.send('more'))).toBe('NOT_RUNNING')
  })

  test('conversation: send() runs further turns, each stored before it is written; end() lets the CLI exit', async () => {
    const stdinFile = path.join(tmpDir(), 'stdin.jsonl')
    const firstResult = watchFor((c) => c.type === 'result')
    const { store, run } = await claude({
      prompt: 'one',
      conversation: true,
      env: { ...MARK, FAKE_CLAUDE_STDIN: stdinFile },
      onMessage: firstResult.onMessage,
    })
    await firstResult.found
    expect((await store.getSession('c')).agentStatus).toBe('idle')
    const sent = await run.send('two')
    expect(JSON.parse(sent.content)).toEqual({
      type: 'user',
      message: { role: 'user', content: [{ type: 'text', text: 'two' }] },
      parent_tool_use_id: null,
    })
    run.end()
    await run.exited
    // Stored exactly as written to stdin.
    expect(fs.readFileSync(stdinFile, 'utf8').trim().split('\n')[1]).toBe(sent.content)
    const results = (await contents(store)).filter((c) => c.type === 'result').map((c) => c.result)
    expect(results).toEqual(['You said: one', 'You said: two'])
    const all = await store.messages('c')
    const reply = all.findIndex((m) => m.content.includes('You said: two'))
    expect(all.findIndex((m) => m.sequenceNumber === sent.sequenceNumber)).toBeLessThan(reply)
    expect(await codeOf(() => run.send('late'))).toBe('NOT_RUNNING')
  })

  test('without a prompt a conversation is idle until the first send', async () => {
    const { store, run } = await claude({ conversation: true })
    expect((await store.getSession('c')).agentStatus).toBe('idle')
    const done = watchFor((c) => c.type === 'result')
    const unsubscribe = store.subscribe('c', done.onMessage)
    await run.send('first words')
    await done.found
    unsubscribe()
    run.end()
    run.end()
    await run.exited
    expect(await codeOf(() => run.interrupt())).toBe('NOT_RUNNING')
  })

  test('send after end() is INVALID_ARGUMENT and writes nothing', async () => {
    const { run, registry } = await claude({ prompt: 'hang', conversation: true })
    run.end()
    expect(await codeOf(() => run.send('no'))).toBe('INVALID_ARGUMENT')
    expect(await codeOf(() => run.send(5))).toBe('INVALID_ARGUMENT')
    expect(await codeOf(() => run.interrupt())).toBe('INVALID_ARGUMENT')
    registry.stop('c')
    await run.exited
  })

  test('timeout, an AbortSignal and kill() reach a Claude run as they do a terminal run', async () => {
    const timed = await claude({ prompt: 'hang', conversation: true, timeout: 200 })
    expect(await timed.run.exited).toMatchObject({ stopped: true, timedOut: true })
    const controller = new AbortController()
    const aborted = await claude({ prompt: 'hang', conversation: true, signal: controller.signal })
    controller.abort()
    expect(await aborted.run.exited).toMatchObject({ stopped: true, timedOut: false })
    const killed = await claude({ prompt: 'hang', conversation: true })
    killed.run.kill('SIGKILL')
    expect(await killed.run.exited).toMatchObject({ signal: 'SIGKILL', stopped: false })
  })

  test('interrupt() writes the interrupt request; the CLI ends the turn and stays', async () => {
    // onMessage, not subscribe: it runs after the status its message produced is stored.
    const events = watcher()
    const { store, run } = await claude({ prompt: 'hang', conversation: true, onMessage: events.onMessage })
    await events.until((c) => c.type === 'assistant')
    expect((await store.getSession('c')).agentStatus).toBe('running')
    await run.interrupt()
    await events.until((c) => c.type === 'result')
    const stored = await contents(store)
    expect(stored.find((c) => c.type === 'control_request')).toEqual({
      type: 'control_request',
      request_id: 'eren-interrupt-1',
      request: { subtype: 'interrupt' },
    })
    expect(stored.some((c) => c.type === 'control_response')).toBe(true)
    expect((await store.getSession('c')).errorMessage).toBe('Request interrupted')
    const again = await run.send('still here?')
    expect(again.sessionId).toBe('c')
    run.end()
    expect((await run.exited).exitCode).toBe(0)
  })
})

describe('everything printed is stored', () => {
  test('JSON objects verbatim, other stdout as claude_output, stderr as claude_stderr, with claudeSessionId', async () => {
    const { store, run, seen } = await claude({ prompt: 'success' })
    await run.exited
    // Stdout in order; stderr is read by its own thread, so only its
    // presence is certain (the terminals issue brings one reader for both).
    expect((await types(store)).filter((t) => t !== 'claude_stderr')).toEqual([
      'user',
      'system',
      'claude_output',
      'assistant',
      'user',
      'assistant',
      'result',
    ])
    const stored = await contents(store)
    expect(stored.find((c) => c.type === 'claude_output')).toEqual({
      type: 'claude_output',
      content: 'this line is not JSON',
    })
    expect(stored.find((c) => c.type === 'claude_stderr')).toEqual({
      type: 'claude_stderr',
      content: 'a warning on stderr',
    })
    expect(seen.map((m) => m.sequenceNumber)).toEqual(stored.map((_, i) => i + 1))
    const session = await store.getSession('c')
    expect(session).toMatchObject({ claudeSessionId: 'fake-claude-session-1', agentStatus: 'idle', errorMessage: null })
  })

  test('a 1.6 MB line, an object nested 200 deep and a line with a byte-order mark are stored whole', async () => {
    const big = await claude({ prompt: 'big' })
    await big.run.exited
    const bigLine = (await big.store.messages('c')).find((m) => m.content.length > 1_000_000)
    expect(JSON.parse(bigLine.content).message.content[0].text).toHaveLength(1_629_000)

    const deep = await claude({ prompt: 'deep' })
    await deep.run.exited
    const messages = await deep.store.messages('c')
    const nested = messages.find((m) => m.content.includes('"deep":['))
    expect(nested.content).toBe(
      `{"type":"assistant","session_id":"fake-claude-session-1","deep":${'['.repeat(200)}1${']'.repeat(200)}}`,
    )
    const bom = messages.find((m) => m.content.includes('"bom"'))
    expect(JSON.parse(bom.content)).toEqual({ type: 'assistant', session_id: 'fake-claude-session-1', bom: true })
  })

  test('claudeSessionId follows the latest session_id the CLI reports', async () => {
    const { store, run } = await claude({ prompt: 'fork' })
    await run.exited
    expect((await store.getSession('c')).claudeSessionId).toBe('fake-claude-session-forked')
  })
})

describe('tool permissions', () => {
  test('allow: the request is stored, status waiting while pending, the control_response is written and stored', async () => {
    const asked = deferred()
    const gate = deferred()
    const { store, run } = await claude({
      prompt: 'tool',
      canUseTool: async (request) => {
        asked.resolve(request)
        await gate.promise
        return { behavior: 'allow' }
      },
    })
    const requestSeen = await asked.promise
    // Stored in the same turn as the request: each read awaits the store.
    while ((await store.getSession('c')).agentStatus !== 'waiting') {}
    expect(requestSeen).toMatchObject({
      requestId: 'req-1',
      toolName: 'Bash',
      input: { command: 'touch marker' },
      toolUseId: 'toolu_1',
      suggestions: [{ type: 'addRules', rules: [{ toolName: 'Bash' }] }],
    })
    expect(requestSeen.signal.aborted).toBe(false)
    gate.resolve()
    await run.exited
    const stored = await contents(store)
    const request = stored.findIndex((c) => c.type === 'control_request')
    const response = stored.findIndex((c) => c.type === 'control_response')
    expect(request).toBeGreaterThan(-1)
    expect(response).toBeGreaterThan(request)
    expect(stored[response].response).toEqual({
      subtype: 'success',
      request_id: 'req-1',
      response: { behavior: 'allow', updatedInput: { command: 'touch marker' } },
    })
    expect(
      stored.find((c) => c.type === 'user' && c.message.content[0].type === 'tool_result').message.content[0].content,
    ).toBe('ran {"command":"touch marker"}')
    expect((await store.getSession('c')).agentStatus).toBe('idle')
  })

  test('deny with a message and interrupt; a throwing or rejecting callback is a deny carrying its message', async () => {
    const decisions = [
      [
        () => ({ behavior: 'deny', message: 'not today', interrupt: true }),
        { behavior: 'deny', message: 'not today', interrupt: true },
      ],
      [
        () => {
          throw new Error('callback broke')
        },
        { behavior: 'deny', message: 'callback broke', interrupt: false },
      ],
      [() => Promise.reject(new Error('async broke')), { behavior: 'deny', message: 'async broke', interrupt: false }],
      [() => 'yes', { behavior: 'deny', interrupt: false }],
    ]
    for (const [canUseTool, expected] of decisions) {
      const { store, run } = await claude({ prompt: 'tool', canUseTool })
      await run.exited
      const response = (await contents(store)).find((c) => c.type === 'control_response')
      expect(response.response.response).toMatchObject(expected)
    }
  })

  test('an error while reading a decision is a deny carrying its message, never an allow', async () => {
    const canUseTool = () => ({
      behavior: 'allow',
      get updatedInput() {
        throw new Error('the getter broke')
      },
    })
    const { store, run } = await claude({ prompt: 'tool', canUseTool })
    await run.exited
    const response = (await contents(store)).find((c) => c.type === 'control_response')
    expect(response.response.response).toMatchObject({ behavior: 'deny', interrupt: false })
    expect(response.response.response.message).toContain('the getter broke')
  })

  test('a callback that throws an odd value (a Symbol, a bare object, an error whose message throws) is a deny, and the host lives', async () => {
    const poisoned = new Error('x')
    Object.defineProperty(poisoned, 'message', {
      get() {
        throw new Error('no message for you')
      },
    })
    for (const thrown of [Symbol('odd'), Object.create(null), poisoned]) {
      const { store, run } = await claude({
        prompt: 'tool',
        canUseTool: () => {
          throw thrown
        },
      })
      await run.exited
      const response = (await contents(store)).find((c) => c.type === 'control_response')
      expect(response.response.response).toMatchObject({ behavior: 'deny', interrupt: false })
      expect(typeof response.response.response.message).toBe('string')
    }
  })

  test('AskUserQuestion: waiting, then answered with allow and updatedInput holding the answers', async () => {
    const asked = watchFor((c) => c.type === 'assistant' && c.message.content[0].name === 'AskUserQuestion')
    const answered = deferred()
    const { store, run } = await claude({
      prompt: 'ask',
      onMessage: asked.onMessage,
      canUseTool: async (request) => {
        await answered.promise
        return { behavior: 'allow', updatedInput: { ...request.input, answers: { 'Which file?': 'main.rs' } } }
      },
    })
    await asked.found
    expect((await store.getSession('c')).agentStatus).toBe('waiting')
    answered.resolve()
    await run.exited
    const stored = await contents(store)
    const toolResult = stored.find((c) => c.type === 'user' && c.message.content[0].type === 'tool_result')
    expect(toolResult.message.content[0].content).toBe('User answered: {"Which file?":"main.rs"}')
    expect((await store.getSession('c')).agentStatus).toBe('idle')
  })

  test('a request the CLI cancels aborts its signal and gets no answer', async () => {
    const aborted = deferred()
    const { store, run } = await claude({
      prompt: 'cancel',
      canUseTool: (request) => {
        request.signal.addEventListener('abort', () => aborted.resolve())
        return new Promise(() => {})
      },
    })
    await aborted.promise
    await run.exited
    expect((await types(store)).filter((t) => t === 'control_response')).toEqual([])
    expect((await types(store)).includes('control_cancel_request')).toBe(true)
  })

  test('a pending request is aborted when the run ends', async () => {
    const aborted = deferred()
    const { registry, run } = await claude({
      prompt: 'tool',
      killGraceMs: 200,
      canUseTool: (request) => {
        request.signal.addEventListener('abort', () => aborted.resolve())
        registry.stop('c')
        return new Promise(() => {})
      },
    })
    await aborted.promise
    expect((await run.exited).stopped).toBe(true)
  })

  test('a control request the host does not handle gets an error response, not silence', async () => {
    const { store, run } = await claude({ prompt: 'hook' })
    await run.exited
    const response = (await contents(store)).find((c) => c.type === 'control_response')
    expect(response.response).toMatchObject({ subtype: 'error', request_id: 'req-1' })
    expect(response.response.error).toContain('hook_callback')
  })
})

describe('status and endings', () => {
  test('an error result sets error with its text, else its errors joined', async () => {
    const failed = await claude({ prompt: 'error-result' })
    expect((await failed.run.exited).exitCode).toBe(1)
    expect(await failed.store.getSession('c')).toMatchObject({
      agentStatus: 'error',
      errorMessage: 'API quota exceeded',
    })
    const turns = await claude({ prompt: 'max-turns' })
    await turns.run.exited
    expect(await turns.store.getSession('c')).toMatchObject({
      agentStatus: 'error',
      errorMessage: 'Reached maximum number of turns (1)',
    })
  })

  test('a failed exit without a result sets error with the tail of stderr', async () => {
    const { store, run } = await claude({ prompt: 'crash' })
    expect((await run.exited).exitCode).toBe(2)
    const session = await store.getSession('c')
    expect(session.agentStatus).toBe('error')
    expect(session.errorMessage).toContain('Invalid API key')
    expect(session.errorMessage).toContain('Please run /login')
  })

  test('stop interrupts with SIGINT first: the transcript ends with the CLI own result, then not_available', async () => {
    const working = watchFor((c) => c.type === 'assistant')
    const { store, registry, run } = await claude({ prompt: 'hang', onMessage: working.onMessage })
    await working.found
    registry.stop('c')
    const result = await run.exited
    expect(result).toMatchObject({ exitCode: 0, signal: null, stopped: true, timedOut: false })
    const stored = await contents(store)
    expect(stored.at(-1)).toMatchObject({ type: 'result', errors: ['[Request interrupted by user]'] })
    expect((await store.getSession('c')).agentStatus).toBe('not_available')
  })
})

test('a CLI that ignores the SIGINT of a stop is SIGKILLed with its group after killGraceMs', async () => {
  const deaf = watchFor((c) => c.type === 'assistant')
  const { store, registry, run } = await claude({ prompt: 'stubborn', killGraceMs: 200, onMessage: deaf.onMessage })
  await deaf.found
  registry.stop('c')
  expect(await run.exited).toMatchObject({ exitCode: null, signal: 'SIGKILL', stopped: true, timedOut: false })
  expect((await store.getSession('c')).agentStatus).toBe('not_available')
})

// The run outlives its SIGKILLed host without a guardian.
withGuardian(
  'a host killed during a run: on the next open the session is not_available with a run_interrupted message',
  async () => {
    const { spawn } = require('node:child_process')
    const file = path.join(tmpDir(), 'sessions.db')
    const host = spawn(process.execPath, [path.join(__dirname, 'fixtures', 'claude-host.js'), file], {
      env: { ...process.env, ...MARK },
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    await new Promise((resolve) => host.stdout.on('data', (d) => String(d).includes('working') && resolve()))
    const gone = new Promise((resolve) => host.on('exit', resolve))
    host.kill('SIGKILL')
    await gone
    const store = SessionStore.open(file)
    const session = await store.getSession('c')
    expect(session.agentStatus).toBe('not_available')
    expect(session.errorMessage).toBe('the host ended during the run')
    const last = (await store.messages('c')).at(-1)
    expect(JSON.parse(last.content)).toEqual({ type: 'run_interrupted' })
    await store.close()
  },
)

describe('bad input', () => {
  test('bad options reject with INVALID_ARGUMENT and spawn nothing', async () => {
    const { store, registry } = await setup()
    const base = { store, registry, sessionId: 'c', claudePath: FAKE_CLAUDE, env: MARK }
    for (const opts of [
      { ...base, prompt: 5 },
      { ...base, conversation: 'yes' },
      { ...base, permissionMode: 'yolo' },
      { ...base, maxTurns: 0 },
      { ...base, maxTurns: 1.5 },
      { ...base, allowedTools: 'Bash' },
      { ...base, disallowedTools: [1] },
      { ...base, includePartialMessages: 'no' },
      { ...base, canUseTool: {} },
      { ...base, claudePath: '' },
      { ...base, clearEnv: 1 },
    ]) {
      expect(await codeOf(() => spawnClaude(opts))).toBe('INVALID_ARGUMENT')
    }
    expect(registry.count()).toBe(0)
    expect((await store.getSession('c')).lastSequence).toBe(0)
  })

  test('a missing executable is SPAWN_FAILED naming the PATH searched; a missing cwd says so', async () => {
    const { store, registry } = await setup()
    const notFound = await spawnClaude({
      store,
      registry,
      sessionId: 'c',
      prompt: 'x',
      claudePath: 'no-such-claude',
      env: { ...MARK, PATH: '/nowhere:/also/nowhere' },
    }).catch((e) => e)
    expect(notFound.code).toBe('SPAWN_FAILED')
    expect(notFound.message).toContain('/nowhere:/also/nowhere')
    const noCwd = await spawnClaude({
      ...{ store, registry, sessionId: 'c' },
      claudePath: FAKE_CLAUDE,
      cwd: '/no/such/dir',
    }).catch((e) => e)
    expect(noCwd.code).toBe('SPAWN_FAILED')
    expect(noCwd.message).toContain('working directory /no/such/dir does not exist')
    expect(registry.count()).toBe(0)
  })
})
