// Type-checked by `.ci/run` with `tsc --strict` (never run): it uses every
// export of index.d.ts the way a TypeScript host would, so a change to the
// generated types that breaks a host fails CI.
import {
  __napiBindingTarget,
  AgentStatus,
  type ClaudeOptions,
  type ClaudeRun,
  claudeBridge,
  type ErrorCode,
  type ImportSummary,
  MAX_LINE_BYTES,
  type Message,
  messageKinds,
  ProcessRegistry,
  ProcessStatus,
  type Run,
  type RunResult,
  redactDatabaseUrl,
  type SdkSpawnedProcess,
  type SearchHit,
  type Session,
  type SessionChange,
  type SessionPage,
  SessionStore,
  type StopHandle,
  sdkSpawner,
  spawnClaude,
  spawnTerminal,
  type TerminalOptions,
  type TerminalRun,
  type ToolDecision,
  type ToolRequest,
  terminalBridge,
  type Usage,
} from '../../index'
import { contentBlocks, KINDS, type MessageContent, parseMessage, renderText, sessionKind } from '../../messages'

const target: 'native' | 'wasm32-wasi' | 'wasm32-wasip1' = __napiBindingTarget

async function host(): Promise<void> {
  const registry = new ProcessRegistry()
  const handle: StopHandle = registry.register('build')
  const signal: AbortSignal = handle.signal
  const id: string = handle.sessionId
  const stopped: boolean = handle.stopped
  const unsubscribe: () => void = handle.onStop((sessionId: string) => console.log(sessionId))
  unsubscribe()
  registry.onStop('build', (sessionId) => console.log(sessionId))()
  const status: ProcessStatus = registry.status('build')
  const running: boolean = status === ProcessStatus.Running || status === ProcessStatus.NotRunning
  const counts: [number, boolean, string[], boolean, boolean] = [
    registry.count(),
    registry.isEmpty(),
    registry.sessionIds(),
    registry.stop('build'),
    registry.remove('build'),
  ]

  const store: SessionStore = SessionStore.open('/tmp/eren-types.db', { durability: 'normal' })
  const memory: SessionStore = SessionStore.inMemory()
  const shared: SessionStore = await SessionStore.connect('postgres://agents@127.0.0.1/agents')
  const sessionId: string = await store.createSession()
  await store.createSession('named')
  const session: Session | null = await store.getSession(sessionId)
  const agent: AgentStatus | undefined = session?.agentStatus
  const idle: boolean = agent === AgentStatus.Idle || agent === AgentStatus.NotAvailable
  const nullable: [string | null, string | null, boolean, number, number] = session
    ? [session.claudeSessionId, session.errorMessage, session.closed, session.createdAt, session.lastSequence]
    : [null, null, false, 0, 0]
  const all: Session[] = await store.listSessions()
  const filtered: Session[] = await store.listSessions({ tag: 'x', archived: false, orderBy: 'updatedAt', limit: 10 })
  const page: SessionPage = await store.pageSessions({ limit: 10, cursor: undefined })
  const next: string | null = page.nextCursor
  const usage: Usage = await store.usageSummary({ from: 0 })
  const cost: number = (session?.usage.costUsd ?? 0) + usage.costUsd
  const described: [string | null, string[], boolean, number | null] = session
    ? [session.title, session.tags, session.archived, session.forkedAtSequence]
    : [null, [], false, null]
  await store.setTitle(sessionId, 'named')
  await store.setTitle(sessionId, null)
  await store.addTag(sessionId, 't')
  await store.removeTag(sessionId, 't')
  await store.archive(sessionId)
  await store.unarchive(sessionId)
  const hits: SearchHit[] = await store.search('words', { sessionId, limit: 5 })
  const snippet: string | undefined = hits[0]?.snippet
  const forked: string = await store.forkSession(sessionId, { atSequence: 1, newSessionId: 'f' })
  const imported: ImportSummary = await store.importClaudeSessions({ projectsDir: '/tmp', since: 0 })
  const stopWatching: () => void = store.onSessionsChanged((change: SessionChange) => change.kind)
  stopWatching()
  const spawnProcess = sdkSpawner({ store, registry: new ProcessRegistry(), sessionId, killGraceMs: 1000 })
  const child: SdkSpawnedProcess = spawnProcess({ command: 'claude', args: [], env: { HOME: undefined } })
  child.once('exit', (code: number | null, signal: string | null) => [code, signal])
  child.stdin.write('{}\n')
  const killed: boolean = child.kill('SIGTERM') && child.killed
  void [filtered, next, cost, described, snippet, forked, imported.malformed, killed]
  const messages: Message[] = await store.messages(sessionId, { afterSequence: 0, limit: 10 })
  const first: Message | undefined = messages[0]
  const fields: [number, string, number, string, number] | undefined = first && [
    first.id,
    first.sessionId,
    first.sequenceNumber,
    first.content,
    first.createdAt,
  ]
  const stopFollowing: () => void = store.subscribe(sessionId, (m: Message) => m.content, { afterSequence: 0 })
  stopFollowing()

  const event: Message = await claudeBridge.storeEvent(store, sessionId, '{"type":"system"}')
  const updated: boolean = await claudeBridge.updateClaudeSessionId(store, sessionId, 'claude-1')
  await claudeBridge.setRunning(store, sessionId)
  await claudeBridge.setIdle(store, sessionId)
  const lines: Message[] = await Promise.all([
    terminalBridge.storeStdout(store, sessionId, 'out'),
    terminalBridge.storeStderr(store, sessionId, 'err'),
    terminalBridge.storeFinished(store, sessionId, null),
  ])

  const run: TerminalRun = await spawnTerminal({
    store,
    registry,
    sessionId,
    command: 'echo',
    args: ['hi'],
    cwd: '/tmp',
    env: { A: 'b' },
    killGraceMs: 100,
    stdin: 'pipe',
    onMessage: (m) => m.sequenceNumber,
  })
  await run.write('input\n')
  await run.write(new Uint8Array([10]))
  run.end()
  const result: RunResult = await run.exited
  const how: [number | null, string | null, boolean, number] = [result.exitCode, result.signal, result.stopped, run.pid]
  const timing: [boolean, number] = [result.timedOut, result.durationMs]
  const controller = new AbortController()
  const pane: TerminalRun = await spawnTerminal({
    store,
    registry,
    sessionId,
    command: 'sh',
    timeout: 5000,
    signal: controller.signal,
    stdio: 'merged',
    pty: { cols: 80, rows: 24 },
  })
  const untap: () => void = pane.onData((chunk: Buffer, stream: 'stdout' | 'stderr' | 'pty' | 'merged') =>
    console.log(chunk.length, stream),
  )
  pane.pause()
  pane.resume()
  pane.kill('SIGTERM')
  pane.kill()
  const screen: [string | null, number | undefined, number | undefined] = [pane.process, pane.cols, pane.rows]
  untap()
  console.log(timing, screen)
  const decide = async (request: ToolRequest): Promise<ToolDecision> => {
    const facts: [string, string, Record<string, unknown>, string | null, unknown[], boolean] = [
      request.requestId,
      request.toolName,
      request.input,
      request.toolUseId,
      request.suggestions,
      request.signal.aborted,
    ]
    console.log(facts)
    return request.toolName === 'Bash'
      ? { behavior: 'deny', message: 'no shell', interrupt: false }
      : { behavior: 'allow', updatedInput: request.input }
  }
  const options: ClaudeOptions = {
    store,
    registry,
    sessionId,
    prompt: 'hello',
    conversation: true,
    cwd: '/tmp',
    resumeSessionId: 'earlier',
    claudePath: 'claude',
    model: 'opus',
    permissionMode: 'acceptEdits',
    allowedTools: ['Read'],
    disallowedTools: ['WebFetch'],
    maxTurns: 3,
    appendSystemPrompt: 'be brief',
    includePartialMessages: true,
    args: ['--fork-session'],
    env: { A: 'b' },
    clearEnv: false,
    killGraceMs: 1000,
    canUseTool: decide,
    onMessage: (m) => m.content,
  }
  const claude: ClaudeRun = await spawnClaude(options)
  const reply: Message = await claude.send('and then?')
  await claude.interrupt()
  claude.end()
  const asRun: Run = claude
  console.log(reply, asRun.pid)
  await claude.exited

  await store.closeSession(sessionId)
  const deleted: boolean = await store.deleteSession(sessionId)
  await store.close()
  await memory.close()
  await shared.close()
  console.log(
    target,
    signal,
    id,
    stopped,
    running,
    counts,
    idle,
    nullable,
    all,
    fields,
    event,
    updated,
    lines,
    how,
    deleted,
  )
}

