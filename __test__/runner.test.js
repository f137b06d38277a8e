'use strict'
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { execFile, execFileSync, spawn } = require('node:child_process')
const { Worker } = require('node:worker_threads')
const { ProcessRegistry, SessionStore, spawnTerminal, terminalBridge } = require('..')
const {
  codeOf,
  deferred,
  isGone,
  runNode,
  SETSID,
  screenWatcher,
  settleGone,
  tempDirs,
  withGuardian,
  withPidfds,
} = require('./helpers')

// Every process a test starts carries this variable, inherited by its own
// children; .ci/run fails if one survives the suite.
const MARK = { EREN_TEST_CHILD: '1' }

const tmpDir = tempDirs('eren-runner-')

/** Starts a terminal run in the test's session; every run carries MARK. */
const terminal = (ctx, opts) =>
  spawnTerminal({ store: ctx.store, registry: ctx.registry, sessionId: ctx.sessionId, env: MARK, ...opts })

async function setup(sessionId = 's') {
  const store = SessionStore.inMemory()
  await store.createSession(sessionId)
  return { store, registry: new ProcessRegistry(), sessionId }
}

const parsed = async (store, id) => (await store.messages(id)).map((m) => JSON.parse(m.content))

/** Runs a host process (carrying MARK) and resolves with the JSON it prints. */
function reportOf(argv, cwd) {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), {
      cwd,
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, ...MARK },
    })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.on('error', reject)
    child.on('close', () => resolve(JSON.parse(out)))
  })
}

/** Checks a starved host's report: each run whole or SPAWN_FAILED with nothing stored, both seen. */
function expectWholeOrRefused(report) {
  const whole = { result: { exitCode: 0, signal: null, stopped: false }, lines: ['one', 'two'] }
  const refused = { code: 'SPAWN_FAILED', stored: 0 }
  for (const outcome of report.outcomes) expect([whole, refused]).toContainEqual(outcome)
  // The limit did bite, and runs still went through.
  expect(report.outcomes).toContainEqual(refused)
  expect(report.outcomes).toContainEqual(whole)
  expect(report.zombies).toEqual([])
  expect(report.registered).toBe(0)
}

/** An onMessage callback and a promise for the first message matching `test`. */
function watchFor(test) {
  const seen = []
  const found = deferred()
  const onMessage = (m) => {
    seen.push(m)
    if (test(JSON.parse(m.content))) found.resolve(m)
  }
  return { seen, found: found.promise, onMessage }
}

