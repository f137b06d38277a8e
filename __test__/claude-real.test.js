// spawnClaude against the real Claude Code CLI (pinned in
// fixtures/claude-cli.js), offline: a scratch HOME, a dummy API key, and
// ANTHROPIC_BASE_URL at a stand-in for the Messages API on 127.0.0.1
// (fixtures/model-api.js) whose replies are chosen by markers in the prompt.
const fs = require('node:fs')
const path = require('node:path')
const readline = require('node:readline')
const { ProcessRegistry, SessionStore, spawnClaude } = require('..')
const { deferred, tempDirs } = require('./helpers')
const { claudeCli, VERSION } = require('./fixtures/claude-cli')
const { startModelApi, lastUserText, lastToolResult } = require('./fixtures/model-api')

jest.setTimeout(120000)
const tmpDir = tempDirs('eren-claude-real-')
const BIG = 1_600_000

/** Every request body the stand-in model has received. */
const bodies = []

/** What the stand-in model says, by the marker in the latest user text. */
function reply(body) {
  bodies.push(body)
  const result = lastToolResult(body)
  const text = lastUserText(body)
  if (result) {
    const content = typeof result.content === 'string' ? result.content : JSON.stringify(result.content)
    return { text: `after tool: ${content.slice(0, 200)}` }
  }
  // The last marker counts: an interrupted turn's text is merged into the
  // next user message.
  const [, marker, arg] =
    [...text.matchAll(/(RUN-TOOL|WRITE-BIG|ASK-USER|HANG|MAX-TURNS|SAY)(?: (\S+))?/g)].at(-1) || []
  switch (marker) {
    case 'RUN-TOOL':
      return { tool: { name: 'Bash', input: { command: `touch ${arg}`, description: 'Create the marker file' } } }
    case 'WRITE-BIG':
      return { tool: { name: 'Write', input: { file_path: arg, content: `${'a'.repeat(99)}\n`.repeat(BIG / 100) } } }
    case 'ASK-USER':
      return {
        tool: {
          name: 'AskUserQuestion',
          input: {
            questions: [
              {
                question: 'Which file should I edit?',
                header: 'File',
                options: [
                  { label: 'main.rs', description: 'the entry point' },
                  { label: 'lib.rs', description: 'the library' },
                ],
                multiSelect: false,
              },
            ],
          },
        },
      }
    case 'HANG':
      return { hang: true }
    case 'MAX-TURNS':
      return { tool: { name: 'Bash', input: { command: 'true', description: 'Nothing' } } }
    case 'SAY':
      return { text: `said ${arg}` }
  }
  return { text: `heard ${text.length} characters` }
}

let api
let cli
beforeAll(async () => {
  cli = claudeCli()
  api = await startModelApi(reply)
})
afterAll(() => api.close())

const registries = []
afterEach(() => {
  for (const registry of registries.splice(0)) for (const id of registry.sessionIds()) registry.stop(id)
})

/** Starts the real CLI in a fresh session with a scratch HOME and working directory. */
async function claude(opts = {}, session = {}) {
  const store = session.store || SessionStore.inMemory()
  const sessionId = session.sessionId || (await store.createSession())
  const registry = new ProcessRegistry()
  registries.push(registry)
  const home = session.home || tmpDir()
  const seen = []
  const watchers = new Set()
  const run = await spawnClaude({
    store,
    registry,
    sessionId,
    claudePath: cli,
    cwd: home,
    env: {
      EREN_TEST_CHILD: '1',
      HOME: home,
      ANTHROPIC_API_KEY: 'sk-ant-test-dummy',
      ANTHROPIC_BASE_URL: api.url,
      DISABLE_AUTOUPDATER: '1',
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    },
    killGraceMs: 5000,
    // onMessage runs after the status its message produced is stored.
    onMessage: (m) => {
      const content = JSON.parse(m.content)
      seen.push(content)
      for (const watcher of watchers) watcher(content)
    },
    ...opts,
  })
  /** Resolves with the first content so far or later that matches `test`. */
  const until = (test) => {
    const found = seen.find(test)
    if (found) return Promise.resolve(found)
    const wait = deferred()
    const watcher = (content) => {
      if (test(content)) {
        watchers.delete(watcher)
        wait.resolve(content)
      }
    }
    watchers.add(watcher)
    return wait.promise
  }
  return { store, registry, sessionId, run, home, until }
}

