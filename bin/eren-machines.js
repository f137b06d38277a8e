#!/usr/bin/env node
'use strict'
// The eren-machines command: run a command or Claude under supervision into
// a session store, and read sessions back. Built on the addon's public API.
const childProcess = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const readline = require('node:readline')
const { parseArgs } = require('node:util')
const { MAX_LINE_BYTES, ProcessRegistry, SessionStore, redactDatabaseUrl, spawnTerminal, spawnClaude } = require('..')
const { version } = require('../package.json')
const { parseContent, renderText } = require('../messages')

class UsageError extends Error {}

/** $EREN_MACHINES_DB, else $XDG_DATA_HOME/eren-machines, else ~/.local/share/eren-machines. */
function defaultDatabase(env = process.env) {
  if (env.EREN_MACHINES_DB) return { path: env.EREN_MACHINES_DB, from: '$EREN_MACHINES_DB' }
  if (env.XDG_DATA_HOME) {
    return { path: path.join(env.XDG_DATA_HOME, 'eren-machines', 'sessions.db'), from: '$XDG_DATA_HOME' }
  }
  return { path: path.join(os.homedir(), '.local', 'share', 'eren-machines', 'sessions.db'), from: 'default' }
}

function usage() {
  const db = defaultDatabase()
  return `eren-machines ${version}: supervised processes, stored per session

Usage:
  eren-machines run [--db PATH|URL] [--session ID] [--pty] -- <command> [args...]
      Run a command, echo its stdout and stderr live and store every line.
      Ctrl-C or SIGTERM stops it through the registry (the whole process
      tree). Exits with the command's exit code (128+n if killed by signal n).
      --pty runs it in a pseudo-terminal sized like yours: keystrokes (Ctrl-C
      included) and resizes go to it, and its screen output is stored.
  eren-machines claude [--db PATH|URL] [--session ID] [--resume ID] [--claude-path P] [--chat] -- <prompt>
      Run the Claude CLI on a prompt, print its messages as they stream, and
      store every event. --chat converses: after each result it reads your
      next message (an empty line or Ctrl-D ends), asks y/n for each tool
      permission, and Ctrl-C interrupts the turn (twice stops the CLI).
  eren-machines log <session> [--db PATH|URL] [--follow] [--json] [--after N]
      Print a session's messages (--json: one JSON message per line); a
      --pty session's output is printed as it was, escape sequences and all.
      --follow keeps printing new ones until Ctrl-C.
  eren-machines sessions [--db PATH|URL] [--json] [--status S] [--tag T] [--cwd DIR]
                         [--query TEXT] [--archived|--active] [--order created|updated]
                         [--limit N] [--follow]
      List sessions: id, status, messages, created time, Claude session id,
      title, tags and cost, filtered as asked (oldest first, or most recently
      changed first with --order updated). --follow prints each change to
      the list as it happens (a session created, retitled, ended...) until
      Ctrl-C, from any process or host on the database.
  eren-machines search <words...> [--db PATH|URL] [--session ID] [--limit N] [--json]
      Print the messages holding every word, best first: session#sequence and
      the text around the match. Exits 1 when nothing matches.
  eren-machines stop <session> [--db PATH|URL]
      Stop the session's run wherever it runs: this machine's other
      processes on the database file, or any host on a PostgreSQL server.
      Returns once its end is stored.
  eren-machines import-claude [--db PATH|URL] [--projects-dir DIR]
      Import the Claude CLI's own transcripts (~/.claude/projects) as
      sessions; a second import adds only what is new.
  eren-machines studio [--db PATH|URL] [--port N]
      Serve a read-only web page of every session, live, on 127.0.0.1 (a
      free port unless --port), and print its URL; it opens nothing itself.
      The URL carries a secret token: share it as you would the database.
      Ctrl-C stops it.
  eren-machines --help | --version

Database: ${shown(db.path)}
  (${db.from}; --db overrides it, created on first use;
   a postgres:// URL names a PostgreSQL server shared by many hosts)
`
}

