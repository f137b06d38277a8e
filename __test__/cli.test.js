'use strict'
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { version } = require('../package.json')
const { MAX_LINE_BYTES } = require('..')
const { screenWatcher, settleGone, tempDirs } = require('./helpers')

const CLI = path.join(__dirname, '..', 'bin', 'eren-machines.js')
const FAKE_CLAUDE = path.join(__dirname, 'fixtures', 'fake-claude.js')

const tmpDir = tempDirs('eren-cli-')

/**
 * Starts the CLI with its own database. Children it starts inherit
 * EREN_TEST_CHILD, which .ci/run checks for leftovers.
 */
function start(args, { env = {}, db, input, encoding = 'utf8' } = {}) {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, EREN_TEST_CHILD: '1', EREN_MACHINES_DB: db || path.join(tmpDir(), 'sessions.db'), ...env },
    stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  })
  if (typeof input === 'string') child.stdin.end(input)
  const out = { stdout: '', stderr: '' }
  child.stdout.setEncoding(encoding)
  child.stdout.on('data', (d) => (out.stdout += d))
  child.stderr.on('data', (d) => (out.stderr += d))
  out.done = new Promise((resolve) => child.on('close', (code, signal) => resolve({ ...out, code, signal })))
  out.child = child
  return out
}

const cli = (args, opts) => start(args, opts).done

/** The session id the CLI reports on stderr. */
const sessionOf = (stderr) => /session (\S+)/.exec(stderr)[1]

