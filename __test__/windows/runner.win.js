// The Windows suite: run by `npm run test:windows` with `node --test` inside
// the official node.exe under Wine (and on windows-latest in CI). Real
// processes, real job objects, a real SQLite file.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const { spawn, execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const m = require('../../index.js')
const { firstMessage, isStdout } = require('./first-message.js')

const fixtures = path.join(__dirname, 'fixtures')
const system32 = path.join(process.env.SystemRoot || 'C:\\windows', 'system32')

function tempDir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'eren-win-'))
}

async function openStore() {
  const store = m.SessionStore.open(path.join(tempDir(), 'sessions.db'))
  const registry = new m.ProcessRegistry()
  const sessionId = await store.createSession()
  return { store, registry, sessionId }
}

async function contents(store, sessionId) {
  return (await store.messages(sessionId)).map((message) => JSON.parse(message.content))
}

function isRunning(pid) {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    assert.equal(e.code, 'ESRCH')
    return false
  }
}

// A process that is killed ends a moment later: watched until it has.
async function gone(pid) {
  for (let i = 0; i < 200 && isRunning(pid); i++) await new Promise((r) => setTimeout(r, 50))
  return !isRunning(pid)
}

// A .cmd shim as npm writes them: node.exe and a script, with the shim's
// arguments passed on (%*).
function shim(dir, name, script) {
  fs.writeFileSync(path.join(dir, `${name}.cmd`), `@"${process.execPath}" "${script}" %*\r\n`)
  // npm also writes an extensionless sh script: never a program on Windows.
  fs.writeFileSync(path.join(dir, name), '#!/bin/sh\nexit 99\n')
}

test('the registry stops a registration through its AbortSignal and callbacks', () => {
  const registry = new m.ProcessRegistry()
  const handle = registry.register('build-1')
  let called = 0
  handle.onStop(() => called++)
  assert.equal(registry.stop('build-1'), true)
  assert.equal(handle.signal.aborted, true)
  assert.equal(registry.status('build-1'), 'not_running')
  return new Promise((resolve) => setImmediate(resolve)).then(() => assert.equal(called, 1))
})

test('the store keeps per-session sequences in a SQLite file', async () => {
  const { store, sessionId } = await openStore()
  const first = await m.terminalBridge.storeStdout(store, sessionId, 'one')
  const second = await m.terminalBridge.storeStderr(store, sessionId, 'two')
  assert.deepEqual([first.sequenceNumber, second.sequenceNumber], [1, 2])
  const other = await store.createSession()
  assert.equal((await m.terminalBridge.storeStdout(store, other, 'x')).sequenceNumber, 1)
  await store.close()
})

test('spawnTerminal stores stdout, stderr and the exit code of cmd /c', async () => {
  const { store, registry, sessionId } = await openStore()
  const run = await m.spawnTerminal({
    store,
    registry,
    sessionId,
    command: 'cmd',
    args: ['/c', 'echo out& echo err 1>&2& exit 3'],
  })
  assert.ok(run.pid > 0)
  const { durationMs, ...result } = await run.exited
  assert.deepEqual(result, { exitCode: 3, signal: null, stopped: false, timedOut: false })
  assert.ok(durationMs >= 0)
  const stored = await contents(store, sessionId)
  assert.deepEqual(
    stored.filter((c) => c.type === 'terminal_output').map((c) => [c.stream, c.content.trim()]),
    [
      ['stdout', 'out'],
      ['stderr', 'err'],
    ],
  )
  assert.deepEqual(stored.at(-1), { type: 'terminal_finished', exit_code: 3, signal: null, stopped: false })
  assert.equal(registry.isEmpty(), true)
})

test('stdin: pipe takes writes and end() closes it', async () => {
  const { store, registry, sessionId } = await openStore()
  const run = await m.spawnTerminal({
    store,
    registry,
    sessionId,
    command: process.execPath,
    args: ['-e', "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(s.toUpperCase()))"],
    stdin: 'pipe',
  })
  await run.write('hello ')
  await run.write(Buffer.from('windows'))
  run.end()
  assert.equal((await run.exited).exitCode, 0)
  const out = (await contents(store, sessionId)).filter((c) => c.stream === 'stdout').map((c) => c.content)
  assert.deepEqual(out, ['HELLO WINDOWS'])
})

