'use strict'
// The studio's web server: read-only views of a store's sessions, live, for
// a browser on this machine. node:http alone; the page is plain JS.
//
// Security: it listens on 127.0.0.1 only; everything is served under a
// random path of its own, and every request needs the random token of the
// printed URL (a cookie after the first load); a Host header other than
// this address and port is refused (DNS rebinding); only GET and HEAD
// exist. Transcripts hold code and sometimes secrets.
//
// Cookies ignore ports: a cookie set for 127.0.0.1 would reach every local
// server, a dev server the agent just started among them. So the cookie is
// scoped to the studio's secret path, which no other server is ever asked
// for, and named after the studio's port, so a second studio in the same
// browser does not replace the first one's.
const crypto = require('node:crypto')
const fs = require('node:fs')
const http = require('node:http')
const path = require('node:path')

/** The token cookie's name, per studio: `eren_studio_<port>`. */
const cookieName = (port) => `eren_studio_${port}`
/**
 * How long a session's new messages wait before its row is read again: a
 * busy session costs one read per interval, not one per commit.
 */
const MESSAGES_EVERY_MS = 250
/**
 * How far a stream's client may fall behind, in bytes written and not yet
 * taken. A client past it is dropped, and its page follows again from the
 * last message it has: what a stalled tab costs the server stays bounded.
 */
const STREAM_BEHIND_BYTES = 4 << 20
const PAGE_LIMIT = 1000

const ASSETS = {
  '/': [path.join(__dirname, 'page.html'), 'text/html; charset=utf-8'],
  '/page.js': [path.join(__dirname, 'page.js'), 'text/javascript; charset=utf-8'],
  '/messages.js': [path.join(__dirname, '..', '..', 'messages.js'), 'text/javascript; charset=utf-8'],
  '/page.css': [path.join(__dirname, 'page.css'), 'text/css; charset=utf-8'],
  '/vendor/xterm.js': [require.resolve('@xterm/xterm/lib/xterm.js'), 'text/javascript; charset=utf-8'],
  '/vendor/xterm.css': [require.resolve('@xterm/xterm/css/xterm.css'), 'text/css; charset=utf-8'],
}

const HEADERS = {
  'Cache-Control': 'no-store',
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  // The token is in the first URL: never send it anywhere else.
  'Referrer-Policy': 'no-referrer',
  // xterm.js sets styles on its elements.
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; font-src 'self'",
}

function sameSecret(given, token) {
  if (typeof given !== 'string') return false
  const a = Buffer.from(given)
  const b = Buffer.from(token)
  return a.length === b.length && crypto.timingSafeEqual(a, b)
}

function cookieOf(req, cookie) {
  for (const part of (req.headers.cookie || '').split(';')) {
    const [name, ...value] = part.trim().split('=')
    if (name === cookie) return value.join('=')
  }
  return undefined
}

/** What the page shows of a session. */
const summary = (s) => ({
  id: s.id,
  agentStatus: s.agentStatus,
  messageCount: s.lastSequence,
  createdAt: s.createdAt,
  updatedAt: s.updatedAt,
  claudeSessionId: s.claudeSessionId,
  errorMessage: s.errorMessage,
  closed: s.closed,
  title: s.title,
  tags: s.tags,
  archived: s.archived,
  costUsd: s.usage.costUsd,
  tokens: s.usage.inputTokens + s.usage.outputTokens,
})

/**
 * Serves `store` on 127.0.0.1:`port` (0: a free one). Resolves with the
 * URL to open (token included) and a `close()`.
 */
