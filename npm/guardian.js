#!/usr/bin/env node
'use strict'
// Builds the guardian executable (crates/eren-machines-guardian: the small
// process that stands between the host and each run on Linux and macOS, so
// nothing a run starts outlives it) and puts it next to the addon, where
// the addon looks for it. Windows needs none (a job object per run).
//
//   node npm/guardian.js [--release] [--target TRIPLE]
const fs = require('node:fs')
const path = require('node:path')
const { execFileSync } = require('node:child_process')

const ROOT = path.resolve(__dirname, '..')
const NAME = 'eren-machines-guardian'

function main(argv) {
  const release = argv.includes('--release')
  const targetAt = argv.indexOf('--target')
  const target = targetAt >= 0 ? argv[targetAt + 1] : undefined
  const guarded = target ? /-linux-|-apple-darwin/.test(target) : ['linux', 'darwin'].includes(process.platform)
  if (!guarded) return
  const cargoArgs = ['build', '-p', NAME, '--bin', NAME]
  if (release) cargoArgs.push('--release')
  if (target) cargoArgs.push('--target', target)
  execFileSync('cargo', cargoArgs, { cwd: ROOT, stdio: 'inherit' })
  const built = path.join(ROOT, 'target', ...(target ? [target] : []), release ? 'release' : 'debug', NAME)
  const placed = path.join(ROOT, NAME)
  fs.copyFileSync(built, placed)
  fs.chmodSync(placed, 0o755)
}

main(process.argv.slice(2))
