'use strict'
// Runs driven as execa and node-pty users expect: timeout, an AbortSignal,
// kill(signal), merged stdio, the output tapped as it is read, pause and
// resume, and a terminal's process, cols and rows. Real processes, real
// signals, a real pseudo-terminal.
const fs = require('node:fs')
const path = require('node:path')
const { execFileSync } = require('node:child_process')
const { ProcessRegistry, SessionStore, spawnTerminal } = require('..')
const { codeOf, deferred, isGone, settleGone, tempDirs, thrownCode } = require('./helpers')

// Every process a test starts carries this variable; .ci/run fails if one
// survives the suite.
const MARK = { EREN_TEST_CHILD: '1' }
const tmpDir = tempDirs('eren-control-')

async function setup() {
  const store = SessionStore.inMemory()
  const sessionId = await store.createSession()
  return { store, registry: new ProcessRegistry(), sessionId }
}

/** Starts a terminal run in the test's session; every run carries MARK. */
const terminal = (ctx, opts) =>
  spawnTerminal({ store: ctx.store, registry: ctx.registry, sessionId: ctx.sessionId, env: MARK, ...opts })

const parsed = async (ctx) => (await ctx.store.messages(ctx.sessionId)).map((m) => JSON.parse(m.content))

/** A fifo the test waits on: the program writes to it when it reaches a point. */
function fifo() {
  const file = path.join(tmpDir(), 'fifo')
  execFileSync('mkfifo', [file])
  return { file, reached: () => new Promise((resolve) => fs.readFile(file, 'utf8', (_, text) => resolve(text))) }
}

describe('timeout', () => {
  test('stops the run as a stop does, and the result and the stored end say timedOut', async () => {
    const ctx = await setup()
    const run = await terminal(ctx, { command: 'sleep', args: ['30'], timeout: 200, killGraceMs: 300 })
    const result = await run.exited
    expect(result).toMatchObject({ exitCode: null, signal: 'SIGTERM', stopped: true, timedOut: true })
    expect(result.durationMs).toBeGreaterThanOrEqual(200)
    expect((await parsed(ctx)).at(-1)).toEqual({
      type: 'terminal_finished',
      exit_code: null,
      signal: 'SIGTERM',
      stopped: true,
      timed_out: true,
    })
    expect(ctx.registry.sessionIds()).toEqual([])
  })

  test('a run that ends first is not timed out, and every result has its duration', async () => {
    const ctx = await setup()
    const run = await terminal(ctx, { command: 'true', timeout: 30_000 })
    const result = await run.exited
    expect(result).toMatchObject({ exitCode: 0, stopped: false, timedOut: false })
    expect(Number.isFinite(result.durationMs) && result.durationMs >= 0).toBe(true)
    expect((await parsed(ctx)).at(-1)).not.toHaveProperty('timed_out')
  })

  test('a stop before the timeout is a stop, not a timeout', async () => {
    const ctx = await setup()
    const run = await terminal(ctx, { command: 'sleep', args: ['30'], timeout: 60_000 })
    ctx.registry.stop(ctx.sessionId)
    expect(await run.exited).toMatchObject({ stopped: true, timedOut: false })
  })

  test.each([-1, 1.5, '100', {}])('timeout %p is INVALID_ARGUMENT and nothing runs or is stored', async (timeout) => {
    const ctx = await setup()
    expect(await codeOf(() => terminal(ctx, { command: 'true', timeout }))).toBe('INVALID_ARGUMENT')
    expect(await ctx.store.messages(ctx.sessionId)).toEqual([])
    expect(ctx.registry.sessionIds()).toEqual([])
  })
})

describe('signal (AbortSignal)', () => {
  test('an abort stops the run', async () => {
    const ctx = await setup()
    const controller = new AbortController()
    const run = await terminal(ctx, { command: 'sleep', args: ['30'], signal: controller.signal })
    controller.abort()
    expect(await run.exited).toMatchObject({ signal: 'SIGTERM', stopped: true, timedOut: false })
  })

  test('a signal that has already aborted stops the run as soon as it starts', async () => {
    const ctx = await setup()
    const run = await terminal(ctx, { command: 'sleep', args: ['30'], signal: AbortSignal.abort() })
    expect(await run.exited).toMatchObject({ stopped: true })
  })

  test('an abort after the run ended, or on a later run of the session, changes nothing', async () => {
    const ctx = await setup()
    const controller = new AbortController()
    const first = await terminal(ctx, { command: 'true', signal: controller.signal })
    expect(await first.exited).toMatchObject({ stopped: false })
    const second = await terminal(ctx, { command: 'sh', args: ['-c', 'read x; echo $x'], stdin: 'pipe' })
    controller.abort()
    await second.write('still here\n')
    expect(await second.exited).toMatchObject({ exitCode: 0, stopped: false })
  })

  test.each([{}, { aborted: false }, 'abort', true])('signal %p is INVALID_ARGUMENT', async (signal) => {
    const ctx = await setup()
    expect(await codeOf(() => terminal(ctx, { command: 'true', signal }))).toBe('INVALID_ARGUMENT')
    expect(ctx.registry.sessionIds()).toEqual([])
  })
})

