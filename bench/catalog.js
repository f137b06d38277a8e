'use strict'
// The session catalog at size: listing 100,000 sessions (first page, a deep
// page by cursor, filtered, by recent change, a text query), searching 1M
// messages, and the runner's ingest while searches keep forcing the index
// against ingest with the index left to idle time. Listing is compared with
// better-sqlite3 reading the same file's first page in the same run.
// Figures to report, never assertions. `npm run bench:catalog`.
const path = require('node:path')
const { performance } = require('node:perf_hooks')
const Database = require('better-sqlite3')
const { fmt, inScratchDir, measure, runBench } = require('./common')
const { ProcessRegistry, SessionStore, spawnTerminal } = require('..')

const SESSIONS = Number(process.env.SESSIONS || 100000)
const MESSAGES = Number(process.env.MESSAGES || 1000000)
const REPEAT = 20

/** The median of `REPEAT` timings of `run`, in ms. */
async function median(run) {
  const times = []
  for (let i = 0; i < REPEAT; i++) {
    const start = performance.now()
    await run()
    times.push(performance.now() - start)
  }
  times.sort((a, b) => a - b)
  return times[Math.floor(times.length / 2)]
}

const ms = (n) => `${n.toFixed(2)} ms`

async function listing(dir) {
  const file = path.join(dir, 'list.db')
  const store = SessionStore.open(file)
  let start = performance.now()
  const creates = []
  for (let i = 0; i < SESSIONS; i++) creates.push(store.createSession(`session-${String(i).padStart(6, '0')}`))
  await Promise.all(creates)
  const created = performance.now() - start
  const marks = []
  for (let i = 0; i < SESSIONS; i += 10) {
    marks.push(store.addTag(`session-${String(i).padStart(6, '0')}`, 'starred'))
    marks.push(store.archive(`session-${String(i + 1).padStart(6, '0')}`))
    marks.push(store.setTitle(`session-${String(i + 2).padStart(6, '0')}`, `Deploy run ${i}`))
  }
  await Promise.all(marks)
  console.log(`${fmt(SESSIONS)} sessions created in ${(created / 1000).toFixed(1)} s, 10% tagged, archived, titled`)
  const first = await median(() => store.listSessions({ limit: 100 }))
  let cursor
  for (let i = 0; i < SESSIONS / 2 / 1000; i++) cursor = (await store.pageSessions({ limit: 1000, cursor })).nextCursor
  const deep = await median(() => store.pageSessions({ limit: 100, cursor }))
  const tagged = await median(() => store.listSessions({ tag: 'starred', limit: 100 }))
  const recent = await median(() => store.listSessions({ archived: false, orderBy: 'updatedAt', limit: 100 }))
  const query = await median(() => store.listSessions({ query: 'deploy run 9999', limit: 100 }))
  start = performance.now()
  let pages = 0
  cursor = undefined
  do {
    cursor = (await store.pageSessions({ limit: 1000, cursor })).nextCursor
    pages++
  } while (cursor)
  const walk = performance.now() - start
  await store.close()
  const db = new Database(file, { readonly: true })
  const firstPage = db.prepare('SELECT * FROM sessions ORDER BY created_at, key LIMIT 100')
  const theirs = await median(() => firstPage.all())
  db.close()
  console.log(`listSessions first page of 100:          ${ms(first)} (better-sqlite3 reading it: ${ms(theirs)})`)
  console.log(`pageSessions page of 100 at 50,000:      ${ms(deep)}`)
  console.log(`listSessions tag filter, 100:            ${ms(tagged)}`)
  console.log(`listSessions unarchived by updatedAt:    ${ms(recent)}`)
  console.log(`listSessions text query (full scan):     ${ms(query)}`)
  console.log(`every page of 1,000 (${pages} pages):        ${(walk / 1000).toFixed(2)} s`)
}

/** A run printing `count` lines of words, one rare word per line among common ones. */
function wordy(store, sessionId, count) {
  const program = `BEGIN { srand(7); for (i = 0; i < ${count}; i++) printf "build step %d compiled module%d with warning w%d\\n", i, int(rand() * 50000), int(rand() * 1000) }`
  return spawnTerminal({ store, registry: new ProcessRegistry(), sessionId, command: 'awk', args: [program] })
}

async function search(dir) {
  const store = SessionStore.open(path.join(dir, 'search.db'))
  await store.createSession('words')
  const run = await wordy(store, 'words', MESSAGES)
  await run.exited
  let start = performance.now()
  const hits = await store.search('module12345')
  const catchUp = performance.now() - start
  const rare = await median(() => store.search('module12345'))
  const common = await median(() => store.search('compiled warning', { limit: 20 }))
  const scoped = await median(() => store.search('w77', { sessionId: 'words', limit: 20 }))
  start = performance.now()
  await store.close()
  console.log(`search over ${fmt(MESSAGES)} messages:`)
  console.log(`  first search, indexing all of them:    ${(catchUp / 1000).toFixed(2)} s (${hits.length} hits)`)
  console.log(`  a rare word:                           ${ms(rare)}`)
  console.log(`  two common words, top 20:              ${ms(common)}`)
  console.log(`  one word in one session, top 20:       ${ms(scoped)}`)
}

async function ingest(dir, searching) {
  const store = SessionStore.open(path.join(dir, `ingest-${searching}.db`))
  await store.createSession('bench')
  let searches = 0
  const result = await measure(MESSAGES, async () => {
    const run = await wordy(store, 'bench', MESSAGES)
    let timer
    if (searching) {
      const again = () => {
        timer = setTimeout(async () => {
          await store.search('module42')
          searches++
          again()
        }, 50)
      }
      again()
    }
    await run.exited
    clearTimeout(timer)
  })
  await store.close()
  return { ...result, searches }
}

async function main() {
  await inScratchDir(async (dir) => {
    await listing(dir)
    await search(dir)
    const off = await ingest(dir, false)
    const on = await ingest(dir, true)
    console.log(`runner ingest of ${fmt(MESSAGES)} lines:`)
    console.log(`  index left to idle time:               ${fmt(off.rate)} lines/s`)
    console.log(`  a search every 50 ms forcing it:       ${fmt(on.rate)} lines/s (${on.searches} searches)`)
    console.log(`  ratio forced / idle:                   ${(on.rate / off.rate).toFixed(2)}x`)
  })
}

runBench(main)