void host

/** Narrows a caught error to the package's codes. */
function codeOf(error: unknown): ErrorCode | undefined {
  const code = (error as { code?: unknown }).code
  const codes: ErrorCode[] = [
    'ALREADY_RUNNING',
    'NOT_RUNNING',
    'SESSION_NOT_FOUND',
    'SESSION_EXISTS',
    'SESSION_CLOSED',
    'STORE_CLOSED',
    'INVALID_ARGUMENT',
    'INVALID_JSON',
    'SPAWN_FAILED',
    'STORAGE_ERROR',
    'INTERNAL',
  ]
  return codes.find((known) => known === code)
}
void codeOf

/** Reads a stored message through the one parser, narrowing by `type`. */
function describe(message: Message): string {
  const content: MessageContent = parseMessage(message)
  switch (content.type) {
    case 'terminal_output':
      return `${content.stream}: ${content.content}`
    case 'terminal_finished':
      return `exit ${content.exit_code ?? content.signal ?? 'none'}${content.stopped ? ' (stopped)' : ''}`
    case 'claude_output_truncated':
      return `${content.bytes} bytes: ${content.head}`
    case 'assistant':
      return contentBlocks(content)
        .map((block) => (block.type === 'text' ? block.text : block.type))
        .join(' ')
    case 'unparsed':
      return content.text
    default:
      return renderText(content, { maxLineBytes: MAX_LINE_BYTES })?.text ?? ''
  }
}
const kinds: string[] = messageKinds().filter((kind) => KINDS.includes(kind))
const shownAs: 'pty' | 'lines' | 'claude' | null = sessionKind([])
void describe
void kinds
void shownAs

/** A database location for a log line: never its password. */
const shownDatabase: string = redactDatabaseUrl('postgres://agents:secret@db/agents')
const terminalOptions: Partial<TerminalOptions> = { command: 'ls', stdin: 'pipe', pty: { cols: 80, rows: 24 } }
void shownDatabase
void terminalOptions