/** Parses `args` for a subcommand; any problem is a usage error. */
function parse(args, options, { positionals: wanted = 'any' } = {}) {
  let parsed
  try {
    parsed = parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true })
  } catch (e) {
    throw new UsageError(e.message)
  }
  if (wanted === 'none' && parsed.positionals.length > 0 && !parsed.values.help) {
    throw new UsageError(`unexpected argument '${parsed.positionals[0]}'`)
  }
  return parsed
}

const isServerUrl = (location) => /^postgres(ql)?:\/\//.test(location)

/** A database location fit to print: a server URL loses its password. */
const shown = (location) => (isServerUrl(location) ? redactDatabaseUrl(location) : location)

/**
 * Opens the database: a file, or a PostgreSQL server for a postgres:// URL.
 * Only commands that write create a file (and its folder).
 */
async function openStore(location, { create = true } = {}) {
  const file = location || defaultDatabase().path
  if (isServerUrl(file)) return SessionStore.connect(file)
  if (!create && !fs.existsSync(file)) throw new Error(`no database at ${file}`)
  if (create) fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true, mode: 0o700 })
  return SessionStore.open(file)
}

/** The session to write into: the one named (created if absent), or a new one. */
async function sessionFor(store, id) {
  if (id === undefined) return store.createSession()
  const existing = await store.getSession(id)
  if (!existing) return store.createSession(id)
  if (existing.closed) throw new Error(`session '${id}' is closed`)
  return id
}

/** Exit status of a run, as a shell reports it. */
function exitStatus(result) {
  if (result.exitCode !== null) return result.exitCode
  const number = os.constants.signals[result.signal]
  return number ? 128 + number : 1
}

/**
 * Runs `start(onMessage)` under supervision: SIGINT and SIGTERM stop the
 * session through the registry. Resolves with the exit status once the run
 * has ended and every stored message has gone through `echo`.
 */
async function supervise(store, sessionId, registry, start, echo, onInterrupt) {
  let echoed = (await store.getSession(sessionId)).lastSequence
  let caughtUp = null
  // The signal that stopped the run, so the exit status says what the user
  // did (130 for Ctrl-C) rather than what the runner sent the child.
  let stoppedBy = null
  const onMessage = (message) => {
    echo(message)
    echoed = message.sequenceNumber
    if (caughtUp && echoed >= caughtUp.target) caughtUp.resolve()
  }
  const stopOn = (signal) => () => {
    stoppedBy ??= signal
    registry.stop(sessionId)
  }
  const handlers = {
    SIGINT: onInterrupt || stopOn('SIGINT'),
    SIGTERM: stopOn('SIGTERM'),
    // Closing the terminal: stop the run and store its end, leave nothing behind.
    SIGHUP: stopOn('SIGHUP'),
  }
  for (const [signal, handler] of Object.entries(handlers)) process.on(signal, handler)
  try {
    const run = await start(onMessage)
    const result = await run.exited
    // onMessage runs on its own queue: wait until it has seen the last message.
    const target = (await store.getSession(sessionId)).lastSequence
    if (echoed < target) await new Promise((resolve) => (caughtUp = { target, resolve }))
    if (result.stopped && stoppedBy) return 128 + os.constants.signals[stoppedBy]
    return exitStatus(result)
  } finally {
    for (const [signal, handler] of Object.entries(handlers)) process.off(signal, handler)
  }
}

/** Streams whose reader went away (`eren-machines run -- ... | head`). */
const closed = new Set()
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error) => {
    // A closed pipe only ends the echo; the run goes on and is still stored.
    if (error.code !== 'EPIPE') throw error
    closed.add(stream)
  })
}

/** Writes `text` as a line, or as the start of one when it `continues`. */
function write(stream, text, continues = false) {
  if (!closed.has(stream)) stream.write(continues || text.endsWith('\n') ? text : `${text}\n`)
}

