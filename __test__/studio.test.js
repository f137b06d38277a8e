'use strict'
// `eren-machines studio` in a real browser: Debian's Chromium driven by
// playwright-core, against the CLI's own server on a real SQLite file that
// this process writes to at the same time.
const { execFileSync, spawn } = require('node:child_process')
const fs = require('node:fs')
const http = require('node:http')
const path = require('node:path')
const { launchChromium } = require('./fixtures/browser')
const { Terminal } = require('@xterm/headless')
const { ProcessRegistry, SessionStore, claudeBridge, spawnTerminal, terminalBridge } = require('..')
const { deferred, tempDirs } = require('./helpers')

const CLI = path.join(__dirname, '..', 'bin', 'eren-machines.js')
const MARK = { EREN_TEST_CHILD: '1' }
const tmpDir = tempDirs('eren-studio-')
const BIG = 100000

/** A Claude transcript as the runner stores it: events, a permission asked and decided, a question answered. */
const CLAUDE = [
  { type: 'system', subtype: 'init', session_id: 'c-1', model: 'claude-sonnet-4-5', cwd: '/work/app', tools: ['Bash'] },
  {
    type: 'user',
    message: { role: 'user', content: [{ type: 'text', text: 'List the files, then ask me which to delete.' }] },
  },
  {
    type: 'assistant',
    message: {
      content: [
        { type: 'text', text: 'I will list the files first.' },
        {
          type: 'tool_use',
          id: 'toolu_1',
          name: 'Bash',
          input: { command: 'ls -la /work/app', description: 'List files' },
        },
      ],
    },
  },
  {
    type: 'control_request',
    request_id: 'req-1',
    request: {
      subtype: 'can_use_tool',
      tool_name: 'Bash',
      input: { command: 'ls -la /work/app' },
      tool_use_id: 'toolu_1',
    },
  },
  {
    type: 'control_response',
    response: {
      subtype: 'success',
      request_id: 'req-1',
      response: { behavior: 'allow', updatedInput: { command: 'ls -la /work/app' } },
    },
  },
  {
    type: 'user',
    message: {
      content: [
        {
          type: 'tool_result',
          tool_use_id: 'toolu_1',
          content: `total 12\n${'-rw-r--r-- 1 me me 0 notes.txt\n'.repeat(40)}`,
        },
      ],
    },
  },
  {
    type: 'assistant',
    message: {
      content: [
        {
          type: 'tool_use',
          id: 'toolu_2',
          name: 'AskUserQuestion',
          input: {
            questions: [
              { question: 'Which file should I delete?', options: [{ label: 'notes.txt' }, { label: 'none' }] },
            ],
          },
        },
      ],
    },
  },
  {
    type: 'control_request',
    request_id: 'req-2',
    request: {
      subtype: 'can_use_tool',
      tool_name: 'AskUserQuestion',
      input: { questions: [] },
      tool_use_id: 'toolu_2',
    },
  },
  {
    type: 'control_response',
    response: {
      subtype: 'success',
      request_id: 'req-2',
      response: { behavior: 'allow', updatedInput: { answers: { 'Which file should I delete?': 'notes.txt' } } },
    },
  },
  {
    type: 'assistant',
    message: {
      content: [{ type: 'tool_use', id: 'toolu_3', name: 'Bash', input: { command: 'rm /work/app/notes.txt' } }],
    },
  },
  {
    type: 'control_request',
    request_id: 'req-3',
    request: {
      subtype: 'can_use_tool',
      tool_name: 'Bash',
      input: { command: 'rm /work/app/notes.txt' },
      tool_use_id: 'toolu_3',
    },
  },
  {
    type: 'control_response',
    response: {
      subtype: 'success',
      request_id: 'req-3',
      response: { behavior: 'deny', message: 'not on a Friday', interrupt: false },
    },
  },
  { type: 'assistant', message: { content: [{ type: 'text', text: 'Understood, I did not delete anything.' }] } },
  {
    type: 'result',
    subtype: 'success',
    is_error: false,
    duration_ms: 4210,
    num_turns: 3,
    total_cost_usd: 0.0123,
    result: 'Nothing deleted.',
  },
]

