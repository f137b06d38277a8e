'use strict'
// Live latency: a program prints a line 10 times a second, each stamped
// with the monotonic clock (shared by every process on the machine); how
// long until the host sees it: through run.onData (the bytes as read),
// through onMessage (after the commit), and through child_process's 'data'
// event as the baseline, in the same run. Figures to report, never
// assertions. `npm run bench:live`.
const { spawn } = require('node:child_process')
const { runBench } = require('./common')
const { ProcessRegistry, SessionStore, spawnTerminal } = require('..')

const LINES = Number(process.env.LINES || 50)
const PRINTER = `
let n = 0
const timer = setInterval(() => {
  process.stdout.write(process.hrtime.bigint() + '\\n')
  if (++n === ${LINES}) clearInterval(timer)
}, 100)
`

/** Milliseconds from each stamp in `text` to `now`. */
const latencies = (text, now) =>
  text
    .split('\n')
    .filter(Boolean)
    .map((stamp) => Number(now - BigInt(stamp)) / 1e6)

function percentiles(samples) {
  const sorted = [...samples].sort((a, b) => a - b)
  const at = (p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]
  return `p50 ${at(50).toFixed(3)} ms, p99 ${at(99).toFixed(3)} ms`
}

async function ours() {
  const store = SessionStore.inMemory()
  const sessionId = await store.createSession()
  const onData = []
  const onMessage = []
  const run = await spawnTerminal({
    store,
    registry: new ProcessRegistry(),
    sessionId,
    command: process.execPath,
    args: ['-e', PRINTER],
    onMessage: (m) => onMessage.push(...latencies(JSON.parse(m.content).content ?? '', process.hrtime.bigint())),
  })
  run.onData((chunk) => onData.push(...latencies(String(chunk), process.hrtime.bigint())))
  await run.exited
  // The first line may come before onData: it is replayed, not live.
  return { onData: onData.slice(1), onMessage: onMessage.slice(1) }
}

async function childProcess() {
  const samples = []
  const child = spawn(process.execPath, ['-e', PRINTER], { stdio: ['ignore', 'pipe', 'inherit'] })
  child.stdout.on('data', (chunk) => samples.push(...latencies(String(chunk), process.hrtime.bigint())))
  await new Promise((resolve) => child.on('close', resolve))
  return samples.slice(1)
}

async function main() {
  console.log(`${LINES} lines at 10 lines/s, print to host:`)
  const base = await childProcess()
  const mine = await ours()
  console.log(`  child_process 'data':     ${percentiles(base)}`)
  console.log(`  eren-machines onData:     ${percentiles(mine.onData)}`)
  console.log(`  eren-machines onMessage:  ${percentiles(mine.onMessage)}`)
}

runBench(main)
