'use strict'
// Cross-stream order: a Python program writes stdout and stderr lines in
// turn, 0.5 ms apart (10 pairs), RUNS times; how many runs come out in an
// order other than the one written, for this package (what it stored)
// against child_process (the order its 'data' events arrived in), in the
// same run. Once with the writer sleeping between lines, and once with it
// busy-waiting, which takes a whole core away from the readers; and with
// stdio 'merged' (one pipe), which keeps the written order by construction.
// Figures to report, never assertions. `npm run bench:order`.
const { spawn } = require('node:child_process')
const { runBench } = require('./common')
const { ProcessRegistry, SessionStore, spawnTerminal } = require('..')

const RUNS = Number(process.env.RUNS || 50)
const PAIRS = 10
const WRITTEN = Array.from({ length: PAIRS }, (_, i) => [`out${i}`, `err${i}`]).flat()

const program = (busy) => `
import sys, time
def pause(seconds):
    if ${busy ? 'True' : 'False'}:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end: pass
    else:
        time.sleep(seconds)
for i in range(${PAIRS}):
    sys.stdout.write(f"out{i}\\n"); sys.stdout.flush(); pause(0.0005)
    sys.stderr.write(f"err{i}\\n"); sys.stderr.flush(); pause(0.0005)
`

async function ours(busy, stdio = 'separate') {
  const store = SessionStore.inMemory()
  const registry = new ProcessRegistry()
  let wrong = 0
  for (let run = 0; run < RUNS; run++) {
    const sessionId = `order-${run}`
    await store.createSession(sessionId)
    const started = await spawnTerminal({
      store,
      registry,
      sessionId,
      command: 'python3',
      args: ['-c', program(busy)],
      stdio,
    })
    await started.exited
    const lines = (await store.messages(sessionId))
      .map((m) => JSON.parse(m.content))
      .filter((event) => event.type === 'terminal_output')
      .map((event) => event.content)
    if (lines.join() !== WRITTEN.join()) wrong++
  }
  return wrong
}

async function childProcess(busy) {
  let wrong = 0
  for (let run = 0; run < RUNS; run++) {
    const lines = []
    const child = spawn('python3', ['-c', program(busy)], { stdio: ['ignore', 'pipe', 'pipe'] })
    for (const stream of [child.stdout, child.stderr]) {
      stream.setEncoding('utf8')
      stream.on('data', (text) => lines.push(...text.split('\n').filter(Boolean)))
    }
    await new Promise((resolve) => child.on('close', resolve))
    if (lines.join() !== WRITTEN.join()) wrong++
  }
  return wrong
}

async function main() {
  console.log(`${RUNS} runs of ${PAIRS} stdout/stderr line pairs written 0.5 ms apart; runs out of order:`)
  for (const busy of [false, true]) {
    const base = await childProcess(busy)
    const mine = await ours(busy)
    const merged = await ours(busy, 'merged')
    console.log(
      `  writer ${busy ? 'busy-waiting' : 'sleeping'}: eren-machines ${mine}/${RUNS}, with stdio 'merged' ${merged}/${RUNS}, child_process ${base}/${RUNS}`,
    )
  }
}

runBench(main)
