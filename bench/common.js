'use strict'
// What the benchmarks share: the addon's schema and pragmas for the
// better-sqlite3 baselines, timing with event-loop delay, and a scratch dir.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { monitorEventLoopDelay, performance } = require('node:perf_hooks')
const Database = require('better-sqlite3')

// The addon's schema (src/store/schema.rs, versions 1 to 3).
const SCHEMA = `
CREATE TABLE sessions (key INTEGER PRIMARY KEY, session_id TEXT NOT NULL UNIQUE, claude_session_id TEXT,
  agent_status TEXT NOT NULL, error_message TEXT, closed INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL, last_sequence INTEGER NOT NULL DEFAULT 0, host TEXT);
CREATE TABLE messages (session INTEGER NOT NULL, sequence INTEGER NOT NULL, id INTEGER NOT NULL,
  content TEXT NOT NULL, created_at INTEGER NOT NULL, parts INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (session, sequence)) WITHOUT ROWID;
`

/** A better-sqlite3 database with the addon's pragmas, schema and one session (key 1). */
function baselineDatabase(file, synchronous = 'FULL') {
  const db = new Database(file)
  db.pragma('journal_mode = WAL')
  db.pragma(`synchronous = ${synchronous}`)
  db.pragma('busy_timeout = 10000')
  db.exec(SCHEMA)
  db.prepare("INSERT INTO sessions (session_id, agent_status, created_at) VALUES ('bench', 'idle', ?)").run(Date.now())
  return db
}

/** Runs `run`, returning items/s for `count` items and the event-loop delay p99 in ms. */
async function measure(count, run) {
  const histogram = monitorEventLoopDelay({ resolution: 1 })
  histogram.enable()
  const start = performance.now()
  await run()
  const seconds = (performance.now() - start) / 1000
  histogram.disable()
  return { rate: count / seconds, p99: histogram.percentile(99) / 1e6 }
}

const fmt = (n) => Math.round(n).toLocaleString('en-US')

/** Calls `body(dir)` with a fresh scratch directory, removed afterwards. */
async function inScratchDir(body) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'eren-bench-'))
  try {
    return await body(dir)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

/** Runs a bench's main, exiting non-zero on failure. */
function runBench(main) {
  main().catch((e) => {
    console.error(e)
    process.exit(1)
  })
}

module.exports = { baselineDatabase, measure, fmt, inScratchDir, runBench }
