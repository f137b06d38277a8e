'use strict'
// The PostgreSQL store across hosts: separate processes on one database, a
// server restart mid-ingest, live subscriptions across hosts, and the runner
// and the CLI on a server. The backend-generic suites are in store.test.js.
const { spawn, execFileSync } = require('node:child_process')
const path = require('node:path')
const { Client } = require('pg')
const { ProcessRegistry, SessionStore, spawnTerminal, terminalBridge } = require('..')
const { codeOf, deferred, postgresSchemaUrl, runNode, withGuardian } = require('./helpers')

const HOST = path.join(__dirname, 'fixtures', 'pg-host.js')
const CLI = path.join(__dirname, '..', 'bin', 'eren-machines.js')
const MARK = { ...process.env, EREN_TEST_CHILD: '1' }

/** Parses a host's report into acknowledged appends and rejection codes. */
function report(stdout) {
  const acked = []
  const failed = []
  for (const line of stdout.split('\n')) {
    const [kind, ...rest] = line.split(' ')
    if (kind === 'ok') {
      const [session, sequence, id, content] = rest
      acked.push({ session, sequence: Number(sequence), id: Number(id), content })
    } else if (kind === 'fail') {
      failed.push(rest[0])
    }
  }
  return { acked, failed }
}

/** Every stored message of a session, straight from the server. */
async function stored(url, sessionId) {
  const schema = decodeURIComponent(url).match(/search_path=(\w+)/)[1]
  const client = new Client({ connectionString: process.env.EREN_TEST_POSTGRES })
  await client.connect()
  try {
    const { rows } = await client.query(
      `SELECT m.sequence, m.id, m.content FROM ${schema}.eren_messages m
         JOIN ${schema}.eren_sessions s ON s.key = m.session
        WHERE s.session_id = $1 ORDER BY m.sequence`,
      [sessionId],
    )
    return rows.map((r) => ({ sequence: Number(r.sequence), id: Number(r.id), content: JSON.parse(r.content).content }))
  } finally {
    await client.end()
  }
}

const range = (n) => Array.from({ length: n }, (_, i) => i + 1)

/** For tests that read /proc. */
const onLinux = process.platform === 'linux' ? test : test.skip

