'use strict'
// Many runs at once: N concurrent `sh -c 'echo up; sleep 4; echo down'`
// through spawnTerminal into an in-memory store, against
// child_process.spawn of the same commands (stdout read) in the same
// process run, each side measured in a fresh Node process. Prints, for N =
// 1, 100 and 1,000: the time until every run has started (spawn latency),
// the host's threads and RSS once all are running, and the time until all
// have ended. Figures to report, never assertions. `npm run bench:spawn`.
const { execFileSync } = require('node:child_process')
const { performance } = require('node:perf_hooks')
const fs = require('node:fs')
const { runBench } = require('./common')

const COMMAND = ['sh', ['-c', 'echo up; sleep 4; echo down']]
const SIZES = (process.env.SPAWN_SIZES || '1,100,1000').split(',').map(Number)

function threadsAndRss() {
  const status = fs.readFileSync('/proc/self/status', 'utf8')
  const field = (name) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)[1])
  return { threads: field('Threads'), rssMb: Math.round(field('VmRSS') / 1024) }
}

async function addon(count) {
  const { ProcessRegistry, SessionStore, spawnTerminal } = require('..')
  const store = SessionStore.inMemory()
  const registry = new ProcessRegistry()
  for (let i = 0; i < count; i++) await store.createSession(`s${i}`)
  const started = performance.now()
  const runs = await Promise.all(
    Array.from({ length: count }, (_, i) =>
      spawnTerminal({ store, registry, sessionId: `s${i}`, command: COMMAND[0], args: COMMAND[1] }),
    ),
  )
  const spawnMs = performance.now() - started
  const usage = threadsAndRss()
  await Promise.all(runs.map((r) => r.exited))
  return { spawnMs, ...usage, totalMs: performance.now() - started }
}

async function childProcess(count) {
  const { spawn } = require('node:child_process')
  const started = performance.now()
  const children = Array.from({ length: count }, () => {
    const child = spawn(COMMAND[0], COMMAND[1], { stdio: ['ignore', 'pipe', 'pipe'] })
    child.stdout.on('data', () => {})
    child.stderr.on('data', () => {})
    return child
  })
  await Promise.all(children.map((c) => new Promise((resolve) => c.once('spawn', resolve))))
  const spawnMs = performance.now() - started
  const usage = threadsAndRss()
  await Promise.all(children.map((c) => new Promise((resolve) => c.once('close', resolve))))
  return { spawnMs, ...usage, totalMs: performance.now() - started }
}

async function main() {
  const [side, count] = process.argv.slice(2)
  if (side) {
    const result = await (side === 'addon' ? addon : childProcess)(Number(count))
    console.log(JSON.stringify(result))
    process.exit(0)
  }
  console.log('concurrent runs of sh -c "echo up; sleep 4; echo down"; each side in a fresh process')
  for (const count of SIZES) {
    const measure = (which) =>
      JSON.parse(execFileSync(process.execPath, [__filename, which, String(count)], { encoding: 'utf8' }))
    const base = measure('child_process')
    const ours = measure('addon')
    const f = (r) =>
      `spawn ${r.spawnMs.toFixed(0)} ms, ${r.threads} threads, ${r.rssMb} MB RSS, all ended in ${r.totalMs.toFixed(0)} ms`
    console.log(`N=${count}`)
    console.log(`  child_process: ${f(base)}`)
    console.log(`  addon:         ${f(ours)}`)
    console.log(`  spawn latency ratio (addon / child_process): ${(ours.spawnMs / base.spawnMs).toFixed(2)}x`)
  }
}

runBench(main)