describe('spawnTerminal', () => {
  test('stores stdout and stderr lines, then terminal_finished with the exit code, and releases the registration', async () => {
    const ctx = await setup()
    const { store, registry, sessionId } = ctx
    const run = await terminal(ctx, {
      command: 'sh',
      args: ['-c', 'echo build started; echo "warning: x" >&2; echo done; exit 7'],
    })
    expect(run.sessionId).toBe(sessionId)
    expect(run.pid).toBeGreaterThan(0)
    const result = await run.exited
    expect(result).toMatchObject({ exitCode: 7, signal: null, stopped: false, timedOut: false })
    expect(registry.status(sessionId)).toBe('not_running')

    const stored = await parsed(store, sessionId)
    expect(stored.at(-1)).toEqual({ type: 'terminal_finished', exit_code: 7, signal: null, stopped: false })
    const lines = stored.slice(0, -1)
    expect(lines.filter((l) => l.stream === 'stdout').map((l) => l.content)).toEqual(['build started', 'done'])
    expect(lines.filter((l) => l.stream === 'stderr').map((l) => l.content)).toEqual(['warning: x'])
    for (const l of lines) expect(l.type).toBe('terminal_output')
  })

  test('onMessage is called once per stored message, after its commit, in sequence order', async () => {
    const ctx = await setup()
    const { store, sessionId } = ctx
    const finished = watchFor((c) => c.type === 'terminal_finished')
    const run = await terminal(ctx, {
      command: 'seq',
      args: ['1', '500'],
      onMessage: finished.onMessage,
    })
    await run.exited
    await finished.found
    const stored = await store.messages(sessionId)
    expect(stored).toHaveLength(501)
    expect(finished.seen).toEqual(stored)
  })

  test('args, cwd and env reach the child, env on top of the host environment', async () => {
    const ctx = await setup()
    const { store, sessionId } = ctx
    const cwd = tmpDir()
    const run = await terminal(ctx, {
      command: 'sh',
      args: ['-c', 'pwd; echo "$EXTRA"; test -n "$PATH" && echo has-path', 'arg0'],
      cwd,
      env: { ...MARK, EXTRA: 'from opts' },
    })
    await run.exited
    const lines = (await parsed(store, sessionId)).slice(0, -1).map((l) => l.content)
    expect(lines).toEqual([fs.realpathSync(cwd), 'from opts', 'has-path'])
  })

  test('the child runs without a shell, in its own process group, with stdin closed', async () => {
    const ctx = await setup()
    const { store, sessionId } = ctx
    const run = await terminal(ctx, {
      command: 'sh',
      // `cat` ends at once on a closed stdin; field 5 of /proc/<pid>/stat is the group.
      args: ['-c', 'cat; echo "group $(cut -d" " -f5 /proc/$$/stat)"', 'x', '$HOME; not expanded'],
    })
    await run.exited
    const lines = (await parsed(store, sessionId)).slice(0, -1).map((l) => l.content)
    expect(lines).toEqual([`group ${run.pid}`])
    const echo = await terminal(ctx, { command: 'echo', args: ['$HOME', '*', '|'] })
    await echo.exited
    expect((await parsed(store, sessionId)).at(-2).content).toBe('$HOME * |')
  })

  test('invalid UTF-8 becomes U+FFFD, CRLF ends a line, and a final line without newline is kept', async () => {
    const ctx = await setup()
    const { store, sessionId } = ctx
    const run = await terminal(ctx, {
      command: 'printf',
      args: ['ok \\377\\376 bytes\\r\\nsecond\\nno newline at end'],
    })
    await run.exited
    const lines = (await parsed(store, sessionId)).slice(0, -1).map((l) => l.content)
    expect(lines).toEqual(['ok \uFFFD\uFFFD bytes', 'second', 'no newline at end'])
  })

  test('stdout and stderr are drained concurrently: a flood on stderr never stalls the child', async () => {
    const ctx = await setup()
    const { store, sessionId } = ctx
    const run = await terminal(ctx, {
      command: 'sh',
      // 20,000 stderr lines (far more than a pipe holds) before one stdout line.
      args: ['-c', 'seq 1 20000 >&2; echo stdout after the flood'],
    })
    expect((await run.exited).exitCode).toBe(0)
    const lines = (await parsed(store, sessionId)).slice(0, -1)
    expect(lines.filter((l) => l.stream === 'stderr')).toHaveLength(20000)
    expect(lines.filter((l) => l.stream === 'stdout').map((l) => l.content)).toEqual(['stdout after the flood'])
  })

  test('a line over 1 MiB is split', async () => {
    const ctx = await setup()
    const { store, sessionId } = ctx
    const run = await terminal(ctx, {
      command: 'sh',
      args: ['-c', 'head -c 2500000 /dev/zero | tr "\\0" x; echo'],
    })
    await run.exited
    const lines = (await parsed(store, sessionId)).slice(0, -1).map((l) => l.content.length)
    expect(lines).toEqual([1048576, 1048576, 2500000 - 2 * 1048576])
  })

  test('200,000 lines are stored with contiguous sequences', async () => {
    const ctx = await setup()
    const { store, sessionId } = ctx
    const run = await terminal(ctx, { command: 'seq', args: ['1', '200000'] })
    expect((await run.exited).exitCode).toBe(0)
    const stored = await store.messages(sessionId)
    expect(stored).toHaveLength(200001)
    for (let i = 0; i < 200000; i++) {
      if (stored[i].sequenceNumber !== i + 1 || JSON.parse(stored[i].content).content !== String(i + 1)) {
        throw new Error(`message ${i} is ${stored[i].sequenceNumber}: ${stored[i].content}`)
      }
    }
    expect((await store.getSession(sessionId)).lastSequence).toBe(200001)
  })

  test('registry.stop sends SIGTERM to the group and the run ends stopped', async () => {
    const ctx = await setup()
    const { store, registry, sessionId } = ctx
    const ready = watchFor((c) => c.content === 'ready')
    const run = await terminal(ctx, {
      command: 'sh',
      args: ['-c', 'echo ready; exec sleep 60'],
      onMessage: ready.onMessage,
    })
    await ready.found
    expect(registry.status(sessionId)).toBe('running')
    const stopHeard = new Promise((resolve) => registry.onStop(sessionId, resolve))
    expect(registry.stop(sessionId)).toBe(true)
    expect(await stopHeard).toBe(sessionId)
    const result = await run.exited
    expect(result).toMatchObject({ exitCode: null, signal: 'SIGTERM', stopped: true, timedOut: false })
    expect((await parsed(store, sessionId)).at(-1)).toEqual({
      type: 'terminal_finished',
      exit_code: null,
      signal: 'SIGTERM',
      stopped: true,
    })
    expect(await settleGone(run.pid)).toBe(true)
  })

  test('a child that ignores SIGTERM is SIGKILLed after killGraceMs', async () => {
    const ctx = await setup()
    const { registry, sessionId } = ctx
    const ready = watchFor((c) => c.content === 'ready')
    const run = await terminal(ctx, {
      command: 'sh',
      args: ['-c', "trap '' TERM; echo ready; while :; do sleep 1; done"],
      killGraceMs: 200,
      onMessage: ready.onMessage,
    })
    await ready.found
    registry.stop(sessionId)
    const result = await run.exited
    expect(result).toMatchObject({ exitCode: null, signal: 'SIGKILL', stopped: true, timedOut: false })
  })

  test('grandchildren are dead after stop, those that called setsid or double-forked too', async () => {
    const ctx = await setup()
    const { registry, sessionId } = ctx
    const pids = []
    const bothPrinted = deferred()
    const run = await terminal(ctx, {
      command: 'sh',
      // The grandchildren ignore SIGTERM, so only the SIGKILL after the grace
      // ends them: one left the group (setsid), one its parent (double fork).
      args: ['-c', `${SETSID} sh -c "trap '' TERM; sleep 60" & echo $!; (trap '' TERM; sleep 60 & echo $!); wait`],
      killGraceMs: 300,
      onMessage: (m) => {
        pids.push(Number(JSON.parse(m.content).content))
        if (pids.length === 2) bothPrinted.resolve()
      },
    })
    await bothPrinted.promise
    for (const pid of pids) expect(isGone(pid)).toBe(false)
    registry.stop(sessionId)
    await run.exited
    for (const pid of pids) expect(await settleGone(pid)).toBe(true)
  })

  withGuardian('background processes left by a command that exits are killed with it, setsid ones too', async () => {
    const ctx = await setup()
    const { store, sessionId } = ctx
    const run = await terminal(ctx, {
      command: 'sh',
      args: ['-c', `sleep 60 & echo $!; ${SETSID} sleep 61 & echo $!; (sleep 62 & echo $!)`],
    })
    const result = await run.exited
    expect(result.exitCode).toBe(0)
    const pids = (await parsed(store, sessionId))
      .filter((m) => m.type === 'terminal_output')
      .map((m) => Number(m.content))
    expect(pids).toHaveLength(3)
    // The run ends once they are gone: the guardian kills (and on Linux, as
    // their subreaper, reaps) them first; on macOS launchd reaps them.
    for (const pid of pids) expect(process.platform === 'linux' ? isGone(pid) : await settleGone(pid)).toBe(true)
  })

  // The tree ignores SIGTERM, so it ends only by the SIGKILL after the
  // grace (500 ms); the contract allows killGraceMs plus one second.
  withGuardian.each([
    ['SIGKILL', 'wait'],
    ['the default SIGTERM', 'wait'],
    ['process.exit()', 'exit'],
    ['an uncaught exception', 'throw'],
  ])('the whole tree of a run, setsid and double-fork included, dies with a host ended by %s', async (how, ending) => {
    const db = path.join(tmpDir(), 'host.db')
    const host = spawn(process.execPath, [path.join(__dirname, 'fixtures', 'host-with-tree.js'), db, ending], {
      stdio: ['ignore', 'pipe', 'ignore'],
      env: { ...process.env, ...MARK },
    })
    const hostGone = new Promise((resolve) => host.on('exit', resolve))
    const pids = await new Promise((resolve) => host.stdout.once('data', (d) => resolve(JSON.parse(String(d)))))
    expect(pids).toHaveLength(3)
    if (how === 'SIGKILL') host.kill('SIGKILL')
    if (how === 'the default SIGTERM') host.kill('SIGTERM')
    await hostGone
    for (const pid of pids) expect(await settleGone(pid, 1500 + 500)).toBe(true)
  })

  test('under a low process limit every run either finishes whole or rejects with SPAWN_FAILED, and leaves no zombie', async () => {
    // RLIMIT_NPROC counts the threads and processes of all of a user's
    // processes, and is not enforced for root: as root the host runs as
    // nobody, from a copy of the addon that nobody can read. A run costs the
    // host no thread, but two processes (its guardian and its program), so
    // 40 overlapping runs need more than the limit leaves.
    const dir = tmpDir()
    fs.chmodSync(dir, 0o755)
    const root = path.join(__dirname, '..')
    const addon = fs.readdirSync(root).filter((f) => f.endsWith('.node'))
    for (const file of ['index.js', 'package.json', 'eren-machines-guardian', ...addon]) {
      fs.copyFileSync(path.join(root, file), path.join(dir, file))
    }
    fs.copyFileSync(path.join(__dirname, 'fixtures', 'starved-host.js'), path.join(dir, 'host.js'))
    const host = [process.execPath, path.join(dir, 'host.js'), dir, '40']
    const limited = ['prlimit', '--nproc=60', ...host]
    const asNobody = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', '--', ...limited]
    const argv = process.getuid() === 0 ? asNobody : limited
    const report = await reportOf(argv, dir)
    expectWholeOrRefused(report)
  })

  test('under a low descriptor limit every run either finishes whole or rejects with SPAWN_FAILED, and leaves no zombie', async () => {
    // A run holds its output pipes and a pidfd while it lives, and a few
    // more descriptors while it starts: 40 overlapping runs need more than
    // the limit leaves once Node has its own.
    const host = [
      process.execPath,
      path.join(__dirname, 'fixtures', 'starved-host.js'),
      path.join(__dirname, '..'),
      '40',
    ]
    expectWholeOrRefused(await reportOf(['prlimit', '--nofile=80', ...host]))
  })

  withPidfds(
    'runs share the runner threads: 300 at once, over pipes, stdin pipes and terminals, add no thread to the host',
    async () => {
      const report = await reportOf([process.execPath, path.join(__dirname, 'fixtures', 'many-runs-host.js'), '300'])
      expect(report.many).toBe(report.one)
      // The store's writer and reader, the spawner, the reactor, and napi's
      // runtime: a handful, whatever the number of runs.
      expect(report.one - report.before).toBeLessThanOrEqual(8)
      expect(report.stopped).toBe(300)
    },
  )

  test('a command that cannot start rejects with SPAWN_FAILED and leaves no registration', async () => {
    const ctx = await setup()
    const { store, registry, sessionId } = ctx
    let error
    try {
      await spawnTerminal({ store, registry, sessionId, command: '/no/such/command', env: MARK })
    } catch (e) {
      error = e
    }
    expect(error.code).toBe('SPAWN_FAILED')
    expect(error.message).toContain(sessionId)
    expect(registry.count()).toBe(0)
    const cwdMissing = await codeOf(() =>
      spawnTerminal({ store, registry, sessionId, command: 'true', cwd: '/no/such/dir', env: MARK }),
    )
    expect(cwdMissing).toBe('SPAWN_FAILED')
    expect(registry.count()).toBe(0)
    expect((await store.getSession(sessionId)).lastSequence).toBe(0)
  })

  test('an already running session rejects with ALREADY_RUNNING and spawns nothing', async () => {
    const ctx = await setup()
    const { store, registry, sessionId } = ctx
    const handle = registry.register(sessionId)
    const marker = path.join(tmpDir(), 'spawned')
    expect(
      await codeOf(() => spawnTerminal({ store, registry, sessionId, command: 'touch', args: [marker], env: MARK })),
    ).toBe('ALREADY_RUNNING')
    expect(fs.existsSync(marker)).toBe(false)
    expect(handle.stopped).toBe(false)
    expect(registry.status(sessionId)).toBe('running')
  })

  test('an unknown session rejects with SESSION_NOT_FOUND and a closed one with SESSION_CLOSED', async () => {
    const ctx = await setup()
    const { store, registry, sessionId } = ctx
    expect(await codeOf(() => spawnTerminal({ store, registry, sessionId: 'nope', command: 'true' }))).toBe(
      'SESSION_NOT_FOUND',
    )
    await store.closeSession(sessionId)
    expect(await codeOf(() => spawnTerminal({ store, registry, sessionId, command: 'true' }))).toBe('SESSION_CLOSED')
    expect(registry.count()).toBe(0)
  })

  test('SPAWN_FAILED names the PATH searched for a missing command, and a missing cwd as such', async () => {
    const ctx = await setup()
    const notFound = await terminal(ctx, { command: 'no-such-tool', env: { ...MARK, PATH: '/a/bin:/b/bin' } }).catch(
      (e) => e,
    )
    expect(notFound.code).toBe('SPAWN_FAILED')
    expect(notFound.message).toContain("'no-such-tool' was not found on PATH (/a/bin:/b/bin)")
    const noCwd = await terminal(ctx, { command: 'true', cwd: '/no/such/dir' }).catch((e) => e)
    expect(noCwd.code).toBe('SPAWN_FAILED')
    expect(noCwd.message).toContain('the working directory /no/such/dir does not exist')
    expect(ctx.registry.count()).toBe(0)
  })

  test('clearEnv starts the command from an empty environment plus env', async () => {
    const ctx = await setup()
    const run = await terminal(ctx, { command: '/usr/bin/env', clearEnv: true, env: { ...MARK, ONLY: 'this' } })
    await run.exited
    const lines = (await parsed(ctx.store, ctx.sessionId))
      .filter((c) => c.type === 'terminal_output')
      .map((c) => c.content)
    expect(lines.sort()).toEqual(['EREN_TEST_CHILD=1', 'ONLY=this'])
  })

  test('deleting, closing the session or closing the store stops the run; a deleted session run never writes into its successor', async () => {
    for (const end of ['delete', 'closeSession', 'close']) {
      const ctx = await setup()
      const ready = watchFor((c) => c.content === 'ready')
      const run = await terminal(ctx, {
        command: 'sh',
        args: ['-c', 'echo ready; while :; do echo tick; sleep 0.02; done'],
        killGraceMs: 500,
        onMessage: ready.onMessage,
      })
      await ready.found
      if (end === 'delete') {
        await ctx.store.deleteSession(ctx.sessionId)
        await ctx.store.createSession(ctx.sessionId)
      } else if (end === 'closeSession') {
        await ctx.store.closeSession(ctx.sessionId)
      } else {
        await ctx.store.close()
      }
      expect((await run.exited).stopped).toBe(true)
      expect(ctx.registry.count()).toBe(0)
      if (end === 'delete') expect(await ctx.store.messages(ctx.sessionId)).toEqual([])
    }
  })

  test('a quiet run stops when another process deletes or closes its session', async () => {
    for (const end of ['deleteSession', 'closeSession']) {
      const db = path.join(tmpDir(), 'shared.db')
      const store = SessionStore.open(db)
      await store.createSession('quiet')
      const registry = new ProcessRegistry()
      const ready = watchFor((c) => c.content === 'ready')
      // Prints once, then says nothing: no write of its own can fail and
      // tell the run that its session is gone.
      const run = await terminal(
        { store, registry, sessionId: 'quiet' },
        { command: 'sh', args: ['-c', 'echo ready; exec sleep 300'], killGraceMs: 300, onMessage: ready.onMessage },
      )
      await ready.found
      const other = await runNode('-e', [
        `const { SessionStore } = require('.'); const s = SessionStore.open(${JSON.stringify(db)}); s.${end}('quiet').then(() => s.close())`,
      ])
      expect(other.code).toBe(0)
      expect((await run.exited).stopped).toBe(true)
      expect(registry.count()).toBe(0)
      await store.close()
    }
  })

  test('onMessage that falls behind makes the run stop reading the child, so nothing piles up', async () => {
    const ctx = await setup()
    const blocked = deferred()
    let calls = 0
    let storedWhileBlocked = null
    const run = await terminal(ctx, {
      command: 'sh',
      // Lines of 1,000 characters, as fast as the pipe takes them.
      args: ['-c', 'line=$(printf "%01000d" 0); while :; do echo "$line"; done'],
      onMessage: () => {
        calls += 1
        if (calls === 1) {
          // A host busy for half a second: without backpressure the run
          // would store some hundred thousand lines meanwhile.
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500)
          ctx.store.getSession(ctx.sessionId).then((s) => {
            storedWhileBlocked = s.lastSequence
            blocked.resolve()
          })
        }
      },
    })
    await blocked.promise
    ctx.registry.stop(ctx.sessionId)
    await run.exited
    expect(storedWhileBlocked).toBeLessThan(10000)
  })

  test('a run whose onMessage is far behind holds up no other run', async () => {
    const db = path.join(tmpDir(), 'busy.db')
    const store = SessionStore.open(db)
    await store.createSession('busy')
    await store.createSession('quick')
    const release = new SharedArrayBuffer(4)
    const worker = new Worker(path.join(__dirname, 'fixtures', 'busy-worker.js'), { workerData: { db, release } })
    const said = (word) =>
      new Promise((resolve, reject) => {
        worker.on('error', reject)
        worker.on('message', (m) => m === word && resolve())
      })
    const done = said('done')
    await said('blocked')
    // The busy run has stored more than its callback's backlog (1,024
    // messages, plus the one the blocked call gave back), so it waits, or is
    // about to, for a worker that takes none of them.
    while ((await store.getSession('busy')).lastSequence < 1026) {}
    const quick = await spawnTerminal({
      store,
      registry: new ProcessRegistry(),
      sessionId: 'quick',
      command: 'echo',
      args: ['quick'],
      env: MARK,
    })
    expect((await quick.exited).exitCode).toBe(0)
    expect((await parsed(store, 'quick'))[0].content).toBe('quick')
    Atomics.store(new Int32Array(release), 0, 1)
    Atomics.notify(new Int32Array(release), 0)
    await done
    await worker.terminate()
  })

  test("stdin: 'pipe' takes write() of strings and bytes in order, end() sends EOF, and input is never stored", async () => {
    const ctx = await setup()
    const run = await terminal(ctx, {
      command: 'sh',
      args: ['-c', 'read answer; echo "got $answer"; cat'],
      stdin: 'pipe',
    })
    await run.write('hunter')
    await run.write(Buffer.from('2\n'))
    await run.write(new Uint8Array([0x6d, 0x6f, 0x72, 0x65, 0x0a]))
    run.end()
    expect((await run.exited).exitCode).toBe(0)
    const lines = (await parsed(ctx.store, ctx.sessionId))
      .filter((c) => c.type === 'terminal_output')
      .map((c) => c.content)
    expect(lines).toEqual(['got hunter2', 'more'])
    const raw = (await ctx.store.messages(ctx.sessionId)).map((m) => m.content).join('\n')
    expect(raw.match(/hunter2/g)).toHaveLength(1)
  })

  test('a child that never reads its stdin: writes wait for room, so 100 MB of awaited writes hold the host to a few MB', async () => {
    const ctx = await setup()
    // The child takes exactly 1 MiB, says so, and never reads again.
    const { found: drained, onMessage } = watchFor((e) => e.content === 'drained')
    const run = await terminal(ctx, {
      command: 'sh',
      args: ['-c', 'head -c 1048576 >/dev/null; echo drained; exec sleep 60'],
      stdin: 'pipe',
      onMessage,
    })
    const chunk = Buffer.alloc(1024 * 1024, 0x61)
    const before = process.memoryUsage().rss
    let written = 0
    const firstWritten = deferred()
    const writing = (async () => {
      for (let i = 0; i < 100; i++) {
        await run.write(chunk)
        written += 1
        firstWritten.resolve()
      }
    })()
    // Seen as rejected below; never an unhandled rejection if a check fails.
    writing.catch(() => {})
    try {
      await Promise.all([drained, firstWritten.promise])
      // The first MiB went in and settled; the second fills the pipe and
      // waits there, and the 98 after it were never handed over.
      expect(written).toBe(1)
      expect(process.memoryUsage().rss - before).toBeLessThan(16 * 1024 * 1024)
    } finally {
      ctx.registry.stop(ctx.sessionId)
    }
    expect(await codeOf(() => writing)).toBe('INVALID_ARGUMENT')
    expect((await run.exited).stopped).toBe(true)
  })

  test('lines written apart are stored in the order written across stdout and stderr, 50 runs in a row', async () => {
    const ctx = await setup()
    // 10 ms apart: more than the reader's worst stall on a loaded 2-core
    // machine (a few ms). At 0.5 ms the order is kept when the machine has
    // a core to spare; `npm run bench:order` measures that case.
    const script = 'echo out1; sleep 0.01; echo err1 >&2; sleep 0.01; echo out2; sleep 0.01; echo err2 >&2'
    const written = ['stdout out1', 'stderr err1', 'stdout out2', 'stderr err2']
    for (let round = 0; round < 50; round++) {
      const sessionId = `order-${round}`
      await ctx.store.createSession(sessionId)
      const run = await terminal({ ...ctx, sessionId }, { command: 'sh', args: ['-c', script] })
      await run.exited
      const stored = (await parsed(ctx.store, sessionId))
        .filter((e) => e.type === 'terminal_output')
        .map((e) => `${e.stream} ${e.content}`)
      expect({ round, stored }).toEqual({ round, stored: written })
    }
  })

  test('write() without a stdin pipe or of the wrong type is INVALID_ARGUMENT, after the run NOT_RUNNING; resize is for pseudo-terminals', async () => {
    const ctx = await setup()
    const run = await terminal(ctx, { command: 'sleep', args: ['30'] })
    expect(await codeOf(() => run.write('x'))).toBe('INVALID_ARGUMENT')
    expect(await codeOf(() => run.write(42))).toBe('INVALID_ARGUMENT')
    expect(await codeOf(() => run.resize(80, 24))).toBe('INVALID_ARGUMENT')
    ctx.registry.stop(ctx.sessionId)
    await run.exited
    expect(await codeOf(() => run.write('late'))).toBe('NOT_RUNNING')
    run.end()
    expect(await codeOf(() => terminal(ctx, { command: 'true', stdin: 'yes' }))).toBe('INVALID_ARGUMENT')
  })

  test("a worker's terminate() stops the runs it started", async () => {
    const worker = new Worker(path.join(__dirname, 'fixtures', 'run-worker.js'))
    const sleepPid = await new Promise((resolve, reject) => {
      worker.on('error', reject)
      worker.on('message', (line) => resolve(Number(line)))
    })
    expect(isGone(sleepPid)).toBe(false)
    await worker.terminate()
    expect(await settleGone(sleepPid)).toBe(true)
  })

  test('bad options reject with INVALID_ARGUMENT', async () => {
    const ctx = await setup()
    const { store, registry, sessionId } = ctx
    const base = { store, registry, sessionId, command: 'true', env: MARK }
    for (const opts of [
      undefined,
      {},
      { ...base, store: {} },
      { ...base, registry: 'r' },
      { ...base, sessionId: 5 },
      { ...base, sessionId: '' },
      { ...base, command: 1 },
      { ...base, command: '' },
      { ...base, args: 'ls' },
      { ...base, args: [1] },
      { ...base, env: { A: 1 } },
      { ...base, env: 'FOO=bar' },
      { ...base, env: ['FOO=bar'] },
      { ...base, env: { A: true } },
      { ...base, env: { A: () => 'x' } },
      { ...base, env: { A: 'ok', B: null } },
      { ...base, cwd: 3 },
      { ...base, killGraceMs: -1 },
      { ...base, onMessage: 'x' },
      { ...base, clearEnv: 'yes' },
      { ...base, pty: 'big' },
      { ...base, pty: { cols: 80 } },
      { ...base, pty: { cols: 0, rows: 24 } },
      { ...base, pty: { cols: 80.5, rows: 24 } },
      { ...base, pty: { cols: 80, rows: -1 } },
      { ...base, pty: { cols: 70000, rows: 24 } },
      // What no program could be given as it is: never cut short or reread.
      { ...base, command: 'tr\0ue' },
      { ...base, args: ['ok', 'a\0b'] },
      { ...base, env: { ...MARK, A: 'x\0y' } },
      { ...base, env: { ...MARK, 'A\0B': 'x' } },
      { ...base, env: { ...MARK, 'A=B': 'x' } },
      { ...base, env: { ...MARK, '': 'x' } },
      { ...base, cwd: '/tmp\0/x' },
    ]) {
      expect(await codeOf(() => spawnTerminal(opts))).toBe('INVALID_ARGUMENT')
    }
    expect(registry.count()).toBe(0)
    expect(await store.messages(sessionId)).toEqual([])
  })
})