const SCREEN = [
  "printf '\\033[2J\\033[H\\033[1;1Htop-left\\033[1;70Htop-right'",
  "printf '\\033[5;10H\\033[1;31mred middle\\033[0m'",
  "printf '\\033[10;1Habcdefghij\\033[10;4H\\033[2P'",
  "printf '\\033[24;1Hbottom line\\033[3;1H'",
  '',
].join('\n')

let store
let studio
let url
let port
/** The studio's secret path, under which everything is served. */
let base
/** The studio's token cookie, named after its port. */
let cookieName
let browser
let page
const report = []

/** Resolves with the studio's URL once the CLI printed it. */
function startStudio(db) {
  const child = spawn(process.execPath, [CLI, 'studio', '--db', db], {
    env: { ...process.env, ...MARK },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const printed = deferred()
  let out = ''
  child.stdout.on('data', (d) => {
    out += d
    const found = out.match(/http:\/\/127\.0\.0\.1:\d+\/s\/[\w-]+\/\?token=\S+/)
    if (found) printed.resolve(found[0])
  })
  child.stderr.on('data', (d) => printed.reject(new Error(String(d))))
  child.on('exit', (code) => printed.reject(new Error(`studio exited ${code}`)))
  return { child, url: printed.promise }
}

/** Requests `route` under the studio's path (or `pathname` as given with `raw`) without a browser. */
function request(route, { method = 'GET', headers = {}, raw = false } = {}) {
  const pathname = raw ? route : base + route.replace(/^\//, '')
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: pathname, method, headers }, (res) => {
      let body = ''
      res.on('data', (d) => (body += d))
      res.on('end', () => resolve({ status: res.statusCode, body, headers: res.headers }))
    })
    req.on('error', reject)
    req.end()
  })
}

/** Events in shapes a page could trip on: options that are not a list, a string for content. */
const ODD_SHAPES = [
  { type: 'system', subtype: 'init', model: 'claude-test', cwd: '/work' },
  {
    type: 'assistant',
    message: {
      content: [
        {
          type: 'tool_use',
          name: 'AskUserQuestion',
          input: { questions: [{ question: 'q?', options: 'not a list' }] },
        },
      ],
    },
  },
  { type: 'user', message: { role: 'user', content: 'after the compaction' } },
]

async function openSession(id) {
  await page.evaluate(
    (hash) => {
      location.hash = hash
    },
    `#/s/${encodeURIComponent(id)}`,
  )
  await page.waitForSelector(`body[data-loaded="${id}"]`)
}

beforeAll(async () => {
  const dir = tmpDir()
  const db = path.join(dir, 'sessions.db')
  store = SessionStore.open(db, { durability: 'normal' })
  await store.createSession('claude-demo')
  for (const event of CLAUDE) await claudeBridge.storeEvent(store, 'claude-demo', JSON.stringify(event))
  await claudeBridge.updateClaudeSessionId(store, 'claude-demo', 'c-1')
  await store.createSession('odd-shapes')
  for (const event of ODD_SHAPES) await claudeBridge.storeEvent(store, 'odd-shapes', JSON.stringify(event))
  await store.createSession('lines')
  await terminalBridge.storeStdout(store, 'lines', 'compiling')
  await store.createSession('big')
  const pending = []
  for (let i = 1; i <= BIG; i++) pending.push(terminalBridge.storeStdout(store, 'big', `line ${i}`))
  await Promise.all(pending)
  const script = path.join(dir, 'screen.sh')
  fs.writeFileSync(script, SCREEN)
  await store.createSession('pty-demo')
  const ran = await spawnTerminal({
    store,
    registry: new ProcessRegistry(),
    sessionId: 'pty-demo',
    command: 'sh',
    args: [script],
    env: MARK,
    pty: { cols: 80, rows: 24 },
  })
  await ran.exited

  studio = startStudio(db)
  url = await studio.url
  port = Number(new URL(url).port)
  base = new URL(url).pathname
  cookieName = `eren_studio_${port}`
  browser = await launchChromium()
  page = await browser.newPage({ viewport: { width: 1400, height: 900 } })
  await page.goto(url)
  await page.waitForSelector('.session-row[data-id="claude-demo"]')
})

afterAll(async () => {
  await browser?.close()
  if (studio) {
    const exited = new Promise((resolve) => studio.child.on('exit', resolve))
    studio.child.kill('SIGINT')
    await exited
  }
  await store?.close()
  if (report.length) console.log(`studio report:\n${report.join('\n')}`)
})

