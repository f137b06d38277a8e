'use strict'
// `seq 1 N` through spawnTerminal into a file store, against Node's best
// do-it-yourself path in the same run: child_process.spawn, readline, and
// better-sqlite3 inserting the same message JSON in batched transactions
// into the same schema with the same pragmas; and against the physical
// limit, a bare Rust loop inserting the same rows into SQLite alone
// (crates/eren-machines-core/examples/sqlite_insert_limit.rs). Prints
// lines/s for each, the ratios, the addon's peak RSS and the event-loop
// delay p99. Figures to report, never assertions. `npm run bench:runner`.
const path = require('node:path')
const readline = require('node:readline')
const { execFileSync, spawn } = require('node:child_process')
const { baselineDatabase, measure, fmt, inScratchDir, runBench } = require('./common')
const { ProcessRegistry, SessionStore, spawnTerminal } = require('..')

const LINES = Number(process.env.LINES || 1000000)
const BATCH = 4096

async function addon(dir) {
  const store = SessionStore.open(path.join(dir, 'addon.db'))
  await store.createSession('bench')
  const result = await measure(LINES, async () => {
    const run = await spawnTerminal({
      store,
      registry: new ProcessRegistry(),
      sessionId: 'bench',
      command: 'seq',
      args: ['1', String(LINES)],
    })
    await run.exited
  })
  const session = await store.getSession('bench')
  if (session.lastSequence !== LINES + 1) throw new Error(`addon stored ${session.lastSequence} messages`)
  await store.close()
  return result
}

async function baseline(dir) {
  const db = baselineDatabase(path.join(dir, 'baseline.db'))
  const insert = db.prepare('INSERT INTO messages (session, sequence, id, content, created_at) VALUES (1, ?, ?, ?, ?)')
  const setLast = db.prepare('UPDATE sessions SET last_sequence = ? WHERE key = 1')
  let sequence = 0
  const flush = db.transaction((batch) => {
    const now = Date.now()
    for (const content of batch) {
      sequence++
      insert.run(sequence, sequence, content, now)
    }
    setLast.run(sequence)
  })
  const result = await measure(
    LINES,
    () =>
      new Promise((resolve, reject) => {
        const child = spawn('seq', ['1', String(LINES)], { stdio: ['ignore', 'pipe', 'pipe'] })
        let batch = []
        const onLine = (stream) => (line) => {
          batch.push(JSON.stringify({ type: 'terminal_output', stream, content: line }))
          if (batch.length >= BATCH) {
            flush(batch)
            batch = []
          }
        }
        readline.createInterface({ input: child.stdout, crlfDelay: Infinity }).on('line', onLine('stdout'))
        readline.createInterface({ input: child.stderr, crlfDelay: Infinity }).on('line', onLine('stderr'))
        child.on('error', reject)
        child.on('close', (code, signal) => {
          batch.push(JSON.stringify({ type: 'terminal_finished', exit_code: code, signal, stopped: false }))
          flush(batch)
          resolve()
        })
      }),
  )
  db.close()
  return result
}

/** SQLite's own insert rate for the same rows, from a bare Rust program. */
function insertLimit(dir) {
  const root = path.join(__dirname, '..')
  const cargo = ['--release', '--quiet', '-p', 'eren-machines-core', '--example', 'sqlite_insert_limit']
  execFileSync('cargo', ['build', ...cargo], { cwd: root, stdio: 'inherit' })
  const output = execFileSync('cargo', ['run', ...cargo, '--', path.join(dir, 'limit.db'), String(LINES)], {
    cwd: root,
    encoding: 'utf8',
  })
  return JSON.parse(output).rowsPerSecond
}

async function main() {
  await inScratchDir(async (dir) => {
    const rssBefore = process.memoryUsage().rss
    const ours = await addon(dir)
    const peakRss = process.resourceUsage().maxRSS * 1024
    const theirs = await baseline(dir)
    const limit = insertLimit(dir)
    const mb = (n) => (n / 1048576).toFixed(0)
    console.log(`lines: ${LINES} (seq 1 ${LINES}), pragmas: WAL, synchronous=FULL`)
    console.log(
      `addon spawnTerminal:                   ${fmt(ours.rate)} lines/s, event-loop p99 ${ours.p99.toFixed(2)} ms`,
    )
    console.log(
      `child_process+readline+better-sqlite3: ${fmt(theirs.rate)} lines/s, event-loop p99 ${theirs.p99.toFixed(2)} ms`,
    )
    console.log(`bare Rust + SQLite insert loop:        ${fmt(limit)} rows/s (the limit)`)
    console.log(`ratio addon / do-it-yourself:          ${(ours.rate / theirs.rate).toFixed(2)}x`)
    console.log(`ratio addon / the limit:               ${(ours.rate / limit).toFixed(2)}x`)
    console.log(`addon peak RSS: ${mb(peakRss)} MB (process RSS before the run: ${mb(rssBefore)} MB)`)
  })
}

runBench(main)