describe('spawnTerminal with a pseudo-terminal', () => {
  /** A run in a pseudo-terminal and a way to wait for text on its screen. */
  async function ptyRun(ctx, opts) {
    const screen = screenWatcher()
    const onMessage = (m) => {
      const event = JSON.parse(m.content)
      if (event.type === 'terminal_output') expect(event.stream).toBe('pty')
      screen.onMessage(m)
    }
    const run = await terminal(ctx, { ...opts, onMessage })
    run.shows = screen.shows
    return run
  }

  const chunksOf = async (store, id) =>
    (await parsed(store, id)).filter((m) => m.type === 'terminal_output').map((m) => m.content)

  test('the program sees a terminal of the given size, TERM=xterm-256color, and leads its own session', async () => {
    const ctx = await setup()
    const script =
      'test -t 0 && test -t 1 && test -t 2 && echo tty; echo "$TERM"; stty size; ps -o sid= -p $$ | tr -d \' \'; echo $$'
    const run = await terminal(ctx, { command: 'sh', args: ['-c', script], pty: { cols: 100, rows: 30 } })
    expect(await run.exited).toMatchObject({ exitCode: 0, signal: null, stopped: false, timedOut: false })
    const lines = (await chunksOf(ctx.store, ctx.sessionId)).join('').split('\r\n')
    expect(lines.slice(0, 3)).toEqual(['tty', 'xterm-256color', '30 100'])
    expect(lines[3]).toBe(lines[4])
    // env sets TERM when it wants another.
    await ctx.store.createSession('dumb')
    const dumb = await terminal(
      { ...ctx, sessionId: 'dumb' },
      { command: 'sh', args: ['-c', 'echo "$TERM"'], env: { ...MARK, TERM: 'dumb' }, pty: { cols: 80, rows: 24 } },
    )
    await dumb.exited
    expect((await chunksOf(ctx.store, 'dumb')).join('')).toBe('dumb\r\n')
  })

  test('chunks concatenate to exactly what the terminal printed: escape sequences kept, characters whole, 64 KiB at most', async () => {
    const ctx = await setup()
    // 300 KB of colour codes and multi-byte characters, written in one go.
    const line = '\x1b[1;32mgrün\x1b[0m 😀 € plain text '.repeat(20)
    const script = `const l = ${JSON.stringify(line)}; process.stdout.write(Array.from({ length: 500 }, (_, i) => i + ' ' + l).join('\\n') + '\\n')`
    const run = await terminal(ctx, { command: process.execPath, args: ['-e', script], pty: { cols: 200, rows: 50 } })
    expect((await run.exited).exitCode).toBe(0)
    const chunks = await chunksOf(ctx.store, ctx.sessionId)
    const expected = `${Array.from({ length: 500 }, (_, i) => `${i} ${line}`).join('\n')}\n`.replaceAll('\n', '\r\n')
    expect(chunks.join('')).toBe(expected)
    expect(chunks.length).toBeGreaterThan(4)
    for (const chunk of chunks) {
      expect(Buffer.byteLength(chunk)).toBeLessThanOrEqual(64 * 1024)
      expect(chunk).not.toContain('\uFFFD')
    }
  })

  test('a full-screen program replayed from the store into xterm shows the screen tmux shows for it', async () => {
    // Clears, scrolls, cursor moves, erases, deletes, colours and wide
    // characters: what a full-screen program prints.
    const script = path.join(tmpDir(), 'screen.sh')
    fs.writeFileSync(
      script,
      [
        "printf '\\033[2J\\033[Hheader that scrolls away\\n'",
        "i=1; while [ $i -le 30 ]; do printf 'scroll %s\\n' $i; i=$((i+1)); done",
        "printf '\\033[2J\\033[H\\033[1;1Htop-left\\033[1;70Htop-right'",
        "printf '\\033[5;10H\\033[1;31mred middle\\033[0m'",
        "printf '\\033[6;10Hto be erased\\033[6;13H\\033[K'",
        "printf '\\033[10;1Habcdefghij\\033[10;4H\\033[2P'",
        "printf '\\033[12;1Hwide: \\342\\202\\254uro \\346\\274\\242\\345\\255\\227 end'",
        "printf '\\033[24;1Hbottom line\\033[3;1H'",
        '',
      ].join('\n'),
    )
    const env = { ...process.env, ...MARK, LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8' }
    const ctx = await setup()
    const run = await terminal(ctx, { command: 'sh', args: [script], env, pty: { cols: 80, rows: 24 } })
    expect((await run.exited).exitCode).toBe(0)
    const { Terminal } = require('@xterm/headless')
    const xterm = new Terminal({ cols: 80, rows: 24, allowProposedApi: true })
    const stored = (await chunksOf(ctx.store, ctx.sessionId)).join('')
    await new Promise((resolve) => xterm.write(stored, resolve))
    const buffer = xterm.buffer.active
    const replayed = Array.from({ length: 24 }, (_, i) => buffer.getLine(buffer.baseY + i).translateToString(true))

    // The same program in a real terminal emulator: tmux, read back with
    // capture-pane once the program has signalled that it is done.
    const socket = `eren-test-${process.pid}`
    const tmux = (...args) => execFileSync('tmux', ['-L', socket, '-f', '/dev/null', '-u', ...args], { env }).toString()
    try {
      tmux('new-session', '-d', '-x', '80', '-y', '24', `sh ${script}; tmux -L ${socket} wait-for -S drawn; sleep 60`)
      tmux('wait-for', 'drawn')
      const shown = tmux('capture-pane', '-p').split('\n').slice(0, 24)
      expect(replayed.map((l) => l.trimEnd())).toEqual(shown.map((l) => l.trimEnd()))
    } finally {
      tmux('kill-server')
    }
    expect(replayed[0]).toMatch(/^top-left +top-right$/)
    expect(replayed[9]).toBe('abcfghij')
    expect(replayed[11]).toBe('wide: €uro 漢字 end')
    expect(replayed[23]).toBe('bottom line')
  })

  test('resize() delivers SIGWINCH with the new size, write() types, end() sends EOF', async () => {
    const ctx = await setup()
    const script =
      "process.stdout.on('resize', () => console.log(['resized', process.stdout.columns, process.stdout.rows].join(' '))); console.log('ready'); process.stdin.on('data', (d) => process.stdout.write(d)).on('end', () => process.exit(0))"
    const run = await ptyRun(ctx, { command: process.execPath, args: ['-e', script], pty: { cols: 80, rows: 24 } })
    await run.shows('ready')
    run.resize(132, 43)
    await run.shows('resized 132 43')
    await run.write('typed line\n')
    await run.shows('typed line\r\ntyped line')
    run.end()
    expect(await run.exited).toMatchObject({ exitCode: 0, signal: null, stopped: false, timedOut: false })
    expect(() => run.resize(80, 24)).toThrow(expect.objectContaining({ code: 'NOT_RUNNING' }))
  })

  test('stty size and tput cols see the size before and after resize()', async () => {
    const ctx = await setup()
    const script = 'stty size; tput cols; echo ready; read answer; stty size; tput cols'
    const run = await ptyRun(ctx, { command: 'sh', args: ['-c', script], pty: { cols: 80, rows: 24 } })
    await run.shows('ready')
    run.resize(132, 43)
    await run.write('\n')
    expect((await run.exited).exitCode).toBe(0)
    const lines = (await chunksOf(ctx.store, ctx.sessionId)).join('').split('\r\n')
    expect(lines).toEqual(['24 80', '80', 'ready', '', '43 132', '132', ''])
  })

  test('python3 -i is driven through write(), and end() leaves it', async () => {
    const ctx = await setup()
    const run = await ptyRun(ctx, { command: 'python3', args: ['-q', '-i'], pty: { cols: 80, rows: 24 } })
    await run.shows('>>> ')
    await run.write('print(6 * 7)\n')
    await run.shows('42\r\n>>> ')
    await run.write('import os, sys; print(os.isatty(0), os.isatty(1), sys.stdin.isatty())\n')
    await run.shows('True True True')
    run.end()
    expect(await run.exited).toMatchObject({ exitCode: 0, signal: null, stopped: false, timedOut: false })
  })

  test('what is written is never stored, and a stop hangs up before SIGTERM', async () => {
    const ctx = await setup()
    const script =
      "trap 'echo hangup' HUP; trap 'echo term; exit 7' TERM; stty -echo; echo ready; read secret; echo got; while :; do sleep 1; done"
    const run = await ptyRun(ctx, { command: 'sh', args: ['-c', script], pty: { cols: 80, rows: 24 } })
    await run.shows('ready')
    await run.write('hunter2\n')
    await run.shows('got')
    expect(ctx.registry.stop(ctx.sessionId)).toBe(true)
    expect(await run.exited).toMatchObject({ exitCode: 7, signal: null, stopped: true, timedOut: false })
    const stored = (await ctx.store.messages(ctx.sessionId)).map((m) => m.content).join('')
    expect(stored).not.toContain('hunter2')
    const screen = (await chunksOf(ctx.store, ctx.sessionId)).join('')
    expect(screen.indexOf('hangup')).toBeGreaterThan(-1)
    expect(screen.indexOf('hangup')).toBeLessThan(screen.indexOf('term'))
  })

  test('resize() with sizes a terminal cannot have is INVALID_ARGUMENT', async () => {
    const ctx = await setup()
    const run = await ptyRun(ctx, { command: 'cat', pty: { cols: 80, rows: 24 } })
    for (const [cols, rows] of [
      [0, 24],
      [80, 1.5],
      ['80', 24],
      [80, 70000],
    ]) {
      expect(() => run.resize(cols, rows)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }))
    }
    run.end()
    expect((await run.exited).exitCode).toBe(0)
  })
})