describe('eren-machines studio in Chromium', () => {
  test('the token moves into a cookie and out of the address bar', async () => {
    expect(new URL(page.url()).searchParams.has('token')).toBe(false)
    const cookies = await page.context().cookies()
    // Scoped to the studio's secret path and named after its port: cookies
    // ignore ports, so another local server (or a second studio) never
    // gets or replaces it.
    expect(cookies.find((c) => c.name === cookieName)).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: base })
    expect(base).toMatch(/^\/s\/[\w-]{20,}\/$/)
  })

  test('the list shows a new session within a second, with its status and count', async () => {
    const start = Date.now()
    await store.createSession('fresh')
    await page.waitForSelector('.session-row[data-id="fresh"]')
    report.push(`new session listed after ${Date.now() - start} ms`)
    await claudeBridge.setRunning(store, 'fresh')
    await terminalBridge.storeStdout(store, 'fresh', 'one')
    await page.waitForSelector('.session-row[data-id="fresh"] .badge.running')
    await page.waitForFunction(
      () => document.querySelector('.session-row[data-id="fresh"] .count')?.textContent === '1',
    )
  })

  test('a title, a tag, a cost and a deletion reach the list as that one row changes', async () => {
    await store.createSession('renamed')
    await page.waitForSelector('.session-row[data-id="renamed"]')
    await store.setTitle('renamed', 'Fix the login flake')
    await store.addTag('renamed', 'urgent')
    await claudeBridge.storeEvent(
      store,
      'renamed',
      JSON.stringify({ type: 'result', subtype: 'success', total_cost_usd: 0.25, usage: { input_tokens: 1 } }),
    )
    await page.waitForFunction(() => {
      const row = document.querySelector('.session-row[data-id="renamed"]')
      return (
        row?.querySelector('.name')?.textContent === 'Fix the login flake' &&
        row.querySelector('.tag')?.textContent === 'urgent' &&
        row.querySelector('.cost')?.textContent === '$0.2500'
      )
    })
    await store.deleteSession('renamed')
    await page.waitForFunction(() => !document.querySelector('.session-row[data-id="renamed"]'))
  })

  test('a live append appears in the open session view', async () => {
    await openSession('lines')
    expect(await page.textContent('.msg[data-seq="1"]')).toBe('compiling')
    const start = Date.now()
    await terminalBridge.storeStderr(store, 'lines', 'warning: live')
    const appended = await page.waitForSelector('.msg[data-seq="2"]')
    report.push(`live append shown after ${Date.now() - start} ms`)
    expect(await appended.textContent()).toBe('warning: live')
    expect(await appended.getAttribute('class')).toContain('stderr')
  })

  test('a stored Claude transcript shows the tool call, the permission request and its decision, the question and its answer', async () => {
    await openSession('claude-demo')
    const call = await page.textContent('.tool-call[data-tool="Bash"]')
    expect(call).toContain('tool call: Bash')
    expect(call).toContain('ls -la /work/app')
    expect(await page.textContent('.permission[data-request="req-1"]')).toContain('permission request: Bash')
    expect(await page.textContent('.decision.allow[data-request="req-1"]')).toContain('decision: allow')
    const denied = await page.textContent('.decision.deny[data-request="req-3"]')
    expect(denied).toContain('not on a Friday')
    expect(await page.textContent('.tool-call[data-tool="AskUserQuestion"]')).toContain('Which file should I delete?')
    expect(await page.textContent('.decision.allow[data-request="req-2"] .answers')).toContain('notes.txt')
    // The long tool result is collapsed.
    expect(await page.$$eval('.tool-result details', (all) => all.map((d) => d.open))).toEqual([false])
    const result = await page.textContent('.result')
    expect(result).toContain('4.2 s')
    expect(result).toContain('$0.0123')
    expect(result).toContain('Nothing deleted.')
    const shot = process.env.EREN_STUDIO_SCREENSHOT || path.join(tmpDir(), 'studio.png')
    await page.screenshot({ path: shot })
    report.push(`screenshot of a Claude session: ${shot}`)
  })

  test('Claude events of shapes the page cannot read are shown raw, and the rest of the session and its live following go on', async () => {
    await openSession('odd-shapes')
    expect(await page.$$eval('.msg', (all) => all.length)).toBe(ODD_SHAPES.length)
    expect(await page.textContent('.msg[data-seq="2"]')).toContain('not a list')
    expect(await page.textContent('.msg[data-seq="3"]')).toContain('after the compaction')
    await claudeBridge.storeEvent(store, 'odd-shapes', JSON.stringify({ type: 'result', result: 'still following' }))
    const appended = await page.waitForSelector(`.msg[data-seq="${ODD_SHAPES.length + 1}"]`)
    expect(await appended.textContent()).toContain('still following')
  })

  test("a PTY session's screen in xterm.js is the program's screen", async () => {
    await openSession('pty-demo')
    const shown = await page.evaluate(() => {
      const buffer = window.studioTerminal.buffer.active
      return Array.from({ length: window.studioTerminal.rows }, (_, i) =>
        buffer.getLine(buffer.baseY + i).translateToString(true),
      )
    })
    // The same chunks through xterm's own headless build, at the page's size.
    const chunks = (await store.messages('pty-demo'))
      .map((m) => JSON.parse(m.content))
      .filter((e) => e.type === 'terminal_output')
      .map((e) => e.content)
    const headless = new Terminal({ cols: 120, rows: 36, allowProposedApi: true })
    await new Promise((resolve) => headless.write(chunks.join(''), resolve))
    const buffer = headless.buffer.active
    const expected = Array.from({ length: 36 }, (_, i) => buffer.getLine(buffer.baseY + i).translateToString(true))
    expect(shown).toEqual(expected)
    expect(shown[0]).toMatch(/^top-left +top-right$/)
    expect(shown[4].trim()).toBe('red middle')
    expect(shown[9]).toBe('abcfghij')
    expect(shown[23]).toBe('bottom line')
  })

  test('a 100,000-message session opens on its newest messages and pages backwards on scroll', async () => {
    const start = Date.now()
    await openSession('big')
    await page.waitForSelector(`.msg[data-seq="${BIG}"]`)
    report.push(`100,000-message session opened in ${Date.now() - start} ms`)
    expect(await page.textContent(`.msg[data-seq="${BIG}"]`)).toBe(`line ${BIG}`)
    expect(await page.$$eval('.msg', (all) => all.length)).toBe(200)
    await page.evaluate(() => {
      document.querySelector('#view').scrollTop = 0
    })
    await page.waitForSelector(`.msg[data-seq="${BIG - 200}"]`)
    expect(await page.textContent(`.msg[data-seq="${BIG - 399}"]`)).toBe(`line ${BIG - 399}`)
  })
})