const contents = async (store, id) => (await store.messages(id)).map((m) => JSON.parse(m.content))
const results = async (store, id) => (await contents(store, id)).filter((c) => c.type === 'result')

test(`the CLI under test is ${VERSION}`, () => {
  expect(fs.existsSync(cli)).toBe(true)
})

test('the control plane: initialization, permission modes (dontAsk and auto too), model, thinking, MCP status, a refusal', async () => {
  const { store, sessionId, run, until } = await claude({ prompt: 'SAY ready', conversation: true })
  await until((c) => c.type === 'result')
  const init = await run.initialization
  expect(Array.isArray(init.commands)).toBe(true)
  for (const mode of ['dontAsk', 'auto', 'plan', 'acceptEdits', 'default']) {
    await expect(run.setPermissionMode(mode)).resolves.toBeUndefined()
  }
  const refused = await run.setPermissionMode('reckless').catch((e) => e)
  expect(refused.code).toBe('INVALID_ARGUMENT')
  expect(refused.message).toContain('dontAsk')
  await expect(run.setModel('claude-sonnet-4-5')).resolves.toBeUndefined()
  await expect(run.setMaxThinkingTokens(1024)).resolves.toBeUndefined()
  expect(await run.mcpServerStatus()).toEqual([])
  const unknown = await run.control('no_such_thing').catch((e) => e)
  expect(unknown.message).toContain('no_such_thing')
  // The conversation goes on with the new settings.
  await run.send('SAY after')
  await until((c) => c.type === 'result' && c.result === 'said after')
  run.end()
  expect(await run.exited).toMatchObject({ exitCode: 0 })
  const stored = await contents(store, sessionId)
  const asked = stored.filter((c) => c.type === 'control_request' && c.request_id?.startsWith('eren-control-'))
  const answered = new Set(stored.filter((c) => c.type === 'control_response').map((c) => c.response.request_id))
  expect(asked.length).toBe(11)
  for (const request of asked) expect(answered.has(request.request_id)).toBe(true)
})

test('the options the Agent SDK passes at start reach the CLI: system prompt, MCP servers, agents and the rest', async () => {
  const extra = tmpDir()
  const { run, until } = await claude({
    prompt: 'SAY configured',
    conversation: true,
    systemPrompt: 'EREN-SYSTEM-MARK: answer briefly.',
    mcpServers: { 'eren-broken': { command: path.join(extra, 'no-such-server') } },
    agents: { reviewer: { description: 'Reviews code', prompt: 'You review code.' } },
    settingSources: [],
    additionalDirectories: [extra],
    fallbackModel: 'claude-sonnet-4-5',
    maxBudgetUsd: 5,
    maxThinkingTokens: 1024,
    effort: 'low',
  })
  await until((c) => c.type === 'result')
  const system = JSON.stringify(bodies.at(-1).system)
  expect(system).toContain('EREN-SYSTEM-MARK')
  const servers = await run.mcpServerStatus()
  expect(servers.map((server) => server.name)).toContain('eren-broken')
  run.end()
  expect(await run.exited).toMatchObject({ exitCode: 0 })
})