test('a stop ends a cmd /c ping tree within the grace period', async () => {
  const { store, registry, sessionId } = await openStore()
  const started = firstMessage()
  const run = await m.spawnTerminal({
    store,
    registry,
    sessionId,
    command: 'cmd',
    args: ['/c', 'echo started& ping -n 30 127.0.0.1'],
    killGraceMs: 500,
    onMessage: started.onMessage,
  })
  await started.message
  assert.equal(registry.stop(sessionId), true)
  const result = await run.exited
  assert.equal(result.stopped, true)
  assert.equal(result.signal, null)
  assert.equal(await gone(run.pid), true)
  const finished = (await contents(store, sessionId)).at(-1)
  assert.equal(finished.type, 'terminal_finished')
  assert.equal(finished.stopped, true)
})

test('a stop ends a grandchild that left the process group: the job holds it', async () => {
  const { store, registry, sessionId } = await openStore()
  const printed = firstMessage(isStdout)
  const run = await m.spawnTerminal({
    store,
    registry,
    sessionId,
    command: process.execPath,
    args: [path.join(fixtures, 'spawn-detached.js')],
    killGraceMs: 300,
    onMessage: printed.onMessage,
  })
  const pid = Number((await printed.message).content)
  assert.equal(isRunning(pid), true)
  registry.stop(sessionId)
  assert.equal((await run.exited).stopped, true)
  assert.equal(await gone(pid), true)
})

test('what a program leaves running ends with it', async () => {
  const { store, registry, sessionId } = await openStore()
  const script =
    "const c=require('child_process').spawn(process.execPath,['-e','setTimeout(()=>{},60000)'],{detached:true,stdio:'ignore'});console.log(c.pid);c.unref()"
  const run = await m.spawnTerminal({ store, registry, sessionId, command: process.execPath, args: ['-e', script] })
  assert.equal((await run.exited).exitCode, 0)
  const [line] = (await contents(store, sessionId)).filter((c) => c.stream === 'stdout')
  assert.equal(await gone(Number(line.content)), true)
})

