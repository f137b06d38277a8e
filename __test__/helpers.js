'use strict'
// Shared helpers for the Jest suites. Waits are on events; the one poll,
// settleGone, is for deaths of processes that are not ours to wait for.
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const ROOT = path.resolve(__dirname, '..')

/**
 * Returns a function that makes a fresh temporary directory; every one is
 * removed after the calling test file. Call at the top level of a test file.
 */
function tempDirs(prefix) {
  const dirs = []
  afterAll(() => {
    for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true })
  })
  return () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
    dirs.push(dir)
    return dir
  }
}

/** A promise with its resolve and reject functions outside it. */
function deferred() {
  let resolve
  let reject
  const promise = new Promise((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

/** Resolves after the current microtasks, nextTicks and one macrotask turn. */
const nextTurn = () => new Promise((resolve) => setImmediate(resolve))

/** Runs `node file args...`, resolving with its exit code, signal and output. */
function runNode(file, args = [], opts = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [file, ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...opts,
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('error', reject)
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr, pid: child.pid }))
  })
}

/**
 * True for an Error from any realm. Jest runs tests in a vm context, so errors
 * made by the addon are not `instanceof` the test's own `Error`.
 */
const isError = (e) => Object.prototype.toString.call(e) === '[object Error]'

/** The error that `fn` throws synchronously, or undefined. */
function thrownBy(fn) {
  try {
    fn()
  } catch (e) {
    return e
  }
  return undefined
}

/** The error that `fn` throws or its Promise rejects with, or undefined. */
async function errorOf(fn) {
  try {
    await fn()
  } catch (e) {
    return e
  }
  return undefined
}

function codeFrom(error) {
  if (error === undefined) return 'did not throw'
  if (!isError(error)) throw new Error(`threw a non-Error: ${String(error)}`)
  return error.code
}

/** The `code` of the error that `fn` throws, or of its rejection. */
const codeOf = async (fn) => codeFrom(await errorOf(fn))

/** The `code` of the error that `fn` throws synchronously. */
const thrownCode = (fn) => codeFrom(thrownBy(fn))

/**
 * True when the pid no longer runs: gone, or (where /proc tells) a zombie
 * awaiting its reaper. Without /proc (macOS) a zombie still counts as
 * running until it is reaped.
 */
function isGone(pid) {
  if (!fs.existsSync('/proc/self/stat')) {
    try {
      process.kill(pid, 0)
      return false
    } catch (error) {
      return error.code === 'ESRCH'
    }
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')
  } catch {
    return true
  }
}

/**
 * Resolves with isGone(pid) once it is gone, or after `withinMs` (2 s by
 * default). A SIGKILL is delivered asynchronously and no event reports the
 * death of a process that is not our child, so this polls for at most
 * the time the guarantees allow.
 */
async function settleGone(pid, withinMs = 2000) {
  const deadline = Date.now() + withinMs
  while (!isGone(pid) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  return isGone(pid)
}

/**
 * What a run's terminal output shows so far: `onMessage` gathers the
 * `terminal_output` text of each message (pty chunks may split a word), and
 * `shows(text)` resolves once the gathered text holds `text`.
 */
function screenWatcher() {
  let text = ''
  const waiters = []
  const onMessage = (m) => {
    const event = JSON.parse(m.content)
    if (event.type !== 'terminal_output') return
    text += event.content
    for (const w of waiters.splice(0)) {
      if (text.includes(w.text)) w.resolve()
      else waiters.push(w)
    }
  }
  const shows = (wanted) => {
    if (text.includes(wanted)) return Promise.resolve()
    const w = { text: wanted, ...deferred() }
    waiters.push(w)
    return w.promise
  }
  return { onMessage, shows, text: () => text }
}

/**
 * A URL of the PostgreSQL server at $EREN_TEST_POSTGRES narrowed to a new,
 * empty schema, so a test sees only its own sessions. `npm test` starts a
 * throwaway server (__test__/with-postgres.js) and sets the variable.
 */
async function postgresSchemaUrl() {
  const url = process.env.EREN_TEST_POSTGRES
  if (!url) {
    throw new Error('EREN_TEST_POSTGRES is not set: run `npm test`, which starts a throwaway PostgreSQL server')
  }
  const { Client } = require('pg')
  const schema = `t_${crypto.randomUUID().replaceAll('-', '')}`
  const admin = new Client({ connectionString: url })
  await admin.connect()
  try {
    await admin.query(`CREATE SCHEMA ${schema}`)
  } finally {
    await admin.end()
  }
  return `${url}${url.includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c search_path=${schema}`)}`
}

/** The store backends that backend-generic suites run against, for `describe.each`. */
const BACKENDS = [
  ['SQLite', async () => require('..').SessionStore.inMemory()],
  ['PostgreSQL', async () => require('..').SessionStore.connect(await postgresSchemaUrl())],
]

// Under EREN_MACHINES_BACKEND=posix (the portable backend, the base of
// macOS's) `.ci/run` runs the runner, Claude and CLI suites again. Nothing
// there outlives the host to watch it, nor adopts what a program that ended
// left behind: that takes the platform's guardian (a subreaper with a
// parent-death signal on Linux, a kqueue on the host and on every fork of
// the tree on macOS). And without pidfds each running process costs a
// waiting thread (macOS has a kqueue per run instead, but the test counts
// threads in /proc). Tests of those guarantees skip there.
const POSIX_MODE = process.env.EREN_MACHINES_BACKEND === 'posix'
const withGuardian = POSIX_MODE ? test.skip : test
const withPidfds = POSIX_MODE || process.platform !== 'linux' ? test.skip : test

/** A command prefix that runs the rest in a session of its own: macOS has no setsid(1). */
const SETSID = process.platform === 'darwin' ? "perl -MPOSIX -e 'POSIX::setsid(); exec @ARGV'" : 'setsid'

module.exports = {
  SETSID,
  withGuardian,
  withPidfds,
  BACKENDS,
  postgresSchemaUrl,
  screenWatcher,
  ROOT,
  tempDirs,
  deferred,
  nextTurn,
  runNode,
  isError,
  thrownBy,
  errorOf,
  codeOf,
  thrownCode,
  isGone,
  settleGone,
}