test('hooks: the CLI calls them by event and matcher; a PreToolUse deny stops the tool; a throwing hook is an error, not a crash', async () => {
  const marker = path.join(tmpDir(), 'hooked')
  const calls = []
  const { store, sessionId, run, until } = await claude({
    prompt: `RUN-TOOL ${marker}`,
    conversation: true,
    hooks: {
      UserPromptSubmit: [{ hooks: [async (input) => calls.push(['UserPromptSubmit', input.prompt])] }],
      PreToolUse: [
        {
          matcher: 'Bash',
          hooks: [
            (input, toolUseId) => {
              calls.push(['PreToolUse', input.tool_name, typeof toolUseId])
              return {
                hookSpecificOutput: {
                  hookEventName: 'PreToolUse',
                  permissionDecision: 'deny',
                  permissionDecisionReason: 'blocked by the host hook',
                },
              }
            },
          ],
        },
        { matcher: 'Write', hooks: [() => calls.push(['never'])] },
      ],
      Stop: [
        {
          hooks: [
            () => {
              calls.push(['Stop'])
              throw new Error('a hook that fails')
            },
          ],
        },
      ],
    },
  })
  await until((c) => c.type === 'result')
  expect(fs.existsSync(marker)).toBe(false)
  expect(calls).toContainEqual(['UserPromptSubmit', `RUN-TOOL ${marker}`])
  expect(calls).toContainEqual(['PreToolUse', 'Bash', 'string'])
  expect(calls).toContainEqual(['Stop'])
  expect(calls).not.toContainEqual(['never'])
  // The conversation goes on after the failed hook.
  await run.send('SAY again')
  await until((c) => c.type === 'result' && c.result === 'said again')
  run.end()
  expect(await run.exited).toMatchObject({ exitCode: 0 })
  const stored = await contents(store, sessionId)
  expect(
    stored.find((c) => c.type === 'control_request' && c.request?.subtype === 'initialize').request.hooks,
  ).toMatchObject({
    PreToolUse: [{ matcher: 'Bash', hookCallbackIds: [expect.any(String)] }, { matcher: 'Write' }],
  })
  const failed = stored.find((c) => c.type === 'control_response' && c.response?.error === 'a hook that fails')
  expect(failed).toBeDefined()
})

test('a two-turn conversation: each turn a result, claudeSessionId set, idle between turns', async () => {
  const { store, sessionId, run, until } = await claude({ prompt: 'SAY one', conversation: true })
  await until((c) => c.type === 'result')
  const first = await store.getSession(sessionId)
  expect(first.agentStatus).toBe('idle')
  expect(first.claudeSessionId).toMatch(/^[0-9a-f-]{36}$/)
  await run.send('SAY two')
  await until((c) => c.type === 'result' && c.result === 'said two')
  run.end()
  expect(await run.exited).toMatchObject({ exitCode: 0, stopped: false })
  expect((await results(store, sessionId)).map((r) => r.result)).toEqual(['said one', 'said two'])
  const session = await store.getSession(sessionId)
  expect(session.agentStatus).toBe('idle')
  expect(session.claudeSessionId).toBe(first.claudeSessionId)
})

test('a tool approved through canUseTool runs, and its effect happens', async () => {
  const marker = path.join(tmpDir(), 'approved')
  const requests = []
  const { store, sessionId, run } = await claude({
    prompt: `RUN-TOOL ${marker}`,
    canUseTool: (request) => {
      requests.push(request)
      return { behavior: 'allow' }
    },
  })
  await run.exited
  expect(requests.map((r) => [r.toolName, r.input.command])).toEqual([['Bash', `touch ${marker}`]])
  expect(fs.existsSync(marker)).toBe(true)
  const stored = await contents(store, sessionId)
  const response = stored.find((c) => c.type === 'control_response')
  expect(response.response.response).toEqual({ behavior: 'allow', updatedInput: requests[0].input })
  expect((await store.getSession(sessionId)).agentStatus).toBe('idle')
})