async function startStudio(store, { port = 0 } = {}) {
  const token = crypto.randomBytes(24).toString('base64url')
  // Where everything is served, and the only path the cookie goes to.
  const base = `/s/${crypto.randomBytes(16).toString('base64url')}/`
  const streams = new Set()
  const listFollowers = new Set()
  // While a page follows the list: the store's change feed, and the
  // sessions whose row is to be read again, by id.
  let unfollowChanges = null
  const stale = new Map()
  let bound = 0

  const send = (res, status, body, type = 'text/plain; charset=utf-8') => {
    res.writeHead(status, { ...HEADERS, 'Content-Type': type })
    res.end(body)
  }
  const json = (res, value, status = 200) => send(res, status, JSON.stringify(value), 'application/json; charset=utf-8')
  const failure = (res, error) => {
    const status = error.code === 'SESSION_NOT_FOUND' ? 404 : error.code === 'INVALID_ARGUMENT' ? 400 : 500
    json(res, { code: error.code || 'INTERNAL', message: error.message }, status)
  }
  const openStream = (req, res) => {
    res.writeHead(200, { ...HEADERS, 'Content-Type': 'text/event-stream' })
    res.write('retry: 1000\n\n')
    streams.add(res)
    req.on('close', () => streams.delete(res))
  }
  /**
   * One server-sent event; `data` is already JSON text. A client too far
   * behind is dropped (its 'close' ends what feeds it).
   */
  const event = (res, name, data) => {
    if (res.destroyed) return
    res.write(`event: ${name}\ndata: ${data}\n\n`)
    if (res.writableLength > STREAM_BEHIND_BYTES) res.destroy()
  }

  /** Reads a changed session again and sends its row (or its removal). */
  async function refresh(id) {
    stale.delete(id)
    let data
    try {
      const session = await store.getSession(id)
      data = session ? ['session', JSON.stringify(summary(session))] : ['removed', JSON.stringify(id)]
    } catch {
      // A store that is closing: the followers hear nothing more.
      return
    }
    for (const res of listFollowers) event(res, ...data)
  }

  /**
   * Each change to the list reaches the pages as that one session's row,
   * read once per change (new messages once per interval): nothing is read
   * while nothing changes, however many sessions there are.
   */
  function onChange({ sessionId, kind }) {
    if (stale.has(sessionId)) {
      if (kind === 'messages') return
      clearTimeout(stale.get(sessionId))
    }
    stale.set(sessionId, setTimeout(refresh, kind === 'messages' ? MESSAGES_EVERY_MS : 0, sessionId))
  }

  async function followList(req, res) {
    if (unfollowChanges === null) unfollowChanges = store.onSessionsChanged(onChange)
    listFollowers.add(res)
    req.on('close', () => {
      listFollowers.delete(res)
      if (listFollowers.size === 0 && unfollowChanges) {
        unfollowChanges()
        unfollowChanges = null
        for (const timer of stale.values()) clearTimeout(timer)
        stale.clear()
      }
    })
    // Listening first: a change made while the list is read reaches the
    // page after it.
    let list
    try {
      list = JSON.stringify((await store.listSessions()).map(summary))
    } catch (error) {
      listFollowers.delete(res)
      return failure(res, error)
    }
    openStream(req, res)
    event(res, 'sessions', list)
  }

  function followSession(req, res, id, after) {
    let unsubscribe
    try {
      unsubscribe = store.subscribe(id, (m) => event(res, 'message', JSON.stringify(m)), { afterSequence: after })
    } catch (error) {
      return failure(res, error)
    }
    openStream(req, res)
    req.on('close', unsubscribe)
  }

  /**
   * A page of a session's messages: those after `after`, or the `limit`
   * before `before` (default: the newest), which is a range because
   * sequences are contiguous.
   */
  async function page(res, id, query) {
    const session = await store.getSession(id)
    if (!session) return failure(res, { code: 'SESSION_NOT_FOUND', message: `session '${id}' not found` })
    const number = (name, fallback) => (query.has(name) ? Number(query.get(name)) : fallback)
    let limit = Math.min(number('limit', 200), PAGE_LIMIT)
    let afterSequence = number('after', undefined)
    if (afterSequence === undefined) {
      const before = number('before', session.lastSequence + 1)
      afterSequence = Math.max(0, before - 1 - limit)
      limit = Math.max(0, Math.min(limit, before - 1 - afterSequence))
    }
    if (![limit, afterSequence].every((n) => Number.isSafeInteger(n) && n >= 0)) {
      return send(res, 400, 'after, before and limit are whole numbers\n')
    }
    json(res, { session: summary(session), messages: await store.messages(id, { afterSequence, limit }) })
  }

  async function handle(req, res) {
    const allowed = [`127.0.0.1:${bound}`, `localhost:${bound}`]
    if (!allowed.includes(req.headers.host)) return send(res, 403, 'this host name is not served\n')
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD')
      return send(res, 405, 'the studio is read-only\n')
    }
    const url = new URL(req.url, `http://${req.headers.host}`)
    if (!url.pathname.startsWith(base)) return send(res, 404, 'not found\n')
    const route = `/${url.pathname.slice(base.length)}`
    const fromQuery = url.searchParams.get('token')
    const cookie = cookieName(bound)
    if (!sameSecret(cookieOf(req, cookie), token)) {
      if (!sameSecret(fromQuery, token)) return send(res, 403, 'open the URL the studio printed\n')
      // First load: keep the token in a cookie and out of the address bar.
      url.searchParams.delete('token')
      res.writeHead(302, {
        ...HEADERS,
        'Set-Cookie': `${cookie}=${token}; HttpOnly; SameSite=Strict; Path=${base}`,
        Location: url.pathname + url.search,
      })
      return res.end()
    }
    const asset = ASSETS[route]
    if (asset) return send(res, 200, fs.readFileSync(asset[0]), asset[1])
    const query = url.searchParams
    switch (route) {
      case '/api/sessions':
        return json(res, (await store.listSessions()).map(summary))
      case '/api/sessions/stream':
        return followList(req, res)
      case '/api/session':
        return page(res, query.get('id') ?? '', query)
      case '/api/session/stream': {
        const after = Number(query.get('after') || 0)
        if (!Number.isSafeInteger(after) || after < 0) return send(res, 400, 'after is a whole number\n')
        return followSession(req, res, query.get('id') ?? '', after)
      }
      default:
        return send(res, 404, 'not found\n')
    }
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch((error) => {
      if (!res.headersSent) failure(res, error)
      else res.end()
    })
  })
  await new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', resolve)
  })
  bound = server.address().port
  return {
    url: `http://127.0.0.1:${bound}${base}?token=${token}`,
    port: bound,
    close: () =>
      new Promise((resolve) => {
        for (const res of streams) res.end()
        if (unfollowChanges) unfollowChanges()
        for (const timer of stale.values()) clearTimeout(timer)
        server.close(resolve)
      }),
  }
}

module.exports = { startStudio }