/** Writes a program's bytes as they came. */
function writeBytes(stream, chunk) {
  if (!closed.has(stream)) stream.write(chunk)
}

/** Writes a rendered message to its stream, or everything to `only`. */
function echoTo(only) {
  return (message) => {
    const shown = renderText(message.content, { maxLineBytes: MAX_LINE_BYTES })
    if (shown) write(only || (shown.stream === 'stderr' ? process.stderr : process.stdout), shown.text, shown.continues)
  }
}

/**
 * Connects this terminal to a run in a pseudo-terminal: its size and every
 * resize, and keystrokes in raw mode (Ctrl-C goes to the program, as in any
 * terminal). Returns a function that restores the terminal.
 */
function attachTerminal(run) {
  const input = process.stdin
  const onResize = () => {
    if (process.stdout.columns && process.stdout.rows) run.resize(process.stdout.columns, process.stdout.rows)
  }
  const onData = (data) => run.write(data).catch(() => {})
  const onEnd = () => run.end()
  process.stdout.on('resize', onResize)
  if (input.isTTY) {
    input.setRawMode(true)
    // libuv's raw mode keeps ONLCR, so a bare \n from a program that turned
    // its own terminal's output processing off would come out as \r\n here.
    // Leaving raw mode restores the terminal as it was, ONLCR included.
    childProcess.spawnSync('stty', ['-onlcr'], { stdio: [input, 'ignore', 'ignore'] })
  }
  input.on('data', onData)
  input.on('end', onEnd)
  return () => {
    process.stdout.off('resize', onResize)
    input.off('data', onData)
    input.off('end', onEnd)
    if (input.isTTY) input.setRawMode(false)
    input.pause()
  }
}

/** The pseudo-terminal size for `run --pty`: this terminal's, else 80x24. */
function terminalSize() {
  const { columns, rows } = process.stdout
  return columns && rows ? { cols: columns, rows } : { cols: 80, rows: 24 }
}

async function runCommand(args) {
  const { values, positionals } = parse(args, {
    db: { type: 'string' },
    session: { type: 'string' },
    pty: { type: 'boolean' },
  })
  if (values.help) return help()
  if (positionals.length === 0) throw new UsageError('run needs a command after --')
  const [command, ...commandArgs] = positionals
  const store = await openStore(values.db)
  try {
    const sessionId = await sessionFor(store, values.session)
    process.stderr.write(`eren-machines: session ${sessionId}\n`)
    const registry = new ProcessRegistry()
    let detach = () => {}
    const start = async (onMessage) => {
      const pty = values.pty ? terminalSize() : undefined
      const run = await spawnTerminal({ store, registry, sessionId, command, args: commandArgs, pty, onMessage })
      // The output is echoed as it is read, byte for byte: the stored lines
      // cannot always say whether a line of about 1 MiB was a piece of a
      // longer one, and the program's bytes need no rendering.
      run.onData((chunk, stream) => writeBytes(stream === 'stderr' ? process.stderr : process.stdout, chunk))
      if (pty) detach = attachTerminal(run)
      return run
    }
    // Only the run's end comes from the store; a terminal in raw mode
    // (ONLCR off) needs the carriage return spelled out.
    const echo = (message) => {
      const content = parseContent(message.content)
      if (content.type !== 'terminal_finished') return
      const { text } = renderText(content)
      write(process.stderr, process.stdin.isRaw ? `${text}\r\n` : text)
    }
    try {
      return await supervise(store, sessionId, registry, start, echo)
    } finally {
      detach()
    }
  } finally {
    await store.close()
  }
}