test('"always allow for the session": allowed once with a session rule for the tool, it asks nothing the second time', async () => {
  const dir = tmpDir()
  const first = path.join(dir, 'first')
  const second = path.join(dir, 'second')
  const requests = []
  const { run, until } = await claude({
    prompt: `RUN-TOOL ${first}`,
    conversation: true,
    canUseTool: (request) => {
      requests.push(request)
      const always = {
        type: 'addRules',
        rules: [{ toolName: request.toolName }],
        behavior: 'allow',
        destination: 'session',
      }
      return { behavior: 'allow', updatedPermissions: [always] }
    },
  })
  await until((c) => c.type === 'result')
  expect(fs.existsSync(first)).toBe(true)
  expect(requests).toHaveLength(1)
  expect(requests[0].blockedPath).toBe(first)
  await run.send(`RUN-TOOL ${second}`)
  await until((c) => c.type === 'result' && fs.existsSync(second))
  run.end()
  await run.exited
  expect(fs.existsSync(second)).toBe(true)
  expect(requests).toHaveLength(1)
})

test('a tool denied through canUseTool does not run, and the model hears why', async () => {
  const marker = path.join(tmpDir(), 'denied')
  const { store, sessionId, run } = await claude({
    prompt: `RUN-TOOL ${marker}`,
    canUseTool: () => ({ behavior: 'deny', message: 'not on this machine' }),
  })
  await run.exited
  expect(fs.existsSync(marker)).toBe(false)
  const toolResult = (await contents(store, sessionId)).find(
    (c) => c.type === 'user' && c.message.content[0]?.type === 'tool_result',
  )
  expect(JSON.stringify(toolResult.message.content[0].content)).toContain('not on this machine')
})

test('AskUserQuestion is answered through canUseTool with allow and updatedInput holding the answers', async () => {
  const asked = deferred()
  const answered = deferred()
  const { store, sessionId, run } = await claude({
    prompt: 'ASK-USER',
    canUseTool: async (request) => {
      asked.resolve(request)
      await answered.promise
      return {
        behavior: 'allow',
        updatedInput: { ...request.input, answers: { 'Which file should I edit?': 'lib.rs' } },
      }
    },
  })
  const request = await asked.promise
  expect(request.toolName).toBe('AskUserQuestion')
  expect((await store.getSession(sessionId)).agentStatus).toBe('waiting')
  answered.resolve()
  await run.exited
  const toolResult = (await contents(store, sessionId)).find(
    (c) => c.type === 'user' && c.message.content[0]?.type === 'tool_result',
  )
  expect(JSON.stringify(toolResult.message.content[0].content)).toContain('lib.rs')
  expect((await store.getSession(sessionId)).agentStatus).toBe('idle')
})

test('interrupt() ends the turn mid-request; the CLI stays for the next message', async () => {
  const hung = api.requests.length
  const { store, sessionId, run, until } = await claude({ prompt: 'HANG', conversation: true })
  // The model request is open: the turn is in progress.
  await api.untilRequests(hung)
  expect((await store.getSession(sessionId)).agentStatus).toBe('running')
  await run.interrupt()
  await until((c) => c.type === 'result')
  await run.send('SAY again')
  await until((c) => c.type === 'result' && c.result === 'said again')
  run.end()
  expect((await run.exited).stopped).toBe(false)
  const stored = await contents(store, sessionId)
  expect(stored.some((c) => c.type === 'control_request' && c.request.subtype === 'interrupt')).toBe(true)
})

test('a stop interrupts the CLI with SIGINT: its own closing result is stored, then not_available', async () => {
  const hung = api.requests.length
  const { store, registry, sessionId, run } = await claude({ prompt: 'HANG' })
  // The model request is open: the turn is in progress.
  await api.untilRequests(hung)
  registry.stop(sessionId)
  const result = await run.exited
  expect(result.stopped).toBe(true)
  expect(result.signal).toBeNull()
  const stored = await contents(store, sessionId)
  expect(stored.at(-1).type).toBe('result')
  expect((await store.getSession(sessionId)).agentStatus).toBe('not_available')
})

