#!/usr/bin/env node
'use strict'
// Packs what a consumer installs: the main package, listing every platform
// package as an optional dependency (as `napi prepublish` would), and this
// machine's platform package carrying the built `.node`. Nothing in the repo
// is modified: both are staged in temporary directories.
//
//   node npm/pack.js <output-dir>   prints {"main": ..., "platform": ...}
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { execFileSync } = require('node:child_process')

const ROOT = path.resolve(__dirname, '..')
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'))

/** The npm/ directory name for this machine, e.g. `linux-x64-gnu`. */
function platformDir() {
  const abi =
    process.platform === 'linux'
      ? process.report.getReport().header.glibcVersionRuntime
        ? '-gnu'
        : '-musl'
      : process.platform === 'win32'
        ? '-msvc'
        : ''
  return `${process.platform}-${process.arch}${abi}`
}

function npmPack(dir, out) {
  const output = execFileSync('npm', ['pack', '--json', '--pack-destination', out], { cwd: dir, encoding: 'utf8' })
  return path.join(out, JSON.parse(output)[0].filename)
}

function stage() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'eren-pack-'))
}

function packPlatform(out) {
  const dir = platformDir()
  const source = path.join(ROOT, 'npm', dir)
  if (!fs.existsSync(source)) throw new Error(`no npm/${dir} package for this machine`)
  const platformPkg = JSON.parse(fs.readFileSync(path.join(source, 'package.json'), 'utf8'))
  const binary = path.join(ROOT, platformPkg.main)
  if (!fs.existsSync(binary)) throw new Error(`${platformPkg.main} is not built; run npm run build`)
  const staged = stage()
  fs.cpSync(source, staged, { recursive: true })
  fs.copyFileSync(binary, path.join(staged, platformPkg.main))
  // Linux and macOS packages carry the guardian executable next to the addon.
  for (const file of platformPkg.files.filter((f) => f !== platformPkg.main)) {
    const built = path.join(ROOT, file)
    if (!fs.existsSync(built)) throw new Error(`${file} is not built; run npm run build`)
    fs.copyFileSync(built, path.join(staged, file))
    fs.chmodSync(path.join(staged, file), 0o755)
  }
  fs.copyFileSync(path.join(ROOT, 'LICENSE'), path.join(staged, 'LICENSE'))
  return npmPack(staged, out)
}

function packMain(out) {
  const staged = stage()
  for (const file of [...pkg.files, 'README.md', 'LICENSE']) {
    fs.cpSync(path.join(ROOT, file), path.join(staged, file), { recursive: true })
  }
  const manifest = { ...pkg, optionalDependencies: {} }
  delete manifest.devDependencies
  delete manifest.scripts
  delete manifest.allowScripts
  delete manifest.jest
  for (const dir of fs.readdirSync(path.join(ROOT, 'npm'))) {
    const file = path.join(ROOT, 'npm', dir, 'package.json')
    if (fs.existsSync(file)) manifest.optionalDependencies[JSON.parse(fs.readFileSync(file, 'utf8')).name] = pkg.version
  }
  fs.writeFileSync(path.join(staged, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`)
  return npmPack(staged, out)
}

if (require.main === module) {
  const out = path.resolve(process.argv[2] || '.')
  fs.mkdirSync(out, { recursive: true })
  console.log(JSON.stringify({ main: packMain(out), platform: packPlatform(out) }))
}

module.exports = { packMain, packPlatform, platformDir }