describe('studio security', () => {
  test('a request without the token gets 403, also for the API', async () => {
    for (const pathname of ['/', '/api/sessions', '/api/session?id=lines', '/page.js']) {
      expect((await request(pathname, { headers: { Host: `127.0.0.1:${port}` } })).status).toBe(403)
    }
    const wrong = await request('/api/sessions', {
      headers: { Host: `127.0.0.1:${port}`, Cookie: `${cookieName}=guess` },
    })
    expect(wrong.status).toBe(403)
  })

  test('nothing is served outside the secret path, even with the token', async () => {
    const token = new URL(url).searchParams.get('token')
    for (const pathname of ['/', `/?token=${token}`, '/api/sessions', '/page.js', '/s/guess/api/sessions']) {
      const answer = await request(pathname, {
        raw: true,
        headers: { Host: `127.0.0.1:${port}`, Cookie: `${cookieName}=${token}` },
      })
      expect(answer.status).toBe(404)
      expect(answer.body).not.toContain('claude-demo')
    }
  })

  test('a Host other than the loopback address and port is refused, even with the token', async () => {
    const token = new URL(url).searchParams.get('token')
    const cookie = `${cookieName}=${token}`
    for (const host of [`evil.example:${port}`, '127.0.0.1', `127.0.0.1:${port + 1}`, `attacker.test`]) {
      const refused = await request('/api/sessions', { headers: { Host: host, Cookie: cookie } })
      expect(refused.status).toBe(403)
      expect(refused.body).not.toContain('claude-demo')
    }
    const allowed = await request('/api/sessions', { headers: { Host: `127.0.0.1:${port}`, Cookie: cookie } })
    expect(allowed.status).toBe(200)
    expect(JSON.parse(allowed.body).map((s) => s.id)).toContain('claude-demo')
  })

  test('there are no write endpoints: every other method is 405', async () => {
    const token = new URL(url).searchParams.get('token')
    const before = (await store.listSessions()).length
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      const answer = await request('/api/sessions', {
        method,
        headers: { Host: `127.0.0.1:${port}`, Cookie: `${cookieName}=${token}` },
      })
      expect(answer.status).toBe(405)
    }
    expect((await store.listSessions()).length).toBe(before)
  })

  test('a stream client that stops reading is dropped once it is far behind, so it cannot grow the server', async () => {
    const token = new URL(url).searchParams.get('token')
    const res = await new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port,
          path: `${base}api/session/stream?id=big&after=0`,
          headers: { Host: `127.0.0.1:${port}`, Cookie: `${cookieName}=${token}` },
        },
        resolve,
      )
      req.on('error', reject)
      req.end()
    })
    expect(res.statusCode).toBe(200)
    // Reads nothing while the server replays 100,000 messages at it (no
    // event says when the server has given up on it, so this waits).
    res.pause()
    await new Promise((resolve) => setTimeout(resolve, 5000))
    // Then reads: a dropped stream ends short of the replay; one that was
    // kept would deliver all of it and stay open for live messages.
    let events = 0
    let tail = ''
    const ended = await new Promise((resolve) => {
      res.on('data', (chunk) => {
        // A marker may be cut between chunks: the tail carries it over.
        const text = tail + chunk
        events += text.split('event: message').length - 1
        tail = text.slice(-'event: message'.length + 1)
        if (events >= BIG) resolve(false)
      })
      res.on('end', () => resolve(true))
      res.on('error', () => resolve(true))
      res.resume()
    })
    res.destroy()
    expect(ended).toBe(true)
    expect(events).toBeLessThan(BIG)
  })

  test('it listens on 127.0.0.1 only', async () => {
    const listening = execFileSync('sh', ['-c', `ss -ltnH 'sport = :${port}'`], { encoding: 'utf8' })
    expect(
      listening
        .trim()
        .split('\n')
        .map((l) => l.split(/\s+/)[3]),
    ).toEqual([`127.0.0.1:${port}`])
  })
})