async function claudeCommand(args) {
  const { values, positionals } = parse(args, {
    db: { type: 'string' },
    session: { type: 'string' },
    resume: { type: 'string' },
    'claude-path': { type: 'string' },
    chat: { type: 'boolean' },
  })
  if (values.help) return help()
  if (positionals.length === 0 && !values.chat) throw new UsageError('claude needs a prompt after -- (or --chat)')
  const store = await openStore(values.db)
  try {
    const sessionId = await sessionFor(store, values.session)
    process.stderr.write(`eren-machines: session ${sessionId}\n`)
    const registry = new ProcessRegistry()
    const options = {
      store,
      registry,
      sessionId,
      prompt: positionals.length > 0 ? positionals.join(' ') : undefined,
      resumeSessionId: values.resume,
      claudePath: values['claude-path'],
    }
    const status = values.chat
      ? await chat(options)
      : await supervise(store, sessionId, registry, (onMessage) => spawnClaude({ ...options, onMessage }), echoTo(null))
    const session = await store.getSession(sessionId)
    if (session.agentStatus === 'error') process.stderr.write(`eren-machines: ${session.errorMessage}\n`)
    return status
  } finally {
    await store.close()
  }
}

/**
 * Lines typed at the terminal, in order. A question (`confirm`) at a
 * terminal is answered only by a line typed after it was shown: what was
 * typed ahead stays queued for the next message, so a stray "y" never
 * approves a tool unseen. Piped input answers in order, as a script wrote it.
 */
function lineReader() {
  const rl = readline.createInterface({ input: process.stdin, terminal: false })
  const typed = Boolean(process.stdin.isTTY)
  const lines = []
  const waiters = []
  let question = null
  let ended = false
  rl.on('line', (line) => {
    if (question) {
      const answer = question
      question = null
      answer(line)
    } else if (waiters.length) waiters.shift()(line)
    else lines.push(line)
  })
  rl.on('close', () => {
    ended = true
    for (const waiter of waiters.splice(0)) waiter(null)
    if (question) question(null)
  })
  const next = () => {
    if (lines.length) return Promise.resolve(lines.shift())
    if (ended) return Promise.resolve(null)
    return new Promise((resolve) => waiters.push(resolve))
  }
  return {
    /** The next line after printing `prompt`, or null at end of input. */
    ask(prompt) {
      write(process.stderr, prompt)
      return next()
    },
    /** The answer to a question: at a terminal, the next line typed after it. */
    confirm(prompt) {
      write(process.stderr, prompt)
      if (!typed) return next()
      if (ended) return Promise.resolve(null)
      return new Promise((resolve) => (question = resolve))
    },
    close: () => rl.close(),
  }
}

/**
 * `claude --chat`: a conversation at the terminal. Tool permissions are
 * asked y/n (AskUserQuestion asks its question), Ctrl-C interrupts the turn
 * and a second Ctrl-C in the same turn stops the CLI.
 */
async function chat(options) {
  const { store, registry, sessionId } = options
  const input = lineReader()
  let turnEnded = null
  let interrupted = false
  let run = null
  const nextTurnEnd = () => new Promise((resolve) => (turnEnded = resolve))
  let firstTurn = options.prompt === undefined ? Promise.resolve() : nextTurnEnd()
  const canUseTool = async (request) => {
    if (request.toolName === 'AskUserQuestion') {
      const answers = {}
      for (const q of request.input.questions || []) {
        const choices = (q.options || []).map((o, i) => `  ${i + 1}. ${o.label}`).join('\n')
        const answer = await input.confirm(`? ${q.question}\n${choices}\nanswer: `)
        const picked = q.options?.[Number(answer) - 1]?.label
        answers[q.question] = picked || answer || ''
      }
      return { behavior: 'allow', updatedInput: { ...request.input, answers } }
    }
    const shown = JSON.stringify(request.input)
    const answer = await input.confirm(
      `? allow ${request.toolName} ${shown.length > 300 ? `${shown.slice(0, 299)}…` : shown} [y/n] `,
    )
    return /^y(es)?$/i.test((answer || '').trim())
      ? { behavior: 'allow' }
      : { behavior: 'deny', message: 'denied at the terminal' }
  }
  const onSignal = () => {
    if (!run) return
    if (turnEnded && !interrupted) {
      interrupted = true
      write(process.stderr, '^C interrupting the turn (Ctrl-C again stops)')
      run.interrupt().catch(() => {})
    } else if (turnEnded) {
      registry.stop(sessionId)
    } else {
      run.end()
    }
  }
  const noteTurnEnd = (message) => {
    if (JSON.parse(message.content).type === 'result' && turnEnded) {
      const resolve = turnEnded
      turnEnded = null
      interrupted = false
      resolve()
    }
  }
  try {
    return await supervise(
      store,
      sessionId,
      registry,
      async (echo) => {
        const onMessage = (message) => {
          echo(message)
          noteTurnEnd(message)
        }
        run = await spawnClaude({ ...options, conversation: true, canUseTool, onMessage })
        const ended = run.exited.then(() => null)
        ;(async () => {
          for (;;) {
            if ((await Promise.race([firstTurn, ended])) === null) return
            const text = await Promise.race([input.ask('> '), ended])
            if (text === null || text.trim() === '') {
              run.end()
              return
            }
            firstTurn = nextTurnEnd()
            await run.send(text).catch(() => {})
          }
        })()
        return run
      },
      echoTo(null),
      onSignal,
    )
  } finally {
    input.close()
  }
}