describe('several hosts on one PostgreSQL database', () => {
  test('4 host processes appending to the same sessions at once: contiguous sequences, unique ids, nothing lost', async () => {
    const url = await postgresSchemaUrl()
    const setup = await SessionStore.connect(url)
    const sessions = ['a', 'b', 'c']
    for (const id of sessions) await setup.createSession(id)
    await setup.close()
    const hosts = await Promise.all(
      Array.from({ length: 4 }, () => runNode(HOST, [url, '600', ...sessions], { env: MARK })),
    )
    const acked = []
    for (const host of hosts) {
      expect(host.stderr).toBe('')
      expect(host.code).toBe(0)
      const { acked: mine, failed } = report(host.stdout)
      expect(failed).toEqual([])
      expect(mine).toHaveLength(600)
      acked.push(...mine)
    }
    expect(new Set(acked.map((m) => m.id)).size).toBe(2400)
    for (const id of sessions) {
      const rows = await stored(url, id)
      expect(rows.map((r) => r.sequence)).toEqual(range(800))
      // Each acknowledged append is stored as it was answered.
      const bySequence = new Map(rows.map((r) => [r.sequence, r]))
      for (const m of acked.filter((m) => m.session === id)) {
        expect(bySequence.get(m.sequence)).toEqual({ sequence: m.sequence, id: m.id, content: m.content })
      }
    }
  })

  test('a server restart mid-ingest rejects nothing: batches in flight run again on a new connection, each message stored once', async () => {
    const ctl = process.env.EREN_TEST_POSTGRES_CTL
    expect(ctl).toBeTruthy()
    const url = await postgresSchemaUrl()
    const setup = await SessionStore.connect(url)
    await setup.createSession('r')
    await setup.close()
    const host = spawn(process.execPath, [HOST, url, '-', 'r'], { env: MARK, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    let waiter = null
    host.stdout.on('data', (d) => {
      stdout += d
      if (waiter && report(stdout).acked.length >= waiter.n) waiter.resolve()
    })
    host.stderr.on('data', (d) => (stderr += d))
    const exited = new Promise((resolve) => host.on('exit', resolve))
    const acks = (n) => {
      waiter = { n, ...deferred() }
      if (report(stdout).acked.length >= n) waiter.resolve()
      return waiter.promise
    }
    await acks(300)
    execFileSync(ctl, ['restart'], { stdio: 'ignore' })
    const before = report(stdout).acked.length
    // The store connects again by itself: appends succeed once more.
    await acks(before + 300)
    host.stdin.end()
    expect(await exited).toBe(0)
    expect(stderr).toBe('')
    const { acked, failed } = report(stdout)
    expect(failed).toEqual([])
    const rows = await stored(url, 'r')
    expect(rows.map((r) => r.sequence)).toEqual(range(rows.length))
    // Each append once: a batch whose commit got through before the
    // connection went is not run again.
    expect(rows.map((r) => r.content).sort()).toEqual(acked.map((m) => m.content).sort())
    const bySequence = new Map(rows.map((r) => [r.sequence, r]))
    for (const m of acked) {
      expect(bySequence.get(m.sequence)).toEqual({ sequence: m.sequence, id: m.id, content: m.content })
    }
  })

  test('a run across a server restart never loses a line silently: it goes on whole, or it is stopped and exited rejects with STORAGE_ERROR', async () => {
    const ctl = process.env.EREN_TEST_POSTGRES_CTL
    const url = await postgresSchemaUrl()
    const store = await SessionStore.connect(url)
    const id = await store.createSession()
    const registry = new ProcessRegistry()
    const flowing = deferred()
    const flowedOn = deferred()
    let seen = 0
    let restartedAt = null
    const run = await spawnTerminal({
      store,
      registry,
      sessionId: id,
      command: 'sh',
      args: ['-c', 'i=0; while :; do i=$((i+1)); echo "line $i"; done'],
      env: { EREN_TEST_CHILD: '1' },
      onMessage: (m) => {
        seen = m.sequenceNumber
        if (seen === 200) flowing.resolve()
        if (restartedAt !== null && seen >= restartedAt + 200) flowedOn.resolve()
      },
    })
    await flowing.promise
    execFileSync(ctl, ['restart'], { stdio: 'ignore' })
    restartedAt = seen
    const ended = run.exited.then(
      (result) => ({ result }),
      (error) => ({ error }),
    )
    // Either the restart caught a write (the run fails loudly), or the
    // store connected again between writes and the run goes on.
    let outcome = await Promise.race([ended, flowedOn.promise.then(() => null)])
    if (outcome === null) {
      registry.stop(id)
      outcome = await ended
    }
    // Stopped by the test, or by the runner because a write failed.
    if (outcome.error) {
      expect(outcome.error.code).toBe('STORAGE_ERROR')
      expect(outcome.error.message).toContain('could not be stored')
    } else {
      expect(outcome.result.stopped).toBe(true)
    }
    expect(registry.sessionIds()).toEqual([])
    // Every stored line is the program's, in order. A run that went on lost
    // none; one that failed may lack the lines of the writes that failed
    // (read straight from the server; the stored end has no line).
    const lines = (await stored(url, id)).filter((r) => r.content !== undefined)
    const numbers = lines.map((r) => Number(/^line (\d+)$/.exec(r.content)[1]))
    expect(numbers.length).toBeGreaterThanOrEqual(200)
    expect(numbers.slice(0, 200)).toEqual(range(200))
    if (outcome.error) {
      expect(numbers.every((n, i) => i === 0 || n > numbers[i - 1])).toBe(true)
    } else {
      expect(numbers).toEqual(range(numbers.length))
    }
    await store.close()
  })

  test('after a server restart, the first read and the first write of a store that sat idle succeed', async () => {
    const ctl = process.env.EREN_TEST_POSTGRES_CTL
    expect(ctl).toBeTruthy()
    const store = await SessionStore.connect(await postgresSchemaUrl())
    await store.createSession('idle')
    await terminalBridge.storeStdout(store, 'idle', 'before')
    const lastUse = Date.now()
    execFileSync(ctl, ['restart'], { stdio: 'ignore' })
    // The guarantee is for a store that sat idle (over a second) while the
    // server went away and came back.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, 1100 - (Date.now() - lastUse))))
    const after = await terminalBridge.storeStdout(store, 'idle', 'after')
    expect(after.sequenceNumber).toBe(2)
    expect((await store.messages('idle')).map((m) => JSON.parse(m.content).content)).toEqual(['before', 'after'])
    await store.close()
  })

  test('connections killed under a store in use (pg_terminate_backend): the next read and write succeed at once, on new connections', async () => {
    const store = await SessionStore.connect(await postgresSchemaUrl())
    await store.createSession('cut')
    await terminalBridge.storeStdout(store, 'cut', 'before')
    expect((await store.getSession('cut')).lastSequence).toBe(1)
    const admin = new Client({ connectionString: process.env.EREN_TEST_POSTGRES })
    await admin.connect()
    const { rows } = await admin.query(
      `SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity
        WHERE application_name = 'eren-machines pid ${process.pid}'`,
    )
    await admin.end()
    expect(rows.length).toBeGreaterThan(0)
    // Within the second after their last use: no idle check would catch it.
    expect((await store.getSession('cut')).lastSequence).toBe(1)
    expect((await terminalBridge.storeStdout(store, 'cut', 'after')).sequenceNumber).toBe(2)
    expect((await store.messages('cut')).map((m) => JSON.parse(m.content).content)).toEqual(['before', 'after'])
    await store.close()
  })

  onLinux("close() returns once the store's listener and lease threads have ended", async () => {
    // In a process of its own, so no other store's threads are counted.
    const script = `
      const fs = require('node:fs')
      const { SessionStore } = require(${JSON.stringify(path.join(__dirname, '..'))})
      const ours = () => fs.readdirSync('/proc/self/task')
        .map((t) => {
          // A thread may end between the listing and the read.
          try { return fs.readFileSync('/proc/self/task/' + t + '/comm', 'utf8').trim() } catch { return '' }
        })
        .filter((name) => name.startsWith('eren-pg-listene') || name === 'eren-pg-lease')
      SessionStore.connect(process.argv[1]).then(async (store) => {
        // A new thread names itself once it runs: wait for both names.
        for (let i = 0; i < 500 && ours().length < 2; i++) await new Promise((r) => setTimeout(r, 10))
        const open = ours()
        await store.close()
        console.log(JSON.stringify({ open, afterClose: ours() }))
      })`
    const ran = await runNode('-e', [script, await postgresSchemaUrl()])
    expect(ran.stderr).toBe('')
    const { open, afterClose } = JSON.parse(ran.stdout)
    expect(new Set(open)).toEqual(new Set(['eren-pg-listene', 'eren-pg-lease']))
    expect(afterClose).toEqual([])
  })

  test("a subscriber on one host sees another host's appends live, in order, once", async () => {
    const url = await postgresSchemaUrl()
    const store = await SessionStore.connect(url)
    await store.createSession('live')
    await terminalBridge.storeStdout(store, 'live', 'mine')
    const seen = []
    const done = deferred()
    store.subscribe(
      'live',
      (m) => {
        seen.push(m)
        if (seen.length === 501) done.resolve()
      },
      { afterSequence: 0 },
    )
    const other = await runNode(HOST, [url, '500', 'live'], { env: MARK })
    expect(other.code).toBe(0)
    await done.promise
    expect(seen.map((m) => m.sequenceNumber)).toEqual(range(501))
    expect(seen).toEqual(await store.messages('live'))
    const { acked } = report(other.stdout)
    expect(seen.slice(1).map((m) => JSON.parse(m.content).content)).toEqual(
      acked.sort((x, y) => x.sequence - y.sequence).map((m) => m.content),
    )
    await store.close()
  })

  test('sessions another host creates are listed and readable at once', async () => {
    const url = await postgresSchemaUrl()
    const mine = await SessionStore.connect(url)
    const theirs = await SessionStore.connect(url)
    await theirs.createSession('x')
    await terminalBridge.storeStdout(theirs, 'x', 'hello')
    expect((await mine.listSessions()).map((s) => s.id)).toEqual(['x'])
    expect((await mine.getSession('x')).lastSequence).toBe(1)
    expect(await codeOf(() => mine.createSession('x'))).toBe('SESSION_EXISTS')
    await Promise.all([mine.close(), theirs.close()])
  })
})

describe('connecting', () => {
  test('an unreachable server is STORAGE_ERROR, a URL that is not PostgreSQL or not a string INVALID_ARGUMENT', async () => {
    expect(await codeOf(() => SessionStore.connect('postgres://eren@127.0.0.1:1/none'))).toBe('STORAGE_ERROR')
    const error = await SessionStore.connect('mysql://me:hunter2@db/x').catch((e) => e)
    expect(error.code).toBe('INVALID_ARGUMENT')
    expect(error.message).not.toContain('hunter2')
    for (const bad of [42, undefined, null, {}, '']) {
      expect(await codeOf(() => SessionStore.connect(bad))).toBe('INVALID_ARGUMENT')
    }
  })
})

describe('a server that accepts and never answers', () => {
  test('connect rejects with STORAGE_ERROR after connect_timeout, without blocking the event loop', async () => {
    const net = require('node:net')
    const sockets = []
    const silent = net.createServer((socket) => sockets.push(socket))
    await new Promise((resolve) => silent.listen(0, '127.0.0.1', resolve))
    let turns = 0
    const ticking = setInterval(() => turns++, 10)
    const url = `postgres://eren@127.0.0.1:${silent.address().port}/x?connect_timeout=1`
    const error = await SessionStore.connect(url).catch((e) => e)
    clearInterval(ticking)
    for (const socket of sockets) socket.destroy()
    silent.close()
    expect(error.code).toBe('STORAGE_ERROR')
    expect(error.message).toContain('no answer')
    // The wait happened on a Rust thread: timers kept firing all along.
    expect(turns).toBeGreaterThan(20)
  })
})

describe('the runner and the CLI on PostgreSQL', () => {
  test('a run stores its output in a PostgreSQL session', async () => {
    const url = await postgresSchemaUrl()
    const store = await SessionStore.connect(url)
    await store.createSession('job')
    const running = await spawnTerminal({
      store,
      registry: new ProcessRegistry(),
      sessionId: 'job',
      command: 'sh',
      args: ['-c', 'echo out; sleep 0.1; echo err >&2; exit 4'],
      env: { EREN_TEST_CHILD: '1' },
    })
    const result = await running.exited
    expect(result.exitCode).toBe(4)
    const contents = (await store.messages('job')).map((m) => JSON.parse(m.content))
    expect(contents).toEqual([
      { type: 'terminal_output', stream: 'stdout', content: 'out' },
      { type: 'terminal_output', stream: 'stderr', content: 'err' },
      { type: 'terminal_finished', exit_code: 4, signal: null, stopped: false },
    ])
    await store.close()
  })

  test('eren-machines run --db URL stores the output, and log and sessions read it through $EREN_MACHINES_DB', async () => {
    const url = await postgresSchemaUrl()
    const ran = await runNode(CLI, ['run', '--db', url, '--session', 'cli', '--', 'sh', '-c', 'echo from-cli'], {
      env: MARK,
    })
    expect(ran.code).toBe(0)
    expect(ran.stdout).toBe('from-cli\n')
    const env = { ...MARK, EREN_MACHINES_DB: url }
    const log = await runNode(CLI, ['log', 'cli', '--json'], { env })
    expect(log.code).toBe(0)
    expect(
      log.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(JSON.parse(l).content)),
    ).toEqual([
      { type: 'terminal_output', stream: 'stdout', content: 'from-cli' },
      { type: 'terminal_finished', exit_code: 0, signal: null, stopped: false },
    ])
    const sessions = await runNode(CLI, ['sessions', '--json'], { env })
    expect(JSON.parse(sessions.stdout).map((s) => s.id)).toEqual(['cli'])
  })
})

test('statementTimeoutMs fails a call that a lock held elsewhere would hold, storing nothing; bad options throw', async () => {
  const url = await postgresSchemaUrl()
  const store = await SessionStore.connect(url, { statementTimeoutMs: 300 })
  const id = await store.createSession()
  const schema = decodeURIComponent(url).match(/search_path=(\w+)/)[1]
  const locker = new Client({ connectionString: process.env.EREN_TEST_POSTGRES })
  await locker.connect()
  const { rows } = await locker.query(
    "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE 'eren-machines%'",
  )
  expect(rows.map((r) => r.application_name)).toContain(`eren-machines pid ${process.pid}`)
  await locker.query('BEGIN')
  await locker.query(`LOCK TABLE ${schema}.eren_sessions IN ACCESS EXCLUSIVE MODE`)
  const refused = await terminalBridge.storeStdout(store, id, 'blocked').catch((e) => e)
  expect(refused.code).toBe('STORAGE_ERROR')
  expect(refused.message).toContain('statement timeout')
  await locker.query('ROLLBACK')
  await locker.end()
  expect((await terminalBridge.storeStdout(store, id, 'after')).sequenceNumber).toBe(1)
  await store.close()
  expect(() => SessionStore.connect(url, { statementTimeoutMs: -1 })).toThrow(
    expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
  )
})

describe('crash truth across hosts: leases', () => {
  const LEASE = { leaseMs: 1500, heartbeatMs: 200 }
  const LEASE_HOST = path.join(__dirname, 'fixtures', 'lease-host.js')

  /** Starts a lease host on `url` and waits until both its runs are in progress. */
  async function startLeaseHost(url) {
    const host = spawn(process.execPath, [LEASE_HOST, url, JSON.stringify(LEASE)], {
      env: MARK,
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    const gone = new Promise((resolve) => host.on('exit', resolve))
    await new Promise((resolve, reject) => {
      host.stdout.on('data', (d) => String(d).includes('working') && resolve())
      gone.then(() => reject(new Error('the lease host ended early')))
    })
    return { host, gone }
  }

  /** Resolves with the first `run_interrupted` message stored in `sessionId`. */
  function interrupted(store, sessionId) {
    const seen = deferred()
    const unsubscribe = store.subscribe(sessionId, (m) => {
      if (JSON.parse(m.content).type === 'run_interrupted') seen.resolve(m)
    })
    return seen.promise.finally(unsubscribe)
  }

  /** What the live hosts stored for the dead host's two sessions. */
  async function expectEndedOnce(stores) {
    const [store] = stores
    const claude = await store.getSession('c')
    expect(claude.agentStatus).toBe('not_available')
    expect(claude.errorMessage).toBe('the host ended during the run')
    for (const id of ['c', 't']) {
      const kinds = (await store.messages(id)).map((m) => JSON.parse(m.content).type)
      // Two live hosts looked: the run was ended once.
      expect(kinds.filter((k) => k === 'run_interrupted')).toHaveLength(1)
      expect(kinds.at(-1)).toBe('run_interrupted')
    }
    // Later looks by every live host change nothing (no event says that
    // nothing happened: three heartbeats are waited for).
    const before = await Promise.all(['c', 't'].map((id) => store.getSession(id)))
    await new Promise((resolve) => setTimeout(resolve, LEASE.heartbeatMs * 3))
    const after = await Promise.all(['c', 't'].map((id) => store.getSession(id)))
    expect(after.map((s) => s.lastSequence)).toEqual(before.map((s) => s.lastSequence))
  }

  withGuardian(
    "a SIGKILLed host's runs are ended by the live hosts once its lease runs out, exactly once",
    async () => {
      const url = await postgresSchemaUrl()
      const { host, gone } = await startLeaseHost(url)
      const stores = [await SessionStore.connect(url, LEASE), await SessionStore.connect(url, LEASE)]
      // Its lease holds while it lives: nothing is ended.
      expect((await stores[0].getSession('c')).agentStatus).toBe('running')
      const ended = Promise.all([interrupted(stores[0], 'c'), interrupted(stores[1], 't')])
      host.kill('SIGKILL')
      await gone
      // A stop asked of the dead host is answered once its run is ended.
      const stopped = stores[1].requestStop('t')
      await ended
      await stopped
      await expectEndedOnce(stores)
      await Promise.all(stores.map((s) => s.close()))
    },
  )

  withGuardian('a host whose network is cut is taken for dead once its lease runs out', async () => {
    const net = require('node:net')
    const url = await postgresSchemaUrl()
    // The host reaches the server through a proxy that the test can cut:
    // every connection dropped, new ones accepted and never answered.
    const server = new URL(process.env.EREN_TEST_POSTGRES)
    const sockets = new Set()
    let cut = false
    const proxy = net.createServer((client) => {
      sockets.add(client)
      client.on('error', () => {})
      if (cut) return
      const upstream = net.connect(Number(server.port || 5432), server.hostname)
      sockets.add(upstream)
      upstream.on('error', () => client.destroy())
      client.on('error', () => upstream.destroy())
      client.pipe(upstream).pipe(client)
    })
    await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve))
    const viaProxy = new URL(url)
    viaProxy.hostname = '127.0.0.1'
    viaProxy.port = String(proxy.address().port)
    const { host, gone } = await startLeaseHost(viaProxy.toString())
    const stores = [await SessionStore.connect(url, LEASE), await SessionStore.connect(url, LEASE)]
    const ended = Promise.all([interrupted(stores[0], 'c'), interrupted(stores[1], 't')])
    cut = true
    for (const socket of sockets) socket.destroy()
    await ended
    await expectEndedOnce(stores)
    host.kill('SIGKILL')
    await gone
    for (const socket of sockets) socket.destroy()
    proxy.close()
    await Promise.all(stores.map((s) => s.close()))
  })

  test('leaseMs and heartbeatMs are checked before connecting', () => {
    for (const opts of [{ leaseMs: 1000, heartbeatMs: 1000 }, { heartbeatMs: 0 }, { leaseMs: -5 }, { leaseMs: 'x' }]) {
      expect(() => SessionStore.connect('postgres://eren@127.0.0.1:1/none', opts)).toThrow(
        expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
      )
    }
  })
})

/**
 * Runs `fixture` in a throwaway cluster of its own, started by
 * with-postgres.js with the `feature` variable set (TLS, a standby), and
 * returns its output once it has ended cleanly.
 */
async function inClusterOfItsOwn(feature, fixture) {
  const env = { ...process.env, [feature]: '1' }
  delete env.EREN_TEST_POSTGRES
  const ran = await runNode(
    path.join(__dirname, 'with-postgres.js'),
    [process.execPath, path.join(__dirname, 'fixtures', fixture)],
    { env },
  )
  expect(ran.stderr).toBe('')
  expect(ran.code).toBe(0)
  return ran
}

describe('TLS', () => {
  test('sslmode as libpq reads it, on a cluster with TLS on and certificates made for it', async () => {
    // A second, throwaway cluster with ssl on, started for this test.
    const ran = await inClusterOfItsOwn('EREN_TEST_POSTGRES_TLS', 'tls-checks.js')
    const results = Object.fromEntries(
      ran.stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line))
        .map(({ name, ...result }) => [name, result]),
    )
    // Encrypted where TLS was asked for or offered; plain only on `disable`.
    for (const name of ['prefer', 'require', 'verify-full', 'verify-ca, any host name', 'client certificate']) {
      expect([name, results[name]]).toEqual([name, { ok: true, ssl: true }])
    }
    expect(results.disable).toEqual({ ok: true, ssl: false })
    const refused = (name, text) => {
      expect([name, results[name].code]).toEqual([name, 'STORAGE_ERROR'])
      expect(results[name].message).toContain(text)
    }
    refused('verify-full, wrong host name', 'TLS handshake: invalid peer certificate: certificate not valid for name')
    refused('verify-ca, another CA', 'TLS handshake: invalid peer certificate: UnknownIssuer')
    refused('require with a root checks the chain', 'UnknownIssuer')
    refused('verify-full, public roots only', 'UnknownIssuer')
    refused('no client certificate', 'requires a valid client certificate')
  })

  test('a plain server refuses require clearly; bad TLS parameters are INVALID_ARGUMENT or name the file', async () => {
    const url = await postgresSchemaUrl()
    const plain = await SessionStore.connect(`${url}&sslmode=require`).catch((e) => e)
    expect(plain.code).toBe('STORAGE_ERROR')
    expect(plain.message).toContain('server does not support TLS')
    const disabled = await SessionStore.connect(`${url}&sslmode=disable`)
    expect(await disabled.createSession('plain')).toBe('plain')
    await disabled.close()
    for (const bad of ['sslmode=sometimes', 'sslcert=%2Fc.pem', 'sslrootcert=%zz']) {
      expect([bad, await codeOf(() => SessionStore.connect(`${url}&${bad}`))]).toEqual([bad, 'INVALID_ARGUMENT'])
    }
    const missing = await SessionStore.connect(`${url}&sslmode=verify-ca&sslrootcert=%2Fno%2Fsuch.pem`).catch((e) => e)
    expect(missing.code).toBe('STORAGE_ERROR')
    expect(missing.message).toContain('TLS: cannot read sslrootcert /no/such.pem')
  })
})

describe('failover', () => {
  test('the primary killed mid-ingest and a synchronous standby promoted: nothing rejected, every acknowledged append on the new primary once, no gap', async () => {
    // A primary and a streaming standby of their own, started for this test.
    const ran = await inClusterOfItsOwn('EREN_TEST_POSTGRES_STANDBY', 'failover.js')
    const result = JSON.parse(ran.stdout)
    expect(result).toMatchObject({
      code: 0,
      stderr: '',
      failed: [],
      contiguous: true,
      duplicates: 0,
      missing: 0,
      sequencesMatch: true,
    })
    // 300 before the kill and 300 after it.
    expect(result.acked).toBeGreaterThanOrEqual(600)
    expect(result.failoverMs).toEqual(expect.any(Number))
  })
})