describe('kill(signal)', () => {
  test('sends the named signal to the program, which is not a stop', async () => {
    const ctx = await setup()
    const run = await terminal(ctx, { command: 'sleep', args: ['30'] })
    run.kill('SIGUSR1')
    expect(await run.exited).toMatchObject({ exitCode: null, signal: 'SIGUSR1', stopped: false })
    expect((await parsed(ctx)).at(-1)).toMatchObject({ signal: 'SIGUSR1', stopped: false })
  })

  test('defaults to SIGTERM and reaches the whole process group', async () => {
    const ctx = await setup()
    const printed = deferred()
    const run = await terminal(ctx, {
      command: 'sh',
      args: ['-c', 'sleep 30 & echo $!; wait'],
      onMessage: (m) => printed.resolve(Number(JSON.parse(m.content).content)),
    })
    const sleeper = await printed.promise
    run.kill()
    expect(await run.exited).toMatchObject({ signal: 'SIGTERM', stopped: false })
    expect(await settleGone(sleeper)).toBe(true)
  })

  test('a program that handles the signal goes on', async () => {
    const ctx = await setup()
    const trapped = fifo()
    const run = await terminal(ctx, {
      command: 'sh',
      // A read the trap interrupts is read again.
      args: ['-c', `trap 'echo got HUP' HUP; echo ready > ${trapped.file}; until read x; do :; done; echo "then $x"`],
      stdin: 'pipe',
    })
    await trapped.reached()
    run.kill('SIGHUP')
    await run.write('more\n')
    expect(await run.exited).toMatchObject({ exitCode: 0, stopped: false })
    expect((await parsed(ctx)).map((m) => m.content).filter(Boolean)).toEqual(['got HUP', 'then more'])
  })

  test('an unknown signal name, or a number, is INVALID_ARGUMENT; after the end kill does nothing', async () => {
    const ctx = await setup()
    const run = await terminal(ctx, { command: 'sleep', args: ['30'] })
    expect(thrownCode(() => run.kill('SIGNOPE'))).toBe('INVALID_ARGUMENT')
    expect(thrownCode(() => run.kill(9))).toBe('INVALID_ARGUMENT')
    expect(ctx.registry.sessionIds()).toEqual([ctx.sessionId])
    run.kill('SIGKILL')
    await run.exited
    expect(() => run.kill('SIGKILL')).not.toThrow()
  })
})

describe("stdio: 'merged'", () => {
  test('stdout and stderr lines are stored in exactly the order they were written, as stream merged', async () => {
    const ctx = await setup()
    const run = await terminal(ctx, {
      command: 'sh',
      args: ['-c', 'i=0; while [ $i -lt 300 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done'],
      stdio: 'merged',
    })
    expect(await run.exited).toMatchObject({ exitCode: 0 })
    const lines = (await parsed(ctx)).filter((m) => m.type === 'terminal_output')
    const expected = []
    for (let i = 0; i < 300; i++) expected.push(`out ${i}`, `err ${i}`)
    expect(lines.map((m) => m.content)).toEqual(expected)
    expect(new Set(lines.map((m) => m.stream))).toEqual(new Set(['merged']))
  })

  test("'separate' is the default, and anything else is INVALID_ARGUMENT with nothing stored", async () => {
    const ctx = await setup()
    const run = await terminal(ctx, { command: 'sh', args: ['-c', 'echo out; echo err >&2'], stdio: 'separate' })
    await run.exited
    const streams = (await parsed(ctx)).filter((m) => m.type === 'terminal_output').map((m) => m.stream)
    expect(streams.sort()).toEqual(['stderr', 'stdout'])
    const other = await setup()
    expect(await codeOf(() => terminal(other, { command: 'true', stdio: 'inherit' }))).toBe('INVALID_ARGUMENT')
    expect(await other.store.messages(other.sessionId)).toEqual([])
  })
})