describe('eren-machines CLI', () => {
  test('--help prints the usage and the resolved database path', async () => {
    const db = path.join(tmpDir(), 'chosen.db')
    const result = await cli(['--help'], { db })
    expect(result.code).toBe(0)
    expect(result.stdout).toContain('eren-machines run [--db PATH|URL] [--session ID] [--pty] -- <command> [args...]')
    expect(result.stdout).toContain('eren-machines studio [--db PATH|URL] [--port N]')
    expect(result.stdout).toContain(`Database: ${db}`)
    expect(result.stdout).toContain('$EREN_MACHINES_DB')
  })

  test('--help shows a PostgreSQL URL without its password', async () => {
    const result = await cli(['--help'], { db: 'postgres://agents:hunter2@db.internal:5432/agents' })
    expect(result.stdout).toContain('Database: postgres://agents:***@db.internal:5432/agents')
    expect(result.stdout).not.toContain('hunter2')
  })

  test('no part of a password shows, whatever it holds (@, /, :) and wherever it stands', async () => {
    for (const [db, secret] of [
      ['postgres://agents:p@ss/w0rd@db.internal:5432/agents', 'w0rd'],
      ['postgres://agents:p@ss@db.internal/agents', 'p@ss'],
      ['postgres://db.internal/agents?user=agents&password=hunter2', 'hunter2'],
    ]) {
      const result = await cli(['--help'], { db })
      expect(result.stdout).toContain('***')
      expect(result.stdout).not.toContain(secret)
    }
    const { SessionStore } = require('..')
    const thrown = (() => {
      try {
        SessionStore.open('postgres://agents:p@ss/w0rd@db.internal/agents')
      } catch (error) {
        return error
      }
    })()
    expect(thrown.code).toBe('INVALID_ARGUMENT')
    expect(thrown.message).not.toContain('w0rd')
  })

  test('the default database is under $XDG_DATA_HOME, else ~/.local/share', async () => {
    const xdg = tmpDir()
    const withXdg = await cli(['--help'], { env: { EREN_MACHINES_DB: '', XDG_DATA_HOME: xdg } })
    expect(withXdg.stdout).toContain(`Database: ${path.join(xdg, 'eren-machines', 'sessions.db')}`)
    const home = tmpDir()
    const withHome = await cli(['--help'], { env: { EREN_MACHINES_DB: '', XDG_DATA_HOME: '', HOME: home } })
    expect(withHome.stdout).toContain(`Database: ${path.join(home, '.local', 'share', 'eren-machines', 'sessions.db')}`)
  })

  test('the default database is created on first use', async () => {
    const home = tmpDir()
    const result = await cli(['run', '--', 'true'], { env: { EREN_MACHINES_DB: '', XDG_DATA_HOME: '', HOME: home } })
    expect(result.code).toBe(0)
    expect(fs.existsSync(path.join(home, '.local', 'share', 'eren-machines', 'sessions.db'))).toBe(true)
  })

  test('--version prints the package version', async () => {
    const result = await cli(['--version'])
    expect(result.code).toBe(0)
    expect(result.stdout.trim()).toBe(version)
  })

  test.each([
    [[]],
    [['bogus']],
    [['run']],
    [['run', '--bogus', '--', 'true']],
    [['claude']],
    [['log']],
    [['log', 'a', 'b']],
    [['log', 'a', '--after', '-1']],
    [['log', 'a', '--after', 'x']],
    [['sessions', 'extra']],
    [['search']],
    [['sessions', '--order', 'title']],
    [['constructor']],
    [['toString']],
    [['__proto__']],
    [['hasOwnProperty', 'x']],
  ])('usage error %j prints the usage to stderr and exits 2', async (args) => {
    const result = await cli(args)
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('Usage:')
    expect(result.stdout).toBe('')
  })

  test('run echoes stdout and stderr live, stores them, and exits with the command exit code', async () => {
    const db = path.join(tmpDir(), 's.db')
    const result = await cli(['run', '--', 'sh', '-c', 'echo to-out; echo to-err >&2; exit 7'], { db })
    expect(result.code).toBe(7)
    expect(result.stdout).toBe('to-out\n')
    expect(result.stderr).toContain('to-err\n')
    const sessionId = sessionOf(result.stderr)

    const log = await cli(['log', sessionId, '--json'], { db })
    expect(log.code).toBe(0)
    const messages = log.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line))
    expect(messages.map((m) => m.sequenceNumber)).toEqual([1, 2, 3])
    const contents = messages.map((m) => JSON.parse(m.content))
    expect(
      contents
        .filter((c) => c.type === 'terminal_output')
        .map((c) => [c.stream, c.content])
        .sort(),
    ).toEqual([
      ['stderr', 'to-err'],
      ['stdout', 'to-out'],
    ])
    expect(contents[2]).toMatchObject({ type: 'terminal_finished', exit_code: 7 })
  })

  test('run exits 128+n when the command dies of signal n, and 127 when it cannot start', async () => {
    expect((await cli(['run', '--', 'sh', '-c', 'kill -9 $$'])).code).toBe(128 + os.constants.signals.SIGKILL)
    const missing = await cli(['run', '--', '/no/such/command'])
    expect(missing.code).toBe(127)
    expect(missing.stderr).toContain('could not spawn')
  })

  test('run keeps supervising and storing when its stdout reader goes away', async () => {
    const db = path.join(tmpDir(), 's.db')
    const running = start(['run', '--session', 'piped', '--', 'seq', '1', '50000'], { db })
    await new Promise((resolve) => running.child.stdout.once('data', resolve))
    running.child.stdout.destroy() // like `eren-machines run -- seq 1 50000 | head -1`
    const result = await running.done
    expect(result.code).toBe(0)
    expect(result.stderr).not.toContain('EPIPE')
    const sessions = JSON.parse((await cli(['sessions', '--json'], { db })).stdout)
    expect(sessions.find((s) => s.id === 'piped').lastSequence).toBe(50001)
  })

  test('SIGHUP (the terminal closing) stops the run through the registry and stores its end', async () => {
    const db = path.join(tmpDir(), 's.db')
    const running = start(['run', '--session', 'hup', '--', 'sh', '-c', 'sleep 60 & echo $!; wait'], { db })
    const sleepPid = await new Promise((resolve) => {
      running.child.stdout.on('data', () => {
        const line = running.stdout.split('\n')[0]
        if (/^\d+$/.test(line)) resolve(Number(line))
      })
    })
    running.child.kill('SIGHUP')
    const result = await running.done
    expect(result.code).toBe(128 + os.constants.signals.SIGHUP)
    expect(await settleGone(sleepPid)).toBe(true)
    const log = await cli(['log', 'hup', '--json'], { db })
    const last = JSON.parse(JSON.parse(log.stdout.trim().split('\n').at(-1)).content)
    expect(last).toMatchObject({ type: 'terminal_finished', stopped: true })
  })

  test('a slow reader of a pipe gets every line of run and of log --json', async () => {
    const db = path.join(tmpDir(), 's.db')
    // The reader starts a second late, so the CLI's output piles up in the pipe.
    const slow = (args) =>
      new Promise((resolve, reject) => {
        const quoted = args.map((a) => `'${a}'`).join(' ')
        const child = spawn('sh', ['-c', `"${process.execPath}" '${CLI}' ${quoted} | (sleep 1; wc -l)`], {
          env: { ...process.env, EREN_TEST_CHILD: '1', EREN_MACHINES_DB: db },
          stdio: ['ignore', 'pipe', 'ignore'],
        })
        let out = ''
        child.stdout.on('data', (d) => (out += d))
        child.on('error', reject)
        child.on('close', () => resolve(Number(out.trim())))
      })
    expect(await slow(['run', '--session', 'lines', '--', 'seq', '1', '100000'])).toBe(100000)
    expect(await slow(['log', 'lines', '--json'])).toBe(100001)
  })

  test('run and log echo a line over 1 MiB whole, though it is stored in pieces', async () => {
    const db = path.join(tmpDir(), 'long.db')
    const script = "process.stdout.write('é'.repeat(1300000) + '\\nend\\n')"
    const result = await cli(['run', '--', process.execPath, '-e', script], { db })
    expect(result.code).toBe(0)
    const expected = `${'é'.repeat(1300000)}\nend\n`
    expect(result.stdout).toBe(expected)
    const log = await cli(['log', sessionOf(result.stderr)], { db })
    expect(log.stdout).toBe(`${expected}[finished: exit code 0]\n`)
  })

  test('run echoes a line just under 1 MiB with its newline, and bytes that are not UTF-8 as they came', async () => {
    const db = path.join(tmpDir(), 'edge.db')
    // Stored alone, a line this long cannot be told from a piece of a longer one.
    const script = `process.stdout.write('x'.repeat(${MAX_LINE_BYTES - 2}) + '\\n'); process.stdout.write(Buffer.from([0xff, 0x41, 0x0a]))`
    const result = await cli(['run', '--', process.execPath, '-e', script], { db, encoding: 'latin1' })
    expect(result.code).toBe(0)
    expect(result.stdout).toBe(`${'x'.repeat(MAX_LINE_BYTES - 2)}\n\xffA\n`)
  })

  test('run --pty runs the command in a terminal sized like ours, forwards keys and resizes, restores the terminal; log replays the screen', async () => {
    // The CLI itself runs in a pseudo-terminal made by the package, the way a
    // user's terminal would hold it.
    const { ProcessRegistry, SessionStore, spawnTerminal } = require('..')
    const db = path.join(tmpDir(), 'pty.db')
    // A WINCH trap interrupts `read` in dash, so the resize comes last.
    // With its own output processing off, the program's bare \n must reach
    // our terminal as it was: the CLI's raw mode turns ONLCR off too.
    const inner =
      'stty size; echo ready; read line; echo "got:$line"; stty -opost; printf "bare\\nfeed\\n"; stty opost; trap \'stty size\' 28; echo waiting; read again; echo "tty:$(test -t 0 && echo yes)"'
    const outer = `"${process.execPath}" '${CLI}' run --db '${db}' --pty -- sh -c '${inner.replaceAll("'", "'\\''")}'; stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e -icanon -e onlcr -e -onlcr`
    const store = SessionStore.inMemory()
    await store.createSession('outer')
    const screen = screenWatcher()
    const run = await spawnTerminal({
      store,
      registry: new ProcessRegistry(),
      sessionId: 'outer',
      command: 'sh',
      args: ['-c', outer],
      env: { EREN_TEST_CHILD: '1' },
      pty: { cols: 101, rows: 31 },
      onMessage: screen.onMessage,
    })
    const { shows } = screen
    await shows('ready')
    expect(screen.text()).toContain('31 101')
    await run.write('typed\r')
    await shows('waiting')
    expect(screen.text()).toContain('got:typed')
    expect(screen.text()).toContain('bare\nfeed\n')
    // Lines the program's terminal ended with \r\n come through unchanged.
    expect(screen.text()).toContain('got:typed\r\n')
    expect(screen.text()).not.toContain('\r\r\n')
    run.resize(120, 40)
    await shows('40 120')
    expect(await run.exited).toMatchObject({ exitCode: 0 })
    expect(screen.text()).toContain('tty:yes')
    // Raw mode was turned off again on the way out, ONLCR back on.
    expect(screen.text().trim().split('\r\n').slice(-3)).toEqual(['[finished: exit code 0]', 'onlcr', 'icanon'])
    // The stored session replays as the screen looked.
    const sessions = await cli(['sessions', '--json', '--db', db])
    const [session] = JSON.parse(sessions.stdout)
    const log = await cli(['log', session.id, '--db', db])
    const chunks = await cli(['log', session.id, '--db', db, '--json'])
    const printed = chunks.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(JSON.parse(l).content))
      .filter((e) => e.type === 'terminal_output')
    expect(printed.every((e) => e.stream === 'pty')).toBe(true)
    expect(log.stdout).toBe(`${printed.map((e) => e.content).join('')}[finished: exit code 0]\n`)
    expect(log.stdout).toContain('got:typed')
  })

  test('log and sessions with a mistyped --db create nothing', async () => {
    const missing = path.join(tmpDir(), 'no', 'such', 'dir', 'typo.db')
    for (const args of [
      ['log', 'x', '--db', missing],
      ['sessions', '--db', missing],
    ]) {
      const result = await cli(args)
      expect(result.code).toBe(1)
      expect(result.stderr).toContain(`no database at ${missing}`)
    }
    expect(fs.existsSync(path.dirname(path.dirname(path.dirname(missing))))).toBe(false)
  })

  test('run --session appends to a named session, creating it when absent', async () => {
    const db = path.join(tmpDir(), 's.db')
    await cli(['run', '--session', 'named', '--', 'echo', 'one'], { db })
    await cli(['run', '--session', 'named', '--', 'echo', 'two'], { db })
    const log = await cli(['log', 'named'], { db })
    expect(log.stdout.split('\n').filter((l) => l === 'one' || l === 'two')).toEqual(['one', 'two'])
  })

  test('SIGINT to run stops the command through the registry and leaves no process behind', async () => {
    const db = path.join(tmpDir(), 's.db')
    const running = start(['run', '--', 'sh', '-c', 'sleep 60 & echo $!; wait'], { db })
    const sleepPid = await new Promise((resolve) => {
      running.child.stdout.on('data', () => {
        const line = running.stdout.split('\n')[0]
        if (/^\d+$/.test(line)) resolve(Number(line))
      })
    })
    running.child.kill('SIGINT')
    const result = await running.done
    // What the user did, as a shell reports it: Ctrl-C is 130.
    expect(result.code).toBe(128 + os.constants.signals.SIGINT)
    expect(result.stderr).toContain('stopped')
    expect(await settleGone(sleepPid)).toBe(true)
  })

  test('log prints a session readably, honours --after, and fails for an unknown session', async () => {
    const db = path.join(tmpDir(), 's.db')
    const run = await cli(['run', '--', 'printf', 'a\\nb\\nc\\n'], { db })
    const sessionId = sessionOf(run.stderr)
    const all = await cli(['log', sessionId], { db })
    expect(all.stdout).toBe('a\nb\nc\n[finished: exit code 0]\n')
    const after = await cli(['log', sessionId, '--after', '2'], { db })
    expect(after.stdout).toBe('c\n[finished: exit code 0]\n')
    const unknown = await cli(['log', 'missing'], { db })
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toContain("session 'missing' not found")
  })

  test('log --follow prints messages stored later by another process until SIGINT', async () => {
    const db = path.join(tmpDir(), 's.db')
    await cli(['run', '--session', 'f', '--', 'echo', 'first'], { db })
    const follow = start(['log', 'f', '--follow'], { db })
    const seen = (text) =>
      new Promise((resolve) => {
        const check = () => follow.stdout.includes(text) && resolve()
        check()
        follow.child.stdout.on('data', check)
      })
    await seen('first')
    await cli(['run', '--session', 'f', '--', 'echo', 'second'], { db })
    await seen('second')
    follow.child.kill('SIGINT')
    const result = await follow.done
    expect(result.code).toBe(0)
    expect(result.stdout.indexOf('first')).toBeLessThan(result.stdout.indexOf('second'))
  })

  test('sessions filters, orders and limits, and --json carries title, tags and usage', async () => {
    const db = path.join(tmpDir(), 's.db')
    await cli(['run', '--session', 'a', '--', 'echo', 'alpha'], { db })
    await cli(['run', '--session', 'b', '--', 'echo', 'beta'], { db })
    const { SessionStore } = require('..')
    const store = SessionStore.open(db)
    await store.addTag('b', 'keep')
    await store.archive('a')
    await store.close()
    const ids = async (args) => JSON.parse((await cli(['sessions', '--json', ...args], { db })).stdout).map((s) => s.id)
    expect(await ids(['--tag', 'keep'])).toEqual(['b'])
    expect(await ids(['--active'])).toEqual(['b'])
    expect(await ids(['--archived'])).toEqual(['a'])
    expect(await ids(['--query', 'ALPHA'])).toEqual(['a'])
    // Archiving 'a' was the latest change.
    expect(await ids(['--order', 'updated', '--limit', '1'])).toEqual(['a'])
    const [b] = JSON.parse((await cli(['sessions', '--json', '--tag', 'keep'], { db })).stdout)
    expect(b).toMatchObject({ title: 'echo beta', tags: ['keep'], usage: expect.objectContaining({ costUsd: 0 }) })
    for (const bad of [
      ['--order', 'title'],
      ['--limit', '0'],
      ['--archived', '--active'],
      ['--status', 'busy'],
    ]) {
      const result = await cli(['sessions', ...bad], { db })
      expect(result.code).not.toBe(0)
    }
  })

  test('search prints session#sequence and the marked text, and exits 1 with no match', async () => {
    const db = path.join(tmpDir(), 's.db')
    await cli(['run', '--session', 'a', '--', 'echo', 'the frobnicator is warm'], { db })
    const found = await cli(['search', 'frobnicator'], { db })
    expect(found.code).toBe(0)
    expect(found.stdout).toBe('a#1  the [frobnicator] is warm\n')
    const json = JSON.parse((await cli(['search', 'frobnicator', '--json', '--session', 'a'], { db })).stdout)
    expect(json).toEqual([expect.objectContaining({ sessionId: 'a', sequenceNumber: 1 })])
    const none = await cli(['search', 'absent'], { db })
    expect(none.code).toBe(1)
    expect(none.stderr).toBe('no match\n')
    expect((await cli(['search'], { db })).code).toBe(2)
  })

  test('import-claude imports the CLI transcripts once', async () => {
    const db = path.join(tmpDir(), 's.db')
    const projects = tmpDir()
    fs.mkdirSync(path.join(projects, 'p'))
    const id = '9a7c1d2e-3b4f-4a5b-8c6d-7e8f9a0b1c2d'
    const line = JSON.stringify({ type: 'user', cwd: '/w', message: { role: 'user', content: 'hello there' } })
    fs.writeFileSync(path.join(projects, 'p', `${id}.jsonl`), `${line}\n`)
    const first = await cli(['import-claude', '--projects-dir', projects], { db })
    expect(first.stdout).toBe('imported 1 messages into 1 sessions (0 malformed lines kept as text)\n')
    const again = await cli(['import-claude', '--projects-dir', projects], { db })
    expect(again.stdout).toBe('imported 0 messages into 0 sessions (0 malformed lines kept as text)\n')
    const [session] = JSON.parse((await cli(['sessions', '--json'], { db })).stdout)
    expect(session).toMatchObject({ id, title: 'hello there', cwd: '/w' })
  })

  test('sessions --follow prints changes another process makes, until SIGINT', async () => {
    const db = path.join(tmpDir(), 's.db')
    await cli(['run', '--session', 'old', '--', 'true'], { db })
    const follow = start(['sessions', '--follow'], { db })
    const seen = (stream, text) =>
      new Promise((resolve) => {
        const check = () => follow[stream].includes(text) && resolve()
        check()
        follow.child[stream].on('data', check)
      })
    await seen('stderr', 'following the sessions of')
    await cli(['run', '--session', 'fresh', '--', 'echo', 'hi'], { db })
    await seen('stdout', 'title')
    follow.child.kill('SIGINT')
    const result = await follow.done
    expect(result.code).toBe(0)
    const lines = result.stdout.trim().split('\n')
    expect(lines[0]).toMatch(/^\S+ {2}created {3}fresh/)
    expect(lines[1]).toMatch(/ {2}title {5}fresh {2}idle {2}echo hi$/)
  })

  test('stop stops a run that another process runs, and returns once its end is stored', async () => {
    const db = path.join(tmpDir(), 's.db')
    const running = start(['run', '--session', 'busy', '--', 'sh', '-c', 'echo up; sleep 300'], { db })
    await new Promise((resolve) => {
      const check = () => running.stdout.includes('up') && resolve()
      check()
      running.child.stdout.on('data', check)
    })
    const stopped = await cli(['stop', 'busy'], { db })
    expect(stopped).toMatchObject({ code: 0, stdout: 'stopped busy\n' })
    const ended = await running.done
    // The run was stopped through its registry: SIGTERM to its group.
    expect(ended.code).toBe(143)
    const log = JSON.parse(`[${(await cli(['log', 'busy', '--json'], { db })).stdout.trim().split('\n').join(',')}]`)
    expect(JSON.parse(log.at(-1).content)).toMatchObject({ type: 'terminal_finished', stopped: true })
    expect((await cli(['stop', 'ghost'], { db })).code).toBe(1)
    expect((await cli(['stop'], { db })).code).toBe(2)
  })

  test('sessions lists id, status, message count, created time and Claude session id', async () => {
    const db = path.join(tmpDir(), 's.db')
    await cli(['run', '--session', 'term', '--', 'echo', 'x'], { db })
    await cli(['claude', '--session', 'agent', '--claude-path', FAKE_CLAUDE, '--', 'success'], { db })
    const table = await cli(['sessions'], { db })
    expect(table.code).toBe(0)
    const [header, ...rows] = table.stdout.trim().split('\n')
    expect(header.split(/\s{2,}/)).toEqual([
      'ID',
      'STATUS',
      'MESSAGES',
      'CREATED',
      'CLAUDE SESSION',
      'TITLE',
      'TAGS',
      'COST',
    ])
    expect(rows[0].split(/\s{2,}/)).toEqual([
      'term',
      'idle',
      '2',
      expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      '-',
      'echo x',
      '-',
      '-',
    ])
    // The prompt, 5 CLI events, a non-JSON line and a stderr line.
    expect(rows[1].split(/\s{2,}/)).toEqual([
      'agent',
      'idle',
      '8',
      expect.any(String),
      'fake-claude-session-1',
      'success',
      '-',
      expect.stringMatching(/^(-|\$[\d.]+)$/),
    ])

    const json = JSON.parse((await cli(['sessions', '--json'], { db })).stdout)
    expect(json.map((s) => [s.id, s.lastSequence, s.claudeSessionId])).toEqual([
      ['term', 2, null],
      ['agent', 8, 'fake-claude-session-1'],
    ])
  })

  test('claude prints assistant text, tool use and the result as they stream', async () => {
    const result = await cli(['claude', '--claude-path', FAKE_CLAUDE, '--', 'success'])
    expect(result.code).toBe(0)
    expect(result.stdout).toBe('⏺ Bash({"command":"ls"})\n  ⎿ ok\nHello\n✔ All done.\n')
    expect(result.stderr).toContain('Claude session fake-claude-session-1')
  })

  test('claude passes --resume and reports a failed run with its exit code and error', async () => {
    const argvFile = path.join(tmpDir(), 'argv.json')
    const resumed = await cli(['claude', '--resume', 'earlier', '--claude-path', FAKE_CLAUDE, '--', 'success'], {
      env: { FAKE_CLAUDE_ARGV: argvFile },
    })
    expect(resumed.code).toBe(0)
    expect(JSON.parse(fs.readFileSync(argvFile, 'utf8')).slice(6)).toEqual(['--resume=earlier'])
    const crashed = await cli(['claude', '--claude-path', FAKE_CLAUDE, '--', 'crash'])
    expect(crashed.code).toBe(2)
    expect(crashed.stderr).toContain('Invalid API key')
  })
})