async function logCommand(args) {
  const { values, positionals } = parse(args, {
    db: { type: 'string' },
    follow: { type: 'boolean', short: 'f' },
    json: { type: 'boolean' },
    after: { type: 'string' },
  })
  if (values.help) return help()
  if (positionals.length !== 1) throw new UsageError('log needs exactly one session id')
  const after = values.after === undefined ? 0 : Number(values.after)
  if (!Number.isSafeInteger(after) || after < 0) throw new UsageError('--after takes a whole number of 0 or more')
  const [sessionId] = positionals
  const store = await openStore(values.db, { create: false })
  const print = values.json ? (m) => write(process.stdout, JSON.stringify(m)) : echoTo(process.stdout)
  try {
    let last = after
    for (const message of await store.messages(sessionId, { afterSequence: last })) {
      print(message)
      last = message.sequenceNumber
    }
    if (values.follow) {
      // The subscription sees what other processes (a `run` in another
      // terminal) commit, too; it does not keep the process alive, so the
      // wait for Ctrl-C does.
      const keepAlive = setInterval(() => {}, 1 << 30)
      const unsubscribe = store.subscribe(sessionId, print, { afterSequence: last })
      await new Promise((resolve) => {
        process.once('SIGINT', resolve)
        process.once('SIGTERM', resolve)
      })
      unsubscribe()
      clearInterval(keepAlive)
    }
    return 0
  } finally {
    await store.close()
  }
}

/** Options of `sessions` that become listSessions options. */
const SESSION_FILTERS = {
  db: { type: 'string' },
  json: { type: 'boolean' },
  status: { type: 'string' },
  tag: { type: 'string' },
  cwd: { type: 'string' },
  query: { type: 'string' },
  archived: { type: 'boolean' },
  active: { type: 'boolean' },
  order: { type: 'string' },
  limit: { type: 'string' },
  follow: { type: 'boolean' },
}

function listOptions(values) {
  if (values.archived && values.active) throw new UsageError('--archived and --active exclude each other')
  const opts = {}
  for (const name of ['status', 'tag', 'cwd', 'query']) if (values[name] !== undefined) opts[name] = values[name]
  if (values.archived) opts.archived = true
  if (values.active) opts.archived = false
  if (values.order !== undefined) {
    if (values.order !== 'created' && values.order !== 'updated')
      throw new UsageError('--order takes created or updated')
    opts.orderBy = `${values.order}At`
  }
  if (values.limit !== undefined) {
    const limit = Number(values.limit)
    if (!Number.isInteger(limit) || limit < 1) throw new UsageError('--limit takes a whole number of 1 or more')
    opts.limit = limit
  }
  return opts
}

const dollars = (usd) => (usd > 0 ? `$${usd.toFixed(usd < 1 ? 4 : 2)}` : '-')

