'use strict'
// The runner's OS backends (crates/eren-machines-core/src/sys/):
// EREN_MACHINES_BACKEND=posix selects the portable POSIX one, the base of
// macOS, which each host process reads once at its first run.
const path = require('node:path')
const { runNode, settleGone, withGuardian } = require('./helpers')

const HOST = path.join(__dirname, 'fixtures', 'backend-host.js')

async function report(backend) {
  const env = { ...process.env, EREN_TEST_CHILD: '1' }
  if (backend) env.EREN_MACHINES_BACKEND = backend
  else delete env.EREN_MACHINES_BACKEND
  const ran = await runNode(HOST, [], { env })
  expect(ran.stderr).toBe('')
  expect(ran.code).toBe(0)
  return JSON.parse(ran.stdout)
}

/** What both backends give a host alike. */
async function expectTheSameRuns(seen) {
  expect(seen.pipes).toEqual({ lines: ['out', 'err'], result: { exitCode: 3, signal: null, stopped: false } })
  // A session leader on its terminal, at the size asked for.
  expect(seen.terminal.text).toBe('30 100\r\nleader\r\n')
  expect(seen.terminal.result.exitCode).toBe(0)
  // The stop reached the group: the shell ignored SIGTERM and got SIGKILL
  // after the grace, and the grandchild in its group is gone.
  expect(seen.stopped.result).toEqual({ exitCode: null, signal: 'SIGKILL', stopped: true })
  expect(await settleGone(seen.stopped.grandchild)).toBe(true)
}

describe('runner backends', () => {
  test('EREN_MACHINES_BACKEND=posix: runs are the host’s own children in their own group, and pipes, terminals and stops work', async () => {
    const seen = await report('posix')
    expect(seen.parent).toBe(seen.host)
    await expectTheSameRuns(seen)
  })

  test('by default on Linux each run starts under its guardian, with the same results', async () => {
    const seen = await report(null)
    expect(seen.parent).not.toBe(seen.host)
    await expectTheSameRuns(seen)
  })
})

withGuardian(
  'a guardian that cannot be started is named in SPAWN_FAILED, not taken for the user’s command',
  async () => {
    const script = `
    const { ProcessRegistry, SessionStore, spawnTerminal } = require('.')
    const store = SessionStore.inMemory()
    store.createSession('g').then(() =>
      spawnTerminal({ store, registry: new ProcessRegistry(), sessionId: 'g', command: 'sh', args: ['-c', 'true'] }),
    ).then(
      () => console.log(JSON.stringify({ started: true })),
      (error) => console.log(JSON.stringify({ code: error.code, message: error.message })),
    )`
    const missing = '/nonexistent/eren-machines-guardian'
    const env = { ...process.env, EREN_TEST_CHILD: '1', EREN_MACHINES_GUARDIAN: missing }
    delete env.EREN_MACHINES_BACKEND
    const ran = await runNode('-e', [script], { env })
    const answer = JSON.parse(ran.stdout)
    expect(answer.code).toBe('SPAWN_FAILED')
    expect(answer.message).toContain(`the guardian ${missing} could not be started`)
    expect(answer.message).toContain('EREN_MACHINES_GUARDIAN')
    expect(answer.message).not.toContain('was not found on PATH')
  },
)
