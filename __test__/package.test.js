'use strict'
// Installs the package the way a consumer gets it: the packed main package
// and this machine's platform package, into an empty project away from the
// repo, with install scripts disabled. Then uses it.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { execFileSync } = require('node:child_process')
const { packMain, packPlatform, platformDir } = require('../npm/pack')
const { SETSID, runNode } = require('./helpers')

let project
let tarballs

beforeAll(() => {
  project = fs.mkdtempSync(path.join(os.tmpdir(), 'eren-consumer-'))
  const out = path.join(project, 'tarballs')
  fs.mkdirSync(out)
  tarballs = { main: packMain(out), platform: packPlatform(out) }
  const app = path.join(project, 'app')
  fs.mkdirSync(app)
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'consumer', private: true }))
  execFileSync('npm', ['install', '--ignore-scripts', '--no-audit', '--no-fund', tarballs.main, tarballs.platform], {
    cwd: app,
    stdio: 'pipe',
  })
}, 120000)

afterAll(() => fs.rmSync(project, { recursive: true, force: true }))

const app = () => path.join(project, 'app')

test('the main package lists every platform package as an optional dependency and ships no .node', () => {
  const manifest = JSON.parse(fs.readFileSync(path.join(app(), 'node_modules', 'eren-machines', 'package.json')))
  const platforms = fs.readdirSync(path.join(__dirname, '..', 'npm')).filter((d) => !d.endsWith('.js'))
  expect(Object.keys(manifest.optionalDependencies).sort()).toEqual(platforms.map((d) => `eren-machines-${d}`).sort())
  expect(manifest.scripts).toBeUndefined()
  const shipped = fs.readdirSync(path.join(app(), 'node_modules', 'eren-machines'))
  expect(shipped.filter((f) => f.endsWith('.node'))).toEqual([])
})

test('the platform package ships the guardian executable next to the addon', () => {
  const dir = path.join(app(), 'node_modules', `eren-machines-${platformDir()}`)
  const guardian = path.join(dir, 'eren-machines-guardian')
  expect(fs.statSync(guardian).mode & 0o111).not.toBe(0)
})

test('both packages ship the MIT license text', () => {
  for (const dir of ['eren-machines', `eren-machines-${platformDir()}`]) {
    const license = fs.readFileSync(path.join(app(), 'node_modules', dir, 'LICENSE'), 'utf8')
    expect(license).toMatch(/^MIT License/)
  }
})

test('a consumer requires the package and does a register, store and spawn round trip', async () => {
  const script = path.join(app(), 'round-trip.js')
  fs.writeFileSync(
    script,
    `
const { ProcessRegistry, SessionStore, spawnTerminal, terminalBridge } = require('eren-machines')
;(async () => {
  const registry = new ProcessRegistry()
  const handle = registry.register('probe')
  registry.stop('probe')
  const store = SessionStore.inMemory()
  const id = await store.createSession()
  await terminalBridge.storeStdout(store, id, 'stored')
  const run = await spawnTerminal({ store, registry, sessionId: id, command: 'echo', args: ['spawned'], env: { EREN_TEST_CHILD: '1' } })
  const result = await run.exited
  const contents = (await store.messages(id)).map((m) => JSON.parse(m.content).content ?? null)
  // The guardian shipped next to the addon ends what a run left behind.
  const other = await store.createSession()
  const left = await spawnTerminal({ store, registry, sessionId: other, command: 'sh', args: ['-c', ${JSON.stringify(`${SETSID} sleep 60 & echo $!`)}], env: { EREN_TEST_CHILD: '1' } })
  await left.exited
  const escapee = JSON.parse((await store.messages(other))[0].content).content
  // Reaped at once on Linux (the guardian is its subreaper), soon after by launchd on macOS.
  const running = (pid) => { try { return process.kill(pid, 0) } catch { return false } }
  for (let i = 0; i < 200 && running(Number(escapee)); i++) await new Promise((r) => setTimeout(r, 10))
  const escapeeGone = !running(Number(escapee))
  console.log(JSON.stringify({ stopped: handle.stopped, exitCode: result.exitCode, contents, escapeeGone, from: require.resolve('eren-machines-${platformDir()}') }))
})()
`,
  )
  const result = await runNode(script, [], { cwd: app() })
  expect(result.stderr).toBe('')
  const report = JSON.parse(result.stdout)
  expect(report).toMatchObject({ stopped: true, exitCode: 0, contents: ['stored', 'spawned', null], escapeeGone: true })
  expect(report.from.startsWith(app())).toBe(true)
})

test('the installed bin runs `eren-machines run -- echo hi`', async () => {
  const bin = path.join(app(), 'node_modules', '.bin', 'eren-machines')
  const result = await runNode(bin, ['run', '--', 'echo', 'hi'], {
    cwd: app(),
    env: { ...process.env, EREN_TEST_CHILD: '1', EREN_MACHINES_DB: path.join(project, 'cli.db') },
  })
  expect(result.code).toBe(0)
  expect(result.stdout).toBe('hi\n')
})