/** Prints rows as aligned columns. */
function printTable(rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)))
  for (const row of rows)
    write(
      process.stdout,
      row
        .map((cell, i) => cell.padEnd(widths[i]))
        .join('  ')
        .trimEnd(),
    )
}

async function sessionsCommand(args) {
  const { values } = parse(args, SESSION_FILTERS, { positionals: 'none' })
  if (values.help) return help()
  const opts = listOptions(values)
  const store = await openStore(values.db, { create: false })
  if (values.follow) return followSessions(store, values.json, values.db || defaultDatabase().path)
  let sessions
  try {
    sessions = await store.listSessions(opts)
  } finally {
    await store.close()
  }
  if (values.json) {
    write(process.stdout, JSON.stringify(sessions, null, 2))
    return 0
  }
  const title = (s) => (s.title && s.title.length > 40 ? `${s.title.slice(0, 39)}…` : s.title || '-')
  printTable(
    [['ID', 'STATUS', 'MESSAGES', 'CREATED', 'CLAUDE SESSION', 'TITLE', 'TAGS', 'COST']].concat(
      sessions.map((s) => [
        s.id,
        `${s.agentStatus}${s.closed ? ' (closed)' : ''}${s.archived ? ' (archived)' : ''}`,
        String(s.lastSequence),
        new Date(s.createdAt).toISOString(),
        s.claudeSessionId || '-',
        title(s),
        s.tags.length ? s.tags.join(',') : '-',
        dollars(s.usage.costUsd),
      ]),
    ),
  )
  return 0
}

/** Prints each change to the list of sessions as it happens, until Ctrl-C. */
async function followSessions(store, json, location) {
  const print = async ({ sessionId, kind }) => {
    const at = new Date().toISOString()
    const session = kind === 'deleted' ? null : await store.getSession(sessionId).catch(() => null)
    if (json) {
      write(process.stdout, JSON.stringify({ at, sessionId, kind, session }))
      return
    }
    const detail = session ? `  ${session.agentStatus}  ${session.title || ''}`.trimEnd() : ''
    write(process.stdout, `${at}  ${kind.padEnd(8)}  ${sessionId}${detail}`)
  }
  // One at a time, so lines come in the order of the changes.
  let printed = Promise.resolve()
  const unsubscribe = store.onSessionsChanged((change) => {
    // New messages are `log --follow`'s business, unless asked for JSON.
    if (change.kind === 'messages' && !json) return
    printed = printed.then(() => print(change))
  })
  process.stderr.write(`following the sessions of ${shown(location)} (Ctrl-C stops)\n`)
  // The feed never keeps a process alive by itself; following is the job here.
  const alive = setInterval(() => {}, 1 << 30)
  await new Promise((resolve) => {
    process.once('SIGINT', resolve)
    process.once('SIGTERM', resolve)
  })
  clearInterval(alive)
  unsubscribe()
  await store.close()
  return 0
}

async function searchCommand(args) {
  const { values, positionals } = parse(args, {
    db: { type: 'string' },
    session: { type: 'string' },
    limit: { type: 'string' },
    json: { type: 'boolean' },
  })
  if (values.help) return help()
  if (positionals.length === 0) throw new UsageError('search needs the words to look for')
  const opts = {}
  if (values.session !== undefined) opts.sessionId = values.session
  if (values.limit !== undefined) {
    const limit = Number(values.limit)
    if (!Number.isInteger(limit) || limit < 1) throw new UsageError('--limit takes a whole number of 1 or more')
    opts.limit = limit
  }
  const store = await openStore(values.db, { create: false })
  let hits
  try {
    hits = await store.search(positionals.join(' '), opts)
  } finally {
    await store.close()
  }
  if (values.json) {
    write(process.stdout, JSON.stringify(hits, null, 2))
    return 0
  }
  // In a terminal the match is bold; in a pipe it keeps its brackets.
  const mark = process.stdout.isTTY ? ['\x1b[1m', '\x1b[22m'] : ['[', ']']
  for (const hit of hits) {
    const snippet = hit.snippet.replaceAll('<mark>', mark[0]).replaceAll('</mark>', mark[1]).replace(/\s+/g, ' ')
    write(process.stdout, `${hit.sessionId}#${hit.sequenceNumber}  ${snippet}`)
  }
  if (hits.length === 0) process.stderr.write('no match\n')
  return hits.length === 0 ? 1 : 0
}

