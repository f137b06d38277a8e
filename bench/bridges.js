'use strict'
// terminalBridge.storeStdout through the addon against better-sqlite3 doing
// the same inserts, one autocommit each, with the same pragmas and schema, in
// the same run. Prints rates, their ratio and the event-loop delay p99 of
// each. Figures to report, never assertions. `npm run bench:bridges`.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { monitorEventLoopDelay, performance } = require('node:perf_hooks')
const Database = require('better-sqlite3')
const { SessionStore, terminalBridge } = require('..')

const ROWS = Number(process.env.ROWS || 200000)
const IN_FLIGHT = Number(process.env.IN_FLIGHT || 1000)

// The addon's schema version 1 (src/store/schema.rs), and its pragmas.
const SCHEMA = `
CREATE TABLE sessions (key INTEGER PRIMARY KEY, session_id TEXT NOT NULL UNIQUE, claude_session_id TEXT,
  agent_status TEXT NOT NULL, error_message TEXT, closed INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL, last_sequence INTEGER NOT NULL DEFAULT 0);
CREATE TABLE messages (session INTEGER NOT NULL, sequence INTEGER NOT NULL, id INTEGER NOT NULL,
  content TEXT NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY (session, sequence)) WITHOUT ROWID;
`

const line = (i) => `compiling crate ${i} of ${ROWS}: target/debug/build/some-dependency-${i}`
const content = (i) => JSON.stringify({ type: 'terminal_output', stream: 'stdout', content: line(i) })

async function measure(run) {
  const histogram = monitorEventLoopDelay({ resolution: 1 })
  histogram.enable()
  const start = performance.now()
  await run()
  const seconds = (performance.now() - start) / 1000
  histogram.disable()
  return { rate: ROWS / seconds, p99: histogram.percentile(99) / 1e6 }
}

async function addon(dir) {
  const store = SessionStore.open(path.join(dir, 'addon.db'))
  await store.createSession('bench')
  const result = await measure(async () => {
    let next = 0
    async function lane() {
      while (next < ROWS) await terminalBridge.storeStdout(store, 'bench', line(next++))
    }
    await Promise.all(Array.from({ length: IN_FLIGHT }, lane))
  })
  const session = await store.getSession('bench')
  if (session.lastSequence !== ROWS) throw new Error(`addon stored ${session.lastSequence} rows`)
  await store.close()
  return result
}

async function baseline(dir) {
  const db = new Database(path.join(dir, 'baseline.db'))
  db.pragma('journal_mode = WAL')
  db.pragma('synchronous = FULL')
  db.pragma('busy_timeout = 10000')
  db.exec(SCHEMA)
  db.prepare("INSERT INTO sessions (session_id, agent_status, created_at) VALUES ('bench', 'idle', ?)").run(Date.now())
  const insert = db.prepare('INSERT INTO messages (session, sequence, id, content, created_at) VALUES (1, ?, ?, ?, ?)')
  const result = await measure(async () => {
    // Yield to the event loop every IN_FLIGHT rows, as a host would.
    for (let i = 0; i < ROWS; i++) {
      insert.run(i + 1, i + 1, content(i), Date.now())
      if ((i + 1) % IN_FLIGHT === 0) await new Promise(setImmediate)
    }
  })
  db.close()
  return result
}

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'eren-bench-'))
  try {
    const ours = await addon(dir)
    const theirs = await baseline(dir)
    const fmt = (n) => Math.round(n).toLocaleString('en-US')
    console.log(`rows: ${ROWS}, in flight: ${IN_FLIGHT}, pragmas: WAL, synchronous=FULL`)
    console.log(`addon storeStdout:            ${fmt(ours.rate)} rows/s, event-loop p99 ${ours.p99.toFixed(2)} ms`)
    console.log(`better-sqlite3 autocommit:    ${fmt(theirs.rate)} rows/s, event-loop p99 ${theirs.p99.toFixed(2)} ms`)
    console.log(`ratio addon / better-sqlite3: ${(ours.rate / theirs.rate).toFixed(1)}x`)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
