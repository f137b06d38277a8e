'use strict'
// How the CLI shows a stored message: terminal lines as they were printed,
// Claude events as readable text. Returns null for what is not shown.

function summarize(value, max = 120) {
  const text = typeof value === 'string' ? value : JSON.stringify(value)
  const line = String(text ?? '').split('\n')[0]
  return line.length > max ? `${line.slice(0, max - 1)}…` : line
}

function renderClaude(event) {
  switch (event.type) {
    case 'system':
      return event.subtype === 'init'
        ? { stream: 'stderr', text: `● Claude session ${event.session_id}${event.model ? ` (${event.model})` : ''}` }
        : null
    case 'assistant': {
      const parts = (event.message?.content || []).map((block) => {
        if (block.type === 'text') return block.text
        if (block.type === 'tool_use') return `⏺ ${block.name}(${summarize(block.input)})`
        return null
      })
      const text = parts.filter(Boolean).join('\n')
      return text ? { stream: 'stdout', text } : null
    }
    case 'user': {
      const results = (event.message?.content || []).filter((block) => block.type === 'tool_result')
      const text = results.map((r) => `  ⎿ ${summarize(r.content)}`).join('\n')
      return text ? { stream: 'stdout', text } : null
    }
    case 'result':
      return event.is_error
        ? { stream: 'stderr', text: `✖ ${summarize(event.result ?? event.subtype, 1000)}` }
        : { stream: 'stdout', text: `✔ ${event.result ?? 'done'}` }
    default:
      return null
  }
}

/** The runner stores a line over 1 MiB as pieces cut at a character boundary. */
const MAX_LINE = 1 << 20

/**
 * Whether a stored line is a piece of a longer one, to be echoed without a
 * newline so the line comes out whole. A piece is 1 MiB less at most the 3
 * bytes a cut before a character can lose; a line that long that ended by
 * itself is taken for a piece too, which costs only its newline.
 */
function isSplitPiece(text) {
  return typeof text === 'string' && text.length * 3 >= MAX_LINE - 3 && Buffer.byteLength(text) >= MAX_LINE - 3
}

/** `{ stream, text, continues? }` for a message's content, or null. */
function render(content) {
  let event
  try {
    event = JSON.parse(content)
  } catch {
    return { stream: 'stdout', text: content }
  }
  switch (event?.type) {
    case 'terminal_output':
      // A pseudo-terminal's chunks are raw screen output: printed as they came.
      if (event.stream === 'pty') return { stream: 'stdout', text: String(event.content), continues: true }
      return {
        stream: event.stream === 'stderr' ? 'stderr' : 'stdout',
        text: event.content,
        continues: isSplitPiece(event.content),
      }
    case 'terminal_finished': {
      // The bridge's storeFinished writes only exit_code; runs add signal and stopped.
      const how =
        event.exit_code != null
          ? `exit code ${event.exit_code}`
          : event.signal
            ? `signal ${event.signal}`
            : 'no exit code'
      return { stream: 'stderr', text: `[finished: ${how}${event.stopped ? ', stopped' : ''}]` }
    }
    default:
      return renderClaude(event || {})
  }
}

module.exports = { render }