async function stopCommand(args) {
  const { values, positionals } = parse(args, { db: { type: 'string' } })
  if (values.help) return help()
  if (positionals.length !== 1) throw new UsageError('stop takes one session id')
  const store = await openStore(values.db, { create: false })
  try {
    await store.requestStop(positionals[0])
  } finally {
    await store.close()
  }
  write(process.stdout, `stopped ${positionals[0]}`)
  return 0
}

async function importCommand(args) {
  const { values } = parse(
    args,
    { db: { type: 'string' }, 'projects-dir': { type: 'string' } },
    { positionals: 'none' },
  )
  if (values.help) return help()
  const store = await openStore(values.db)
  try {
    const opts = values['projects-dir'] === undefined ? {} : { projectsDir: values['projects-dir'] }
    const summary = await store.importClaudeSessions(opts)
    write(
      process.stdout,
      `imported ${summary.messages} messages into ${summary.sessions} sessions (${summary.malformed} malformed lines kept as text)`,
    )
  } finally {
    await store.close()
  }
  return 0
}

async function studioCommand(args) {
  const { values } = parse(args, { db: { type: 'string' }, port: { type: 'string' } }, { positionals: 'none' })
  if (values.help) return help()
  const port = values.port === undefined ? 0 : Number(values.port)
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError('--port takes a port number')
  const store = await openStore(values.db, { create: false })
  const { startStudio } = require('./studio/server')
  let studio
  try {
    studio = await startStudio(store, { port })
  } catch (error) {
    await store.close()
    throw error
  }
  write(process.stdout, `eren-machines studio: ${studio.url}`)
  await new Promise((resolve) => {
    process.once('SIGINT', resolve)
    process.once('SIGTERM', resolve)
  })
  await studio.close()
  await store.close()
  return 0
}

function help() {
  process.stdout.write(usage())
  return 0
}

// No prototype: a command named `constructor` or `__proto__` is unknown.
const COMMANDS = {
  __proto__: null,
  run: runCommand,
  claude: claudeCommand,
  log: logCommand,
  sessions: sessionsCommand,
  search: searchCommand,
  stop: stopCommand,
  'import-claude': importCommand,
  studio: studioCommand,
}

async function main(argv) {
  const [name, ...rest] = argv
  if (name === '--help' || name === '-h' || name === 'help') return help()
  if (name === '--version' || name === '-v') {
    write(process.stdout, version)
    return 0
  }
  const command = COMMANDS[name]
  if (!command) throw new UsageError(name === undefined ? 'missing command' : `unknown command '${name}'`)
  return command(rest)
}

/** Exits once stdout and stderr have written everything queued: a pipe to a slow reader loses nothing. */
function exitAfterFlush(status) {
  const pending = [process.stdout, process.stderr].filter((stream) => !closed.has(stream))
  let left = pending.length
  if (left === 0) process.exit(status)
  for (const stream of pending) {
    // Callbacks run in order, so this one runs after every earlier write.
    stream.write('', () => {
      left -= 1
      if (left === 0) process.exit(status)
    })
  }
}

main(process.argv.slice(2)).then(exitAfterFlush, (error) => {
  if (error instanceof UsageError) {
    process.stderr.write(`eren-machines: ${error.message}\n\n${usage()}`)
    exitAfterFlush(2)
    return
  }
  process.stderr.write(`eren-machines: ${error.message}\n`)
  exitAfterFlush(error.code === 'SPAWN_FAILED' ? 127 : 1)
})