test('a tool result carrying a 1.6 MB file is stored whole', async () => {
  // Inside the working directory, where acceptEdits lets the CLI write.
  const home = tmpDir()
  const file = path.join(home, 'big.txt')
  const { store, sessionId, run } = await claude(
    { prompt: `WRITE-BIG ${file}`, permissionMode: 'acceptEdits' },
    { home },
  )
  await run.exited
  expect(fs.statSync(file).size).toBe(BIG)
  const messages = await store.messages(sessionId)
  const big = messages.filter((m) => m.content.length > BIG)
  expect(big.length).toBeGreaterThan(0)
  for (const m of big) expect(() => JSON.parse(m.content)).not.toThrow()
  const longest = Math.max(...messages.map((m) => m.content.length))
  expect(longest).toBeGreaterThan(1 << 20)
})

test.each([
  ['--version', '--version'],
  ['-x is a flag', '-x is a flag'],
  ['a 200 KB prompt', `${'long prompt '.repeat(17067)}`],
])('%s as the prompt reaches the model as user text', async (_label, prompt) => {
  const before = api.requests.length
  const { store, sessionId, run } = await claude({ prompt })
  expect((await run.exited).exitCode).toBe(0)
  const sent = api.requests.slice(before).map((r) => lastUserText(r.body))
  expect(sent.some((text) => text.includes(prompt))).toBe(true)
  const [result] = await results(store, sessionId)
  expect(result.is_error).toBe(false)
})

test('error_max_turns carries its text in errors, and errorMessage shows it', async () => {
  const { store, sessionId, run } = await claude({
    prompt: 'MAX-TURNS',
    maxTurns: 1,
    canUseTool: () => ({ behavior: 'allow' }),
  })
  await run.exited
  const [result] = await results(store, sessionId)
  expect(result.subtype).toBe('error_max_turns')
  const session = await store.getSession(sessionId)
  expect(session.agentStatus).toBe('error')
  expect(session.errorMessage).toMatch(/maximum number of turns/i)
  expect(session.errorMessage).not.toBe('error_max_turns')
})

test('resume keeps the claudeSessionId, and a fork changes it', async () => {
  const store = SessionStore.inMemory()
  const home = tmpDir()
  const first = await claude({ prompt: 'SAY first' }, { store, home })
  await first.run.exited
  const original = (await store.getSession(first.sessionId)).claudeSessionId
  const resumed = await claude({ prompt: 'SAY resumed', resumeSessionId: original }, { store, home })
  await resumed.run.exited
  expect((await store.getSession(resumed.sessionId)).claudeSessionId).toBe(original)
  const forked = await claude(
    { prompt: 'SAY forked', resumeSessionId: original, args: ['--fork-session'] },
    { store, home },
  )
  await forked.run.exited
  const forkedId = (await store.getSession(forked.sessionId)).claudeSessionId
  expect(forkedId).toMatch(/^[0-9a-f-]{36}$/)
  expect(forkedId).not.toBe(original)
})

test("the CLI's results add up to the session's usage, and its own transcript imports as a session once", async () => {
  const { store, sessionId, run, home, until } = await claude({ prompt: 'SAY one', conversation: true })
  await until((c) => c.type === 'result')
  await run.send('SAY two')
  await until((c) => c.type === 'result' && c.result === 'said two')
  run.end()
  await run.exited
  const stored = await results(store, sessionId)
  const session = await store.getSession(sessionId)
  expect(session.title).toBe('SAY one')
  expect(session.usage.turns).toBe(stored.reduce((sum, r) => sum + r.num_turns, 0))
  expect(session.usage.inputTokens).toBe(stored.reduce((sum, r) => sum + r.usage.input_tokens, 0))
  expect(session.usage.outputTokens).toBeGreaterThan(0)
  expect(session.usage.costUsd).toBeCloseTo(
    stored.reduce((sum, r) => sum + r.total_cost_usd, 0),
    10,
  )
  const imported = SessionStore.inMemory()
  const projectsDir = path.join(home, '.claude', 'projects')
  const summary = await imported.importClaudeSessions({ projectsDir })
  expect(summary).toMatchObject({ sessions: 1, malformed: 0 })
  const copy = await imported.getSession(session.claudeSessionId)
  expect(copy).toMatchObject({ title: 'SAY one', claudeSessionId: session.claudeSessionId, cwd: home })
  expect(copy.lastSequence).toBe(summary.messages)
  const lines = (await imported.messages(copy.id)).map((m) => JSON.parse(m.content))
  // The CLI's own lines, as it wrote them: the prompts as text blocks.
  const prompts = lines
    .filter((l) => l.type === 'user' && Array.isArray(l.message.content))
    .flatMap((l) => l.message.content.filter((b) => b.type === 'text').map((b) => b.text))
  expect(prompts).toEqual(['SAY one', 'SAY two'])
  expect(await imported.importClaudeSessions({ projectsDir })).toEqual({ sessions: 0, messages: 0, malformed: 0 })
})