describe('studio work scales with changes', () => {
  test('an idle list costs no reads, and a change costs one read of that session alone', async () => {
    const { startStudio: serve } = require('../bin/studio/server')
    const store = SessionStore.inMemory()
    for (let i = 0; i < 200; i++) await store.createSession(`quiet-${i}`)
    const reads = { listSessions: 0, getSession: 0 }
    // The studio sees the store through this counter of its reads.
    const counted = new Proxy(store, {
      get(target, name) {
        const value = Reflect.get(target, name)
        if (typeof value !== 'function') return value
        return (...args) => {
          if (name in reads) reads[name]++
          return value.apply(target, args)
        }
      },
    })
    const studio = await serve(counted)
    const studioUrl = new URL(studio.url)
    const events = []
    const heard = []
    const stream = await new Promise((resolve, reject) => {
      const req = http.get(
        {
          host: '127.0.0.1',
          port: studio.port,
          path: `${studioUrl.pathname}api/sessions/stream`,
          headers: { Cookie: `eren_studio_${studio.port}=${studioUrl.searchParams.get('token')}` },
        },
        resolve,
      )
      req.on('error', reject)
    })
    stream.setEncoding('utf8')
    stream.on('data', (chunk) => {
      for (const name of chunk.matchAll(/^event: (\w+)$/gm)) events.push(name[1])
      for (const waiter of heard.splice(0)) waiter()
    })
    const until = (name) =>
      new Promise((resolve) => {
        const check = () => (events.includes(name) ? resolve() : heard.push(check))
        check()
      })
    await until('sessions')
    expect(reads).toEqual({ listSessions: 1, getSession: 0 })
    // Long enough for a list read every 250 ms to show twice.
    await new Promise((resolve) => setTimeout(resolve, 600))
    expect(reads).toEqual({ listSessions: 1, getSession: 0 })
    await store.setTitle('quiet-7', 'named')
    await until('session')
    expect(reads).toEqual({ listSessions: 1, getSession: 1 })
    stream.destroy()
    await studio.close()
    await store.close()
  })
})
