'use strict'
// A program printing MB megabytes of text in a pseudo-terminal, read by this
// package (storing every byte in a file store) against node-pty
// (@lydell/node-pty, prebuilt) only reading it, in the same run. Prints MB/s,
// the ratio and the event-loop delay p99 of each, and checks that the bytes
// stored equal the bytes printed (node-pty's count is shown beside them). Figures to report, never assertions.
// `npm run bench:pty`.
const path = require('node:path')
const pty = require('@lydell/node-pty')
const { fmt, inScratchDir, measure, runBench } = require('./common')
const { ProcessRegistry, SessionStore, spawnTerminal } = require('..')

const MB = Number(process.env.MB || 200)
const LINE = 'the quick brown fox jumps over the lazy dog 0123456789 ABCDEFGHIJKLMNOPQRSTUVWXYZ'
// `yes` is as fast a printer as there is; the terminal turns \n into \r\n.
const COMMAND = ['sh', ['-c', `yes '${LINE}' | head -c ${MB * 1000 * 1000}`]]
const PRINTED = (() => {
  const bytes = MB * 1000 * 1000
  const newlines = Math.floor(bytes / (LINE.length + 1))
  return bytes + newlines
})()
const SIZE = { cols: 120, rows: 40 }

async function nodePty() {
  let received = 0
  const result = await measure(PRINTED, async () => {
    await new Promise((resolve) => {
      const child = pty.spawn(COMMAND[0], COMMAND[1], { ...SIZE, name: 'xterm-256color', encoding: null })
      child.onData((data) => (received += data.length))
      child.onExit(resolve)
    })
  })
  return { ...result, bytes: received }
}

async function ours(dir) {
  const store = SessionStore.open(path.join(dir, 'pty.db'), { durability: 'normal' })
  await store.createSession('pty')
  const result = await measure(PRINTED, async () => {
    const run = await spawnTerminal({
      store,
      registry: new ProcessRegistry(),
      sessionId: 'pty',
      command: COMMAND[0],
      args: COMMAND[1],
      pty: SIZE,
    })
    await run.exited
  })
  let bytes = 0
  let chunks = 0
  for (let after = 0; ; ) {
    const page = await store.messages('pty', { afterSequence: after, limit: 1000 })
    if (page.length === 0) break
    for (const m of page) {
      const event = JSON.parse(m.content)
      if (event.type === 'terminal_output') {
        bytes += Buffer.byteLength(event.content)
        chunks++
      }
    }
    after = page[page.length - 1].sequenceNumber
  }
  await store.close()
  return { ...result, bytes, chunks }
}

runBench(async () => {
  console.log(
    `${MB} MB of text printed in a ${SIZE.cols}x${SIZE.rows} pseudo-terminal (${fmt(PRINTED)} bytes with CRs)`,
  )
  const baseline = await nodePty()
  const mbps = (r) => (r.rate / 1e6).toFixed(1)
  console.log(
    `node-pty, reading only:     ${mbps(baseline)} MB/s  event-loop p99 ${baseline.p99.toFixed(2)} ms  ${fmt(baseline.bytes)} bytes`,
  )
  const result = await inScratchDir(ours)
  console.log(
    `eren-machines, storing all: ${mbps(result)} MB/s  event-loop p99 ${result.p99.toFixed(2)} ms  ${fmt(result.bytes)} bytes in ${fmt(result.chunks)} chunks`,
  )
  console.log(`ratio: ${(result.rate / baseline.rate).toFixed(2)}x node-pty's throughput`)
  const same = result.bytes === PRINTED
  console.log(`stored bytes ${same ? 'equal' : 'DIFFER FROM'} the printed bytes`)
  if (baseline.bytes !== PRINTED) {
    console.log(`node-pty saw ${fmt(PRINTED - baseline.bytes)} bytes fewer before its exit event`)
  }
  if (!same) process.exitCode = 1
})