test('the Agent SDK holds a conversation on the real CLI through sdkSpawner: a tool it approves, an interrupt, and all of it stored', async () => {
  const { agentSdk } = require('./fixtures/agent-sdk')
  const { spawn } = require('node:child_process')
  const db = path.join(tmpDir(), 'sdk.db')
  const home = tmpDir()
  const marker = path.join(home, 'approved-by-the-sdk')
  const setup = SessionStore.open(db)
  const sessionId = await setup.createSession()
  await setup.close()
  const host = spawn(
    process.execPath,
    [path.join(__dirname, 'fixtures', 'sdk-host.mjs'), db, sessionId, cli, home, marker],
    {
      env: { ...process.env, EREN_TEST_CHILD: '1', EREN_AGENT_SDK: agentSdk(), ANTHROPIC_BASE_URL: api.url },
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  )
  let err = ''
  host.stderr.on('data', (d) => (err += d))
  const reports = []
  const heard = []
  readline.createInterface({ input: host.stdout }).on('line', (line) => {
    reports.push(JSON.parse(line))
    for (const waiter of heard.splice(0)) waiter()
  })
  const until = (test) =>
    new Promise((resolve) => {
      const check = () => (reports.some(test) ? resolve() : heard.push(check))
      check()
    })
  const closed = new Promise((resolve) => host.on('close', resolve))
  // The first turn ran the tool; the second holds the model's request open.
  await until((r) => r.results === 1)
  const holdsHang = () =>
    api.requests.some((r) => {
      try {
        return lastUserText(r.body) === 'HANG'
      } catch {
        return false
      }
    })
  while (!holdsHang()) await api.untilRequests(api.requests.length)
  host.stdin.write('interrupt\n')
  expect({ code: await closed, err }).toEqual({ code: 0, err: '' })
  const report = reports.at(-1)
  expect(report.results).toEqual([expect.stringMatching(/^after tool/), expect.any(String), 'said done'])
  expect(report.asked).toEqual(['Bash'])
  expect(report.running).toEqual([])
  expect(fs.existsSync(marker)).toBe(true)
  const store = SessionStore.open(db)
  const session = await store.getSession(sessionId)
  expect(session).toMatchObject({ agentStatus: 'idle', title: `RUN-TOOL ${marker}` })
  expect(session.usage.turns).toBeGreaterThan(0)
  const stored = (await store.messages(sessionId)).map((m) => JSON.parse(m.content))
  const index = (test) => stored.findIndex(test)
  const asking = index((c) => c.type === 'control_request' && c.request?.subtype === 'can_use_tool')
  const allowed = index((c) => c.type === 'control_response' && c.response?.response?.behavior === 'allow')
  const interrupt = index((c) => c.type === 'control_request' && c.request?.subtype === 'interrupt')
  const last = index((c) => c.type === 'result' && c.result === 'said done')
  // The SDK's lines and the CLI's, in the order they crossed.
  expect(index((c) => c.type === 'control_request' && c.request?.subtype === 'initialize')).toBe(0)
  expect(asking).toBeGreaterThan(0)
  expect(allowed).toBeGreaterThan(asking)
  expect(interrupt).toBeGreaterThan(allowed)
  expect(last).toBeGreaterThan(interrupt)
  await store.close()
})