test('a run whose output fills the disk is stopped and exited rejects with STORAGE_ERROR; what was stored is intact', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'eren-disk-full-'))
  const db = path.join(dir, 'full.db')
  const host = path.join(__dirname, 'fixtures', 'disk-full-host.js')
  // 1024 blocks: the files the host writes stop growing at 512 KB or 1 MB.
  const result = await new Promise((resolve) => {
    execFile('sh', ['-c', `ulimit -f 1024 && exec "${process.execPath}" "${host}" "${db}"`], (error, stdout, stderr) =>
      resolve({ error, stdout, stderr }),
    )
  })
  const outcome = JSON.parse(result.stdout)
  expect(outcome.rejected).toBe('STORAGE_ERROR')
  expect(outcome.message).toContain('could not be stored')
  expect(outcome.registered).toEqual([])
  // Space is back (no limit here): everything acknowledged is there, in order.
  const store = SessionStore.open(db)
  const messages = await store.messages('big')
  expect(messages.length).toBeGreaterThan(0)
  expect(messages.map((m) => m.sequenceNumber)).toEqual(messages.map((_, i) => i + 1))
  expect(JSON.parse(messages[0].content).content).toBe('line 1 of output that fills the disk')
  expect((await store.getSession('big')).lastSequence).toBe(messages.length)
  await terminalBridge.storeStdout(store, 'big', 'after the space came back')
  await store.close()
  fs.rmSync(dir, { recursive: true, force: true })
})
