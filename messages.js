// eren-machines/messages: what a stored message's content means, for every
// reader of a session (the CLI, the studio page in a browser, a host's own
// UI). One parser, which never throws: every content parses to a
// `MessageContent` (see index.d.ts), whatever the Claude CLI printed.
//
// It runs in Node (require('eren-machines/messages')) and in a browser page
// as a plain script (window.ErenMessages), so it loads nothing itself.
;((root, factory) => {
  if (typeof module === 'object' && module.exports) module.exports = factory()
  else root.ErenMessages = factory()
})(typeof self !== 'undefined' ? self : this, () => {
  'use strict'

  /** The kinds this package writes itself (the core's `content::Kind`). */
  const KINDS = Object.freeze([
    'terminal_output',
    'terminal_finished',
    'claude_output',
    'claude_stderr',
    'claude_output_truncated',
    'run_interrupted',
  ])

  /** The events of the Claude CLI's stream-json protocol, stored as printed. */
  const CLAUDE_EVENT_TYPES = Object.freeze([
    'system',
    'assistant',
    'user',
    'result',
    'control_request',
    'control_response',
    'control_cancel_request',
    'stream_event',
  ])

  const KNOWN = new Set([...KINDS, ...CLAUDE_EVENT_TYPES])
  const CLAUDE = new Set([...CLAUDE_EVENT_TYPES, 'claude_output', 'claude_stderr', 'claude_output_truncated'])

  function isObject(value) {
    return value !== null && typeof value === 'object' && !Array.isArray(value)
  }

  /**
   * A content string as a `MessageContent`: a JSON object of a known type as
   * it is, any other JSON as `{ type: 'other', value }`, and text that is not
   * JSON as `{ type: 'unparsed', text }`.
   */
  function parseContent(content) {
    let value
    try {
      value = JSON.parse(content)
    } catch {
      return { type: 'unparsed', text: String(content) }
    }
    if (isObject(value) && KNOWN.has(value.type)) return value
    return { type: 'other', value }
  }

  /** `parseContent` of a stored `Message`. */
  function parseMessage(message) {
    return parseContent(message.content)
  }

  /**
   * The content blocks of a Claude `user` or `assistant` event. The CLI
   * prints `message.content` as an array of blocks, or as a plain string
   * (after a compaction, for local commands); a string is one text block,
   * and anything that is not a block is left out.
   */
  function contentBlocks(event) {
    const content = isObject(event?.message) ? event.message.content : undefined
    if (typeof content === 'string') return [{ type: 'text', text: content }]
    if (!Array.isArray(content)) return []
    return content.filter((block) => isObject(block) && typeof block.type === 'string')
  }

  /** A tool result's text, whatever shape the CLI gave it. */
  function toolResultText(block) {
    const content = block?.content
    if (typeof content === 'string') return content
    if (Array.isArray(content))
      return content.map((part) => (typeof part?.text === 'string' ? part.text : pretty(part))).join('\n')
    return content === undefined || content === null ? '' : pretty(content)
  }

  function pretty(value) {
    if (typeof value === 'string') return value
    try {
      return JSON.stringify(value, null, 2) ?? String(value)
    } catch {
      return String(value)
    }
  }

  /**
   * What a session holds, from its first telling message: `'pty'` (terminal
   * chunks), `'lines'` (terminal lines), `'claude'`, or null when none tells.
   */
  function sessionKind(contents) {
    for (const content of contents) {
      if (content.type === 'terminal_output') return content.stream === 'pty' ? 'pty' : 'lines'
      if (content.type === 'terminal_finished') return 'lines'
      if (CLAUDE.has(content.type)) return 'claude'
    }
    return null
  }

  /** The first line of a value (JSON on one line), cut to `max` characters. */
  function summarize(value, max = 120) {
    let text
    try {
      text = typeof value === 'string' ? value : JSON.stringify(value)
    } catch {
      text = String(value)
    }
    const line = String(text ?? '').split('\n')[0]
    return line.length > max ? `${line.slice(0, max - 1)}…` : line
  }

  /** How a terminal's end reads: `exit code 0`, `signal SIGKILL, stopped`. */
  function describeFinished(content) {
    const how =
      content.exit_code != null
        ? `exit code ${content.exit_code}`
        : content.signal
          ? `signal ${content.signal}`
          : 'no exit code'
    return `${how}${content.stopped ? ', stopped' : ''}`
  }

  function claudeText(event) {
    switch (event.type) {
      case 'system':
        return event.subtype === 'init'
          ? { stream: 'stderr', text: `● Claude session ${event.session_id}${event.model ? ` (${event.model})` : ''}` }
          : null
      case 'assistant': {
        const parts = contentBlocks(event).map((block) => {
          if (block.type === 'text') return String(block.text ?? '')
          if (block.type === 'tool_use') return `⏺ ${block.name}(${summarize(block.input)})`
          return null
        })
        const text = parts.filter(Boolean).join('\n')
        return text ? { stream: 'stdout', text } : null
      }
      case 'user': {
        const results = contentBlocks(event).filter((block) => block.type === 'tool_result')
        const text = results.map((result) => `  ⎿ ${summarize(toolResultText(result))}`).join('\n')
        return text ? { stream: 'stdout', text } : null
      }
      case 'result':
        return event.is_error
          ? { stream: 'stderr', text: `✖ ${summarize(event.result ?? event.errors ?? event.subtype, 1000)}` }
          : { stream: 'stdout', text: `✔ ${event.result ?? 'done'}` }
      default:
        // What the CLI printed beside its events, and bookkeeping.
        return null
    }
  }

  function contentText(content, maxLineBytes) {
    switch (content.type) {
      case 'terminal_output': {
        const text = String(content.content)
        // A pseudo-terminal's chunks are raw screen output: printed as they came.
        if (content.stream === 'pty') return { stream: 'stdout', text, continues: true }
        return {
          stream: content.stream === 'stderr' ? 'stderr' : 'stdout',
          text,
          continues: isPiece(text, maxLineBytes),
        }
      }
      case 'terminal_finished':
        return { stream: 'stderr', text: `[finished: ${describeFinished(content)}]` }
      case 'unparsed':
        return { stream: 'stdout', text: content.text }
      case 'other':
        // JSON that is no message this package knows: not shown, like
        // events of types the CLI adds later.
        return null
      default:
        return claudeText(content)
    }
  }

  /**
   * Whether a stored line is a piece of a longer one (terminal runs store a
   * line over `maxLineBytes` in pieces), to be echoed without a newline so
   * the line comes out whole. A piece is `maxLineBytes` less at most the 3
   * bytes a cut before a character can lose; a line that long that ended by
   * itself is taken for a piece too, which costs only its newline.
   */
  function isPiece(text, maxLineBytes) {
    if (!(maxLineBytes > 0) || text.length * 3 < maxLineBytes - 3) return false
    return new TextEncoder().encode(text).length >= maxLineBytes - 3
  }

  /**
   * A content as terminal text: `{ stream, text, continues? }`, or null for
   * what is not shown (partial stream events, bookkeeping, types it does not
   * know). Never throws: a known type in a shape it cannot read is shown as
   * its raw JSON. `maxLineBytes` (the
   * addon's `MAX_LINE_BYTES`) lets it tell pieces of a split line.
   */
  function renderText(content, opts = {}) {
    const parsed = typeof content === 'string' ? parseContent(content) : content
    try {
      return contentText(parsed, opts.maxLineBytes)
    } catch {
      return { stream: 'stdout', text: pretty(parsed) }
    }
  }

  return {
    KINDS,
    CLAUDE_EVENT_TYPES,
    parseContent,
    parseMessage,
    contentBlocks,
    toolResultText,
    sessionKind,
    summarize,
    describeFinished,
    renderText,
  }
})
