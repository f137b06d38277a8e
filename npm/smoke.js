#!/usr/bin/env node
'use strict'
// A smoke test of the addon and guardian just built, run by release.yml on
// each platform before its package is packed: a run is stored, and what it
// leaves behind in a session of its own dies with it (the guardian's job).
// Exits non-zero, saying why, when either fails.
//
//   node npm/smoke.js
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { ProcessRegistry, SessionStore, spawnTerminal } = require('..')

// macOS has no setsid(1).
const SETSID = process.platform === 'darwin' ? "perl -MPOSIX -e 'POSIX::setsid(); exec @ARGV'" : 'setsid'

function running(pid) {
  try {
    return process.kill(pid, 0)
  } catch {
    return false
  }
}

async function main() {
  const store = SessionStore.inMemory()
  const registry = new ProcessRegistry()
  const id = await store.createSession()
  // The escapee says its pid once it has left the run's session, through a
  // fifo the program waits on, so the program ends only after the escape.
  const fifo = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'eren-smoke-')), 'escaped')
  const script = `mkfifo ${fifo}; ${SETSID} sh -c 'echo $$ > ${fifo}; exec sleep 60' & read pid < ${fifo}; echo smoke; echo $pid`
  const run = await spawnTerminal({ store, registry, sessionId: id, command: 'sh', args: ['-c', script] })
  const result = await run.exited
  const printed = (await store.messages(id)).map((m) => JSON.parse(m.content).content).filter(Boolean)
  if (result.exitCode !== 0 || printed[0] !== 'smoke')
    throw new Error(`the run was not stored: ${JSON.stringify({ result, printed })}`)
  const escapee = Number(printed[1])
  // Reaped by the guardian on Linux, by launchd soon after on macOS.
  for (let i = 0; i < 200 && running(escapee); i++) await new Promise((resolve) => setTimeout(resolve, 10))
  if (running(escapee)) {
    process.kill(escapee, 'SIGKILL')
    throw new Error(`the run's escapee ${escapee} outlived it: is the guardian next to the addon?`)
  }
  fs.rmSync(path.dirname(fifo), { recursive: true })
  console.log(`smoke: ${process.platform}-${process.arch} ok`)
}

main().catch((error) => {
  console.error(`smoke: ${error.stack}`)
  process.exit(1)
})
