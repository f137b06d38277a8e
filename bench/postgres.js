'use strict'
// HOSTS host processes, each appending to SESSIONS shared sessions through
// the bridges on SessionStore.connect, against the same load through the
// `pg` client with one INSERT per row (autocommit, a pool of 10 per host) in
// the same run, on the same server. The baseline does less: it has no
// per-session sequence to keep. Prints rows/s, p99 append latency and the
// ratio. Figures to report, never assertions.
// `npm run bench:postgres` starts a throwaway server with TLS on, and also
// measures the bridges over TLS (sslmode=require) against plain; set
// EREN_TEST_POSTGRES to use another.
const { spawn } = require('node:child_process')
const path = require('node:path')
const { Client } = require('pg')
const { SessionStore } = require('..')

const HOSTS = Number(process.env.HOSTS || 4)
const SESSIONS = Number(process.env.SESSIONS || 50)
const ROWS = Number(process.env.ROWS || 100)
const URL = process.env.EREN_TEST_POSTGRES

function inSchema(schema) {
  return `${URL}${URL.includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c search_path=${schema}`)}`
}

function startHost(mode, url, host) {
  const child = spawn(process.execPath, [path.join(__dirname, 'postgres-host.js'), mode, url, host, SESSIONS, ROWS], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  let out = ''
  const ready = new Promise((resolve) => {
    child.stdout.on('data', (d) => {
      out += d
      if (out.startsWith('ready\n')) resolve()
    })
  })
  const finished = new Promise((resolve, reject) =>
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`${mode} host ${host} exited ${code}`))
      resolve(JSON.parse(out.slice('ready\n'.length)))
    }),
  )
  return { child, ready, finished }
}

async function load(mode, url) {
  const hosts = Array.from({ length: HOSTS }, (_, h) => startHost(mode, url, h))
  await Promise.all(hosts.map((h) => h.ready))
  const start = performance.now()
  for (const h of hosts) h.child.stdin.write('go\n')
  const latencies = (await Promise.all(hosts.map((h) => h.finished))).flat()
  const seconds = (performance.now() - start) / 1000
  latencies.sort((a, b) => a - b)
  return {
    rows: latencies.length,
    perSecond: latencies.length / seconds,
    p50: latencies[Math.floor(latencies.length * 0.5)],
    p99: latencies[Math.floor(latencies.length * 0.99)],
  }
}

async function main() {
  if (!URL) throw new Error('EREN_TEST_POSTGRES is not set; run `npm run bench:postgres`')
  const admin = new Client({ connectionString: URL })
  await admin.connect()
  const suffix = Date.now()
  await admin.query(`CREATE SCHEMA ours_${suffix}`)
  await admin.query(`CREATE SCHEMA base_${suffix}`)
  await admin.query(
    `CREATE TABLE base_${suffix}.bench_rows (id bigserial PRIMARY KEY, session text NOT NULL, content text NOT NULL, created_at bigint NOT NULL)`,
  )
  // Plain unless the server offers TLS: then once plain and once over TLS.
  const tls = Boolean(process.env.EREN_TEST_POSTGRES_TLS_DIR)
  const sessionsIn = async (schema, mode) => {
    await admin.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`)
    const url = `${inSchema(schema)}&sslmode=${mode}`
    const setup = await SessionStore.connect(url)
    for (let s = 0; s < SESSIONS; s++) await setup.createSession(`s${s}`)
    await setup.close()
    return url
  }
  const ours = await sessionsIn(`ours_${suffix}`, 'disable')

  const fmt = (n) => Math.round(n).toLocaleString('en-US')
  const ms = (n) => `${n.toFixed(2)} ms`
  console.log(`${HOSTS} hosts x ${SESSIONS} sessions x ${ROWS} rows, one lane per session`)
  const baseline = await load('pg', inSchema(`base_${suffix}`))
  console.log(
    `pg, one INSERT per row:  ${fmt(baseline.perSecond)} rows/s  p50 ${ms(baseline.p50)}  p99 ${ms(baseline.p99)}`,
  )
  const result = await load('ours', ours)
  console.log(`eren-machines bridges:   ${fmt(result.perSecond)} rows/s  p50 ${ms(result.p50)}  p99 ${ms(result.p99)}`)
  console.log(`ratio: ${(result.perSecond / baseline.perSecond).toFixed(2)}x the rows/s`)
  if (tls) {
    const encrypted = await load('ours', await sessionsIn(`tls_${suffix}`, 'require'))
    console.log(
      `eren-machines over TLS:  ${fmt(encrypted.perSecond)} rows/s  p50 ${ms(encrypted.p50)}  p99 ${ms(encrypted.p99)}`,
    )
    console.log(`TLS / plain: ${(encrypted.perSecond / result.perSecond).toFixed(2)}x the rows/s`)
    await admin.query(`DROP SCHEMA tls_${suffix} CASCADE`)
  }

  const check = await SessionStore.connect(ours)
  for (let s = 0; s < SESSIONS; s++) {
    const session = await check.getSession(`s${s}`)
    if (session.lastSequence !== HOSTS * ROWS) throw new Error(`s${s} holds ${session.lastSequence} rows`)
  }
  await check.close()
  await admin.query(`DROP SCHEMA ours_${suffix} CASCADE`)
  await admin.query(`DROP SCHEMA base_${suffix} CASCADE`)
  await admin.end()
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
