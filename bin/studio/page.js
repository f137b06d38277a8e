'use strict'
  // The studio page: the session list (live), and one session's view, which
  // loads the newest messages first, pages backwards on scroll and follows new
  // ones over server-sent events. Everything is read-only, and every piece of
  // a transcript reaches the page as text, never as markup.
;(() => {
  const PAGE = 200
  const LONG = 600
  // The package's one parser of stored messages (messages.js), served beside
  // this page.
  const { parseContent, contentBlocks, toolResultText, sessionKind } = window.ErenMessages

  const $ = (selector) => document.querySelector(selector)
  function el(tag, className, text) {
    const node = document.createElement(tag)
    if (className) node.className = className
    if (text !== undefined) node.textContent = text
    return node
  }
  const pretty = (value) => (typeof value === 'string' ? value : JSON.stringify(value, null, 2))
  const when = (ms) => new Date(ms).toISOString().replace('T', ' ').slice(0, 19)

  // ---- the session list ----
  // The server sends the whole list once, then each changed session's row.
  let selected = null
  const dollars = (usd) => (usd > 0 ? `$${usd.toFixed(usd < 1 ? 4 : 2)}` : '')
  function row(s) {
    const tr = el('tr', `session-row${s.id === selected ? ' selected' : ''}${s.archived ? ' archived' : ''}`)
    tr.dataset.id = s.id
    const badge = el('span', `badge ${s.agentStatus}`, s.closed ? `${s.agentStatus}, closed` : s.agentStatus)
    const status = el('td')
    status.append(badge)
    const name = el('td', 'title')
    name.append(el('span', 'name', s.title || s.id))
    for (const tag of s.tags) name.append(el('span', 'tag', tag))
    tr.append(
      name,
      status,
      el('td', 'count', String(s.messageCount)),
      el('td', 'cost', dollars(s.costUsd)),
      el('td', '', when(s.createdAt)),
      el('td', '', s.claudeSessionId || '-'),
    )
    tr.title = s.errorMessage || s.id
    tr.addEventListener('click', () => {
      location.hash = `#/s/${encodeURIComponent(s.id)}`
    })
    return tr
  }
  const rowOf = (id) => document.querySelector(`.session-row[data-id="${CSS.escape(id)}"]`)
  const list = new EventSource('api/sessions/stream')
  list.addEventListener('sessions', (e) => $('#sessions tbody').replaceChildren(...JSON.parse(e.data).map(row)))
  list.addEventListener('session', (e) => {
    const s = JSON.parse(e.data)
    const old = rowOf(s.id)
    if (old) old.replaceWith(row(s))
    else $('#sessions tbody').append(row(s))
  })
  list.addEventListener('removed', (e) => rowOf(JSON.parse(e.data))?.remove())

  // ---- one session ----
  let view = null

  function open() {
    const match = location.hash.match(/^#\/s\/([^?]*)(?:\?after=(\d+))?$/)
    if (view) view.close()
    view = null
    for (const row of document.querySelectorAll('.session-row')) row.classList.toggle('selected', false)
    if (!match) return
    selected = decodeURIComponent(match[1])
    for (const row of document.querySelectorAll('.session-row'))
      row.classList.toggle('selected', row.dataset.id === selected)
    view = sessionView(selected, match[2] === undefined ? null : Number(match[2]))
  }
  window.addEventListener('hashchange', open)

  async function fetchPage(id, params) {
    const query = new URLSearchParams({ id, ...params })
    const response = await fetch(`api/session?${query}`)
    if (!response.ok) throw new Error((await response.json()).message)
    return response.json()
  }

  function sessionView(id, after) {
    const main = $('#view')
    const header = el('header')
    const title = el('h2', '', id)
    const meta = el('div', 'meta')
    header.append(title, meta)
    const older = el('p', 'older')
    const list = el('div', 'messages')
    main.replaceChildren(header, older, list)
    let session = null // as first loaded
    let first = null // the lowest sequence shown
    let last = after ?? 0
    let kind = null // 'claude' | 'pty' | 'lines', from the messages
    let terminal = null
    let stream = null
    let closed = false
    let loadingOlder = false

    function decide(messages) {
      if (kind) return
      kind = sessionKind(messages.map((m) => parseContent(m.content)))
      if (kind === 'pty') {
        terminal = new window.Terminal({ cols: 120, rows: 36, convertEol: false, scrollback: 5000 })
        const box = el('div')
        box.id = 'terminal'
        list.append(box)
        terminal.open(box)
        window.studioTerminal = terminal
      }
    }

    function show(messages, where) {
      decide(messages)
      if (kind === 'pty') {
        for (const m of messages) {
          const event = parseContent(m.content)
          if (event.type === 'terminal_output') terminal.write(event.content)
          else if (event.type === 'terminal_finished') list.append(finished(event))
        }
        return
      }
      const nodes = messages.map(render).filter(Boolean)
      if (where === 'top') list.prepend(...nodes)
      else list.append(...nodes)
    }

    function render(m) {
      const event = parseContent(m.content)
      let node
      if (event.type === 'unparsed') node = block('other', 'message', event.text)
      else if (event.type === 'other') node = block('other', 'message', pretty(event.value))
      else {
        try {
          node = kind === 'lines' ? line(event) : claude(event)
        } catch {
          // A known type in a shape this page cannot read: shown as it is,
          // and the rest of the session (and its live following) goes on.
          node = block('other', event.type, pretty(event))
        }
      }
      if (!node) return null
      node.classList.add('msg')
      node.dataset.seq = String(m.sequenceNumber)
      node.title = `#${m.sequenceNumber} at ${when(m.createdAt)}`
      return node
    }

    function line(event) {
      if (event.type === 'terminal_output') return el('p', `line ${event.stream}`, event.content)
      if (event.type === 'terminal_finished') return finished(event)
      if (event.type === 'run_interrupted') return el('p', 'error-event', 'The host ended during the run.')
      return block('other', event.type, pretty(event))
    }

    function finished(event) {
      const how = event.signal ? `killed by ${event.signal}` : `exited with code ${event.exit_code}`
      return el('p', 'finished', `${how}${event.stopped ? ' (stopped)' : ''}`)
    }

    function block(className, label, text) {
      const node = el('div', className)
      node.append(el('div', 'label', label))
      if (text !== undefined) node.append(el('div', 'text', text))
      return node
    }

    function collapsible(text) {
      if (text.length <= LONG) return el('pre', '', text)
      const details = el('details')
      details.append(
        el('summary', '', `${text.slice(0, 120).replace(/\s+/g, ' ')}... (${text.length} characters)`),
        el('pre', '', text),
      )
      return details
    }

    function claude(event) {
      switch (event.type) {
        case 'user': {
          const wrap = el('div')
          for (const part of contentBlocks(event)) {
            if (part.type === 'text') wrap.append(block('user-text', 'user', part.text))
            else if (part.type === 'tool_result') {
              const result = block(
                `tool-result${part.is_error ? ' error-event' : ''}`,
                `tool result${part.is_error ? ' (error)' : ''}`,
              )
              result.append(collapsible(toolResultText(part)))
              wrap.append(result)
            }
          }
          return wrap.childElementCount === 1 ? wrap.firstChild : wrap
        }
        case 'assistant': {
          const wrap = el('div')
          for (const part of contentBlocks(event)) {
            if (part.type === 'text') wrap.append(block('assistant-text', 'assistant', part.text))
            else if (part.type === 'thinking') wrap.append(block('system', 'thinking', part.thinking))
            else if (part.type === 'tool_use') {
              const call = block('tool-call', `tool call: ${part.name}`)
              call.dataset.tool = part.name
              if (part.name === 'AskUserQuestion') {
                for (const q of part.input?.questions ?? []) {
                  call.append(el('div', 'question', q.question))
                  if (q.options)
                    call.append(
                      el(
                        'pre',
                        '',
                        q.options.map((o) => `- ${o.label}${o.description ? `: ${o.description}` : ''}`).join('\n'),
                      ),
                    )
                }
              } else {
                call.append(collapsible(pretty(part.input)))
              }
              wrap.append(call)
            }
          }
          if (event.error) wrap.append(block('error-event', 'error', pretty(event.error)))
          return wrap.childElementCount === 1 ? wrap.firstChild : wrap
        }
        case 'control_request': {
          const request = event.request ?? {}
          if (request.subtype !== 'can_use_tool') return block('system', `control request: ${request.subtype}`)
          const node = block('permission', `permission request: ${request.tool_name}`)
          node.dataset.request = event.request_id
          node.append(collapsible(pretty(request.input)))
          return node
        }
        case 'control_response': {
          const response = event.response ?? {}
          if (response.subtype === 'error') return block('error-event decision', 'control error', response.error)
          const decision = response.response ?? {}
          if (!decision.behavior) return null
          const node = block(`decision ${decision.behavior}`, `decision: ${decision.behavior}`)
          node.dataset.request = response.request_id
          if (decision.behavior === 'deny') node.append(el('div', 'text', decision.message || ''))
          else if (decision.updatedInput?.answers)
            node.append(el('pre', 'answers', pretty(decision.updatedInput.answers)))
          return node
        }
        case 'result': {
          const bad = event.is_error || (event.subtype && event.subtype !== 'success')
          const facts = [
            event.subtype,
            event.duration_ms !== undefined ? `${(event.duration_ms / 1000).toFixed(1)} s` : null,
            event.total_cost_usd !== undefined ? `$${Number(event.total_cost_usd).toFixed(4)}` : null,
            event.num_turns !== undefined ? `${event.num_turns} turns` : null,
          ].filter(Boolean)
          const node = block(`result${bad ? ' error-event' : ''}`, `result: ${facts.join(', ')}`)
          const text = event.result ?? (event.errors || []).join('\n')
          if (text) node.append(el('div', 'text', text))
          return node
        }
        case 'system':
          if (event.subtype === 'init')
            return block('system', `session started: ${event.model ?? ''} in ${event.cwd ?? ''}`)
          return block('system', `system: ${event.subtype ?? ''}`)
        case 'stream_event':
          return null
        case 'claude_stderr':
          return block('stderr', 'stderr', event.content)
        case 'claude_output':
          return block('other', 'output', event.content)
        case 'claude_output_truncated':
          return block('error-event', `line of ${event.bytes} bytes, truncated`, event.head)
        case 'run_interrupted':
          return block('error-event', 'interrupted', 'The host ended during the run.')
        case 'terminal_finished':
          return finished(event)
        default:
          return block('other', event.type ?? 'message', pretty(event))
      }
    }

    function follow(fromSequence) {
      stream = new EventSource(`api/session/stream?${new URLSearchParams({ id, after: String(fromSequence) })}`)
      stream.addEventListener('message', (e) => {
        const m = JSON.parse(e.data)
        if (m.sequenceNumber <= last) return
        last = m.sequenceNumber
        if (first === null) first = m.sequenceNumber
        show([m], 'bottom')
        describe()
      })
      // Dropped (the server drops a client that falls too far behind) or
      // cut: follow again from the last message shown, not from the start.
      stream.addEventListener('error', () => {
        stream.close()
        if (!closed) setTimeout(() => closed || follow(last), 1000)
      })
    }

    /** The header line: the session as loaded, with the count as it grows. */
    function describe() {
      const count = Math.max(session.messageCount, last)
      const claude = session.claudeSessionId ? `, Claude session ${session.claudeSessionId}` : ''
      meta.textContent = `${session.agentStatus}, ${count} messages, created ${when(session.createdAt)}${claude}`
    }

    function showOlder() {
      const left = first !== null && kind !== 'pty' ? first - 1 : 0
      older.textContent = left > 0 ? `${left} older messages: scroll up to load them` : ''
    }

    async function loadOlder() {
      if (loadingOlder || first === null || first <= 1 || kind === 'pty') return
      loadingOlder = true
      const { messages } = await fetchPage(id, { before: String(first), limit: String(PAGE) })
      const height = main.scrollHeight
      show(messages, 'top')
      if (messages.length) first = messages[0].sequenceNumber
      main.scrollTop += main.scrollHeight - height
      showOlder()
      loadingOlder = false
    }

    async function start() {
      const params = after === null ? { limit: String(PAGE) } : { after: String(after), limit: String(PAGE) }
      const page = await fetchPage(id, params)
      if (closed) return
      session = page.session
      let { messages } = page
      describe()
      decide(messages)
      if (kind === 'pty' && after === null && messages.length && messages[0].sequenceNumber > 1) {
        // A screen is the sum of everything printed: replay from the start.
        messages = []
        for (let from = 0; ; ) {
          const next = await fetchPage(id, { after: String(from), limit: '1000' })
          messages.push(...next.messages)
          if (next.messages.length < 1000) break
          from = next.messages[next.messages.length - 1].sequenceNumber
        }
      }
      if (messages.length) {
        first = messages[0].sequenceNumber
        last = messages[messages.length - 1].sequenceNumber
      }
      show(messages, 'bottom')
      showOlder()
      main.scrollTop = main.scrollHeight
      main.onscroll = () => {
        if (main.scrollTop < 200) loadOlder()
      }
      follow(last)
      document.body.dataset.loaded = id
    }

    start().catch((error) => {
      list.replaceChildren(el('p', 'error-event', error.message))
    })
    return {
      close() {
        closed = true
        stream?.close()
        terminal?.dispose()
        main.onscroll = null
        delete document.body.dataset.loaded
      },
    }
  }

  open()
})()
