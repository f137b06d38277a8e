'use strict'
// terminalBridge.storeStdout through the addon against better-sqlite3 doing
// the same inserts, one autocommit each, with the same pragmas and schema, in
// the same run, at both durabilities: the addon's 'full' against
// synchronous=FULL and its 'normal' against synchronous=NORMAL. Prints
// rates, their ratio and the event-loop delay p99 of each. Figures to
// report, never assertions. `npm run bench:bridges`.
const path = require('node:path')
const { baselineDatabase, measure, fmt, inScratchDir, runBench } = require('./common')
const { SessionStore, terminalBridge } = require('..')

const ROWS = Number(process.env.ROWS || 200000)
const IN_FLIGHT = Number(process.env.IN_FLIGHT || 1000)

const line = (i) => `compiling crate ${i} of ${ROWS}: target/debug/build/some-dependency-${i}`
const content = (i) => JSON.stringify({ type: 'terminal_output', stream: 'stdout', content: line(i) })

async function addon(dir, durability) {
  const store = SessionStore.open(path.join(dir, `addon-${durability}.db`), { durability })
  await store.createSession('bench')
  const result = await measure(ROWS, async () => {
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

async function baseline(dir, synchronous) {
  const db = baselineDatabase(path.join(dir, `baseline-${synchronous}.db`), synchronous)
  const insert = db.prepare('INSERT INTO messages (session, sequence, id, content, created_at) VALUES (1, ?, ?, ?, ?)')
  const result = await measure(ROWS, async () => {
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
  await inScratchDir(async (dir) => {
    console.log(`rows: ${ROWS}, in flight: ${IN_FLIGHT}, journal: WAL`)
    for (const [durability, synchronous] of [
      ['full', 'FULL'],
      ['normal', 'NORMAL'],
    ]) {
      const ours = await addon(dir, durability)
      const theirs = await baseline(dir, synchronous)
      console.log(`durability '${durability}' against synchronous=${synchronous}:`)
      console.log(`  addon storeStdout:            ${fmt(ours.rate)} rows/s, event-loop p99 ${ours.p99.toFixed(2)} ms`)
      console.log(
        `  better-sqlite3 autocommit:    ${fmt(theirs.rate)} rows/s, event-loop p99 ${theirs.p99.toFixed(2)} ms`,
      )
      console.log(`  ratio addon / better-sqlite3: ${(ours.rate / theirs.rate).toFixed(1)}x`)
    }
  })
}

runBench(main)