test('the whole tree ends when the host node.exe is killed (taskkill /F)', async () => {
  const dir = tempDir()
  const host = spawn(process.execPath, [path.join(fixtures, 'host.js'), path.join(dir, 'host.db')], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const said = await new Promise((resolve, reject) => {
    let out = ''
    host.stdout.on('data', (d) => {
      out += d
      if (out.includes('\n')) resolve(JSON.parse(out))
    })
    host.on('exit', (code) => reject(new Error(`the host exited first (${code})`)))
  })
  assert.equal(isRunning(said.program), true)
  assert.equal(isRunning(said.grandchild), true)
  const killed = new Promise((resolve) => host.on('exit', resolve))
  execFileSync(path.join(system32, 'taskkill.exe'), ['/F', '/PID', String(host.pid)], { stdio: 'ignore' })
  await killed
  assert.equal(await gone(said.program), true)
  assert.equal(await gone(said.grandchild), true)
})

test('a .cmd shim is found on PATH through PATHEXT and gets its arguments intact', async () => {
  const dir = tempDir()
  shim(dir, 'print-argv', path.join(fixtures, 'print-argv.js'))
  const { store, registry, sessionId } = await openStore()
  // No '%': std passes it as %%cd:~,% for cmd.exe to expand to nothing, which
  // Wine's cmd.exe cannot (real Windows can).
  const args = ['plain', 'with space', '"quoted"', 'a & echo injected', '^caret', '']
  const run = await m.spawnTerminal({
    store,
    registry,
    sessionId,
    command: 'print-argv',
    args,
    env: { PATH: `${dir};${system32}` },
  })
  assert.equal((await run.exited).exitCode, 0)
  const out = (await contents(store, sessionId)).filter((c) => c.stream === 'stdout').map((c) => c.content)
  assert.deepEqual(out, [JSON.stringify(args)])
})

test('an argument cmd.exe would misread is refused with INVALID_ARGUMENT, and nothing starts', async () => {
  const dir = tempDir()
  shim(dir, 'print-argv', path.join(fixtures, 'print-argv.js'))
  const { store, registry, sessionId } = await openStore()
  for (const bad of ['line\nbreak', 'carriage\rreturn']) {
    await assert.rejects(
      m.spawnTerminal({
        store,
        registry,
        sessionId,
        command: path.join(dir, 'print-argv.cmd'),
        args: [bad],
      }),
      (e) => e.code === 'INVALID_ARGUMENT',
    )
  }
  assert.deepEqual(await store.messages(sessionId), [])
  assert.equal(registry.isEmpty(), true)
})

test('a program that is not on PATH fails with SPAWN_FAILED and stores nothing', async () => {
  const { store, registry, sessionId } = await openStore()
  await assert.rejects(
    m.spawnTerminal({ store, registry, sessionId, command: 'no-such-program-here', env: { PATH: system32 } }),
    (e) => e.code === 'SPAWN_FAILED' && /PATHEXT/.test(e.message),
  )
  assert.deepEqual(await store.messages(sessionId), [])
})

test('spawnClaude runs a Claude CLI that npm installed as a .cmd shim', async () => {
  const dir = tempDir()
  shim(dir, 'claude', path.join(__dirname, '..', 'fixtures', 'fake-claude.js'))
  const { store, registry, sessionId } = await openStore()
  const run = await m.spawnClaude({
    store,
    registry,
    sessionId,
    prompt: 'hello from windows',
    env: { PATH: `${dir};${system32}` },
  })
  const result = await run.exited
  assert.equal(result.exitCode, 0)
  const stored = await contents(store, sessionId)
  const last = stored.filter((c) => c.type === 'result').at(-1)
  assert.equal(last.result, 'You said: hello from windows')
  assert.equal((await store.getSession(sessionId)).claudeSessionId, 'fake-claude-session-1')
})

test('a stop of a Claude run sends the CLI its interrupt request, and the CLI ends by itself', {
  timeout: 60000,
}, async () => {
  const dir = tempDir()
  shim(dir, 'claude', path.join(__dirname, '..', 'fixtures', 'fake-claude.js'))
  const { store, registry, sessionId } = await openStore()
  const working = firstMessage((content) => JSON.stringify(content).includes('"working"'))
  const run = await m.spawnClaude({
    store,
    registry,
    sessionId,
    prompt: 'hang',
    conversation: true,
    env: { PATH: `${dir};${system32}` },
    // Far longer than the test: only the interrupt request can end it early
    // with exit code 0 (the job's end gives 1).
    killGraceMs: 600000,
    onMessage: working.onMessage,
  })
  await working.message
  assert.equal(registry.stop(sessionId), true)
  const { durationMs, ...result } = await run.exited
  assert.deepEqual(result, { exitCode: 0, signal: null, stopped: true, timedOut: false })
  const stored = await contents(store, sessionId)
  assert.ok(stored.some((c) => c.type === 'user' && JSON.stringify(c).includes('[Request interrupted by user]')))
})

test("stdio: 'merged' stores stdout and stderr through one pipe, in the order written", async () => {
  const { store, registry, sessionId } = await openStore()
  const run = await m.spawnTerminal({
    store,
    registry,
    sessionId,
    command: 'cmd',
    args: ['/c', 'echo one& echo two 1>&2& echo three& echo four 1>&2'],
    stdio: 'merged',
  })
  assert.equal((await run.exited).exitCode, 0)
  const lines = (await contents(store, sessionId)).filter((c) => c.type === 'terminal_output')
  assert.deepEqual(
    lines.map((c) => [c.stream, c.content.trim()]),
    ['one', 'two', 'three', 'four'].map((word) => ['merged', word]),
  )
})

test('timeout and kill() end a run through its job: timedOut for the one, a stop for the other', async () => {
  const { store, registry, sessionId } = await openStore()
  const timed = await m.spawnTerminal({
    store,
    registry,
    sessionId,
    command: process.execPath,
    args: ['-e', 'setTimeout(() => {}, 600000)'],
    timeout: 300,
    killGraceMs: 200,
  })
  const result = await timed.exited
  assert.equal(result.timedOut, true)
  assert.equal(result.stopped, true)
  assert.equal((await contents(store, sessionId)).at(-1).timed_out, true)
  const killed = await m.spawnTerminal({
    store,
    registry,
    sessionId,
    command: process.execPath,
    args: ['-e', 'setTimeout(() => {}, 600000)'],
    killGraceMs: 200,
  })
  assert.throws(() => killed.kill('SIGNOPE'), { code: 'INVALID_ARGUMENT' })
  killed.kill('SIGKILL')
  const ended = await killed.exited
  assert.equal(ended.stopped, true)
  assert.equal(ended.timedOut, false)
  assert.equal(isRunning(killed.pid), false)
})

test('loginShellPath() is the process PATH on Windows', async () => {
  assert.equal(await m.loginShellPath(), process.env.PATH)
})