describe('render', () => {
  const { renderText: render } = require('../messages')

  test('terminal_finished in both stored shapes: the bridge writes only exit_code, runs add signal and stopped', () => {
    expect(render('{"type":"terminal_finished","exit_code":3}').text).toBe('[finished: exit code 3]')
    expect(render('{"type":"terminal_finished","exit_code":null}').text).toBe('[finished: no exit code]')
    expect(render('{"type":"terminal_finished","exit_code":null,"signal":"SIGKILL","stopped":true}').text).toBe(
      '[finished: signal SIGKILL, stopped]',
    )
  })
})

describe('claude --chat', () => {
  const chat = (prompt, opts) =>
    start(['claude', '--chat', '--claude-path', FAKE_CLAUDE, ...(prompt ? ['--', prompt] : [])], opts)
  /** Resolves once `text` has appeared on the stream. */
  const seen = (running, stream, text) =>
    new Promise((resolve) => {
      const check = () => running[stream].includes(text) && resolve()
      check()
      running.child[stream].on('data', check)
    })

  test('asks y/n for a tool permission, reads the next message after each result, ends on an empty line', async () => {
    const db = path.join(tmpDir(), 's.db')
    const result = await chat('tool', { db, input: 'y\nwhat next\n\n' }).done
    expect(result.code).toBe(0)
    expect(result.stderr).toContain('? allow Bash {"command":"touch marker"} [y/n]')
    expect(result.stdout).toContain('ran {"command":"touch marker"}')
    expect(result.stdout).toContain('You said: what next')
    const log = await cli(['log', sessionOf(result.stderr), '--json'], { db })
    const types = log.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(JSON.parse(line).content).type)
    expect(types.filter((t) => t === 'result')).toHaveLength(2)
    expect(types).toContain('control_response')
  })

  test('at a terminal only a line typed after a permission question answers it; a line typed ahead is the next message', async () => {
    const { ProcessRegistry, SessionStore, spawnTerminal } = require('..')
    const store = SessionStore.inMemory()
    await store.createSession('chat')
    const screen = screenWatcher()
    const run = await spawnTerminal({
      store,
      registry: new ProcessRegistry(),
      sessionId: 'chat',
      command: process.execPath,
      args: [CLI, 'claude', '--chat', '--claude-path', FAKE_CLAUDE, '--', 'tool'],
      env: { EREN_TEST_CHILD: '1', EREN_MACHINES_DB: path.join(tmpDir(), 's.db') },
      pty: { cols: 200, rows: 50 },
      onMessage: screen.onMessage,
    })
    // Typed before the question exists: it must not approve the tool.
    await run.write('y\r')
    await screen.shows('[y/n]')
    await run.write('n\r')
    await screen.shows('denied: denied at the terminal')
    await screen.shows('You said: y')
    await run.write('\r')
    expect(await run.exited).toMatchObject({ exitCode: 0 })
    expect(screen.text()).not.toContain('ran {"command":"touch marker"}')
  })

  test('n denies the tool, and a chat can start with no prompt', async () => {
    const denied = await chat('tool', { input: 'n\n\n' }).done
    expect(denied.stdout).toContain('denied: denied at the terminal')
    const opened = await chat(undefined, { input: 'hello from the terminal\n' }).done
    expect(opened.code).toBe(0)
    expect(opened.stdout).toContain('You said: hello from the terminal')
  })

  test('Ctrl-C interrupts the turn and the chat goes on; twice in one turn stops the CLI', async () => {
    const once = chat('hang', { input: true })
    await seen(once, 'stdout', 'working')
    once.child.kill('SIGINT')
    await seen(once, 'stderr', '> ')
    once.child.stdin.end('\n')
    const ended = await once.done
    expect(ended.code).toBe(0)
    expect(ended.stderr).toContain('interrupting the turn')
    // The interrupted turn's result is the CLI's own error result.
    expect(ended.stderr).toContain('eren-machines: Request interrupted')

    const db = path.join(tmpDir(), 's.db')
    const twice = chat('hang', { input: true, db })
    await seen(twice, 'stdout', 'working')
    twice.child.kill('SIGINT')
    await seen(twice, 'stderr', 'interrupting the turn')
    twice.child.kill('SIGINT')
    const stopped = await twice.done
    expect(stopped.signal).toBeNull()
    const [session] = JSON.parse((await cli(['sessions', '--json'], { db })).stdout)
    expect(session.agentStatus).toBe('not_available')
  })
})