describe('onData', () => {
  test('gives the bytes as they are read, before a line is complete enough to store', async () => {
    const ctx = await setup()
    const run = await terminal(ctx, {
      command: 'sh',
      args: ['-c', 'printf \'name? \'; read x; echo "hi $x"'],
      stdin: 'pipe',
    })
    const prompt = deferred()
    let seen = ''
    run.onData((chunk, stream) => {
      expect(Buffer.isBuffer(chunk)).toBe(true)
      expect(stream).toBe('stdout')
      seen += chunk
      if (seen.includes('name? ')) prompt.resolve()
    })
    await prompt.promise
    // The prompt has no newline yet: nothing of it is stored.
    expect(await ctx.store.messages(ctx.sessionId)).toEqual([])
    await run.write('ann\n')
    await run.exited
    expect(seen).toBe('name? hi ann\n')
    expect((await parsed(ctx)).map((m) => m.content).filter(Boolean)).toEqual(['name? hi ann'])
  })

  test('the first callback also gets what was read before it came, and each stream is named', async () => {
    const ctx = await setup()
    const run = await terminal(ctx, { command: 'sh', args: ['-c', 'echo early; echo warn >&2; exec sleep 30'] })
    // Stored means read: both lines were read before onData is called.
    await new Promise((resolve) => {
      const check = async () =>
        (await ctx.store.messages(ctx.sessionId)).length >= 2 ? resolve() : setTimeout(check, 10)
      check()
    })
    const got = { stdout: '', stderr: '' }
    const both = deferred()
    run.onData((chunk, stream) => {
      got[stream] += chunk
      if (got.stdout === 'early\n' && got.stderr === 'warn\n') both.resolve()
    })
    await both.promise
    run.kill('SIGKILL')
    await run.exited
  })

  test('after unsubscribing the callback is never called again; other callbacks go on', async () => {
    const ctx = await setup()
    const run = await terminal(ctx, {
      command: 'sh',
      args: ['-c', 'read x; echo one; read x; echo two'],
      stdin: 'pipe',
    })
    const first = []
    const second = []
    const one = deferred()
    const two = deferred()
    const unsubscribe = run.onData((chunk) => {
      first.push(String(chunk))
      one.resolve()
    })
    run.onData((chunk) => {
      second.push(String(chunk))
      if (second.join('').includes('two')) two.resolve()
    })
    await run.write('\n')
    await one.promise
    unsubscribe()
    unsubscribe()
    await run.write('\n')
    await two.promise
    await run.exited
    expect(first.join('')).toBe('one\n')
    expect(second.join('')).toBe('one\ntwo\n')
  })

  test('a callback that is not a function is INVALID_ARGUMENT', async () => {
    const ctx = await setup()
    const run = await terminal(ctx, { command: 'true' })
    expect(thrownCode(() => run.onData('nope'))).toBe('INVALID_ARGUMENT')
    await run.exited
  })
})

describe('pause and resume', () => {
  test('a paused run is not read, so its program waits on a full pipe; resumed, all of it is stored', async () => {
    const ctx = await setup()
    const started = fifo()
    const done = path.join(tmpDir(), 'done')
    const run = await terminal(ctx, {
      command: 'sh',
      // 4000 lines of 100 bytes: far more than a pipe holds.
      args: [
        '-c',
        `read x; echo go > ${started.file}; i=0; while [ $i -lt 4000 ]; do printf '%099d\\n' $i; i=$((i+1)); done; touch ${done}`,
      ],
      stdin: 'pipe',
    })
    run.pause()
    await run.write('\n')
    await started.reached()
    // Nothing tells when a writer has blocked: it is given time to finish,
    // which it cannot while nothing reads its pipe.
    await new Promise((resolve) => setTimeout(resolve, 500))
    expect(fs.existsSync(done)).toBe(false)
    run.resume()
    expect(await run.exited).toMatchObject({ exitCode: 0 })
    expect(fs.existsSync(done)).toBe(true)
    const lines = (await parsed(ctx)).filter((m) => m.type === 'terminal_output')
    expect(lines).toHaveLength(4000)
    expect(lines[3999].content).toBe(String(3999).padStart(99, '0'))
  })

  test('a run paused when its program ends is still read to the end', async () => {
    const ctx = await setup()
    const run = await terminal(ctx, { command: 'sh', args: ['-c', 'read x; echo last words'], stdin: 'pipe' })
    run.pause()
    await run.write('\n')
    expect(await run.exited).toMatchObject({ exitCode: 0 })
    expect((await parsed(ctx)).map((m) => m.content).filter(Boolean)).toEqual(['last words'])
  })
})

describe('process, cols and rows', () => {
  test("a terminal's foreground process, and its size as last set", async () => {
    const ctx = await setup()
    const run = await terminal(ctx, { command: 'cat', pty: { cols: 80, rows: 24 } })
    expect(run.process).toBe('cat')
    expect([run.cols, run.rows]).toEqual([80, 24])
    run.resize(120, 40)
    expect([run.cols, run.rows]).toEqual([120, 40])
    run.kill('SIGKILL')
    await run.exited
    expect(run.process).toBeNull()
  })

  test('the foreground process follows what the shell runs', async () => {
    const ctx = await setup()
    const running = fifo()
    const run = await terminal(ctx, {
      command: 'sh',
      args: ['-c', `echo > ${running.file}; exec sleep 30`],
      pty: { cols: 80, rows: 24 },
    })
    await running.reached()
    const deadline = Date.now() + 5000
    while (run.process !== 'sleep' && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
    expect(run.process).toBe('sleep')
    run.kill('SIGKILL')
    await run.exited
  })

  test('a run without a terminal has no process and no size', async () => {
    const ctx = await setup()
    const run = await terminal(ctx, { command: 'sleep', args: ['30'] })
    expect(run.process).toBeNull()
    expect(run.cols).toBeUndefined()
    expect(run.rows).toBeUndefined()
    run.kill('SIGKILL')
    const result = await run.exited
    expect(result.signal).toBe('SIGKILL')
    expect(isGone(run.pid)).toBe(true)
  })
})
