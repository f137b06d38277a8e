'use strict'
// One host of bench/postgres.js: connects, says "ready", waits for a line on
// stdin, then appends ROWS rows to each of its sessions (one lane per
// session, each awaiting its append before the next) and prints its
// latencies (ms) as JSON. `ours` goes through terminalBridge on
// SessionStore.connect; `pg` does one INSERT per row through a pg Pool.
const { SessionStore, terminalBridge } = require('..')

const [mode, url, host, sessionCount, rows] = process.argv.slice(2)
const SESSIONS = Array.from({ length: Number(sessionCount) }, (_, i) => `s${i}`)
const ROWS = Number(rows)
const line = (i) => `host ${host} compiling crate ${i}: target/debug/build/some-dependency-${i}`

async function main() {
  let append
  let done
  if (mode === 'ours') {
    const store = await SessionStore.connect(url)
    append = (session, i) => terminalBridge.storeStdout(store, session, line(i))
    done = () => store.close()
  } else {
    const { Pool } = require('pg')
    const pool = new Pool({ connectionString: url, max: 10 })
    const content = (i) => JSON.stringify({ type: 'terminal_output', stream: 'stdout', content: line(i) })
    append = (session, i) =>
      pool.query('INSERT INTO bench_rows (session, content, created_at) VALUES ($1, $2, $3)', [
        session,
        content(i),
        Date.now(),
      ])
    await pool.query('SELECT 1')
    done = () => pool.end()
  }
  process.stdout.write('ready\n')
  await new Promise((resolve) => process.stdin.once('data', resolve))
  const latencies = []
  await Promise.all(
    SESSIONS.map(async (session) => {
      for (let i = 0; i < ROWS; i++) {
        const start = performance.now()
        await append(session, i)
        latencies.push(performance.now() - start)
      }
    }),
  )
  await done()
  process.stdout.write(`${JSON.stringify(latencies)}\n`)
  process.exit(0)
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
