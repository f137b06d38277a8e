'use strict'
// eren-machines/messages: the one parser of stored messages that the CLI,
// the studio and hosts share. Its kinds are the core's, it never throws on
// any content, and what the runner stores reads back as it was printed.
const path = require('node:path')
const {
  MAX_LINE_BYTES,
  ProcessRegistry,
  SessionStore,
  claudeBridge,
  messageKinds,
  spawnTerminal,
  terminalBridge,
} = require('..')
const messages = require('../messages')
const { runNode, tempDirs } = require('./helpers')

const tmpDir = tempDirs('eren-messages-')
const CLI = path.join(__dirname, '..', 'bin', 'eren-machines.js')

/** The Claude CLI prints a user message's content as a string after a compaction. */
const COMPACTED = JSON.stringify({
  type: 'user',
  message: {
    role: 'user',
    content: '<local-command-stdout>Compacted (ctrl+o to see full summary)</local-command-stdout>',
  },
  session_id: 's-1',
})

describe('eren-machines/messages', () => {
  test("its kinds are the core's, not a copy that can drift", () => {
    expect([...messages.KINDS].sort()).toEqual([...messageKinds()].sort())
    expect(MAX_LINE_BYTES).toBe(1 << 20)
  })

  test('every kind the package stores parses to its type, as stored', async () => {
    const store = SessionStore.inMemory()
    const id = await store.createSession('k')
    await terminalBridge.storeStdout(store, id, 'built')
    await terminalBridge.storeFinished(store, id, 0)
    const run = await spawnTerminal({
      store,
      registry: new ProcessRegistry(),
      sessionId: id,
      command: 'sh',
      args: ['-c', 'echo out; echo err >&2; exit 3'],
      env: { EREN_TEST_CHILD: '1' },
    })
    await run.exited
    const parsed = (await store.messages(id)).map(messages.parseMessage)
    expect(parsed).toEqual([
      { type: 'terminal_output', stream: 'stdout', content: 'built' },
      { type: 'terminal_finished', exit_code: 0 },
      expect.objectContaining({ type: 'terminal_output', content: 'out' }),
      expect.objectContaining({ type: 'terminal_output', content: 'err' }),
      { type: 'terminal_finished', exit_code: 3, signal: null, stopped: false },
    ])
    expect(messages.sessionKind(parsed)).toBe('lines')
    expect(parsed.map((c) => messages.renderText(c)?.text)).toEqual([
      'built',
      '[finished: exit code 0]',
      'out',
      'err',
      '[finished: exit code 3]',
    ])
    await store.close()
  })

  test('any content parses and renders without throwing, and shapes it does not know are kept', () => {
    const contents = [
      '',
      'plain text',
      'null',
      '[1,2]',
      '42',
      '{"no":"type"}',
      '{"type":"from_a_later_cli","x":1}',
      '{"type":"assistant"}',
      '{"type":"assistant","message":null}',
      '{"type":"assistant","message":{"content":[null,1,"x",{"type":"text","text":"hi"},{"type":"tool_use","name":"Bash","input":{"command":"ls"}}]}}',
      '{"type":"user","message":{"content":[{"type":"tool_result","content":[{"type":"text","text":"a"},{"x":1}]}]}}',
      '{"type":"user","message":{"content":{"not":"an array"}}}',
      '{"type":"result","is_error":true,"errors":["max turns"]}',
      '{"type":"system","subtype":"init"}',
      '{"type":"terminal_output","stream":"pty","content":"\\u001b[1mbold"}',
      '{"type":"terminal_finished","exit_code":null,"signal":"SIGKILL","stopped":true}',
      COMPACTED,
    ]
    for (const content of contents) {
      const parsed = messages.parseContent(content)
      expect(typeof parsed.type).toBe('string')
      expect(() => messages.renderText(content, { maxLineBytes: MAX_LINE_BYTES })).not.toThrow()
      expect(() => messages.contentBlocks(parsed)).not.toThrow()
    }
    expect(messages.parseContent('plain text')).toEqual({ type: 'unparsed', text: 'plain text' })
    expect(messages.parseContent('[1,2]')).toEqual({ type: 'other', value: [1, 2] })
    expect(messages.parseContent('{"type":"from_a_later_cli","x":1}')).toEqual({
      type: 'other',
      value: { type: 'from_a_later_cli', x: 1 },
    })
    const assistant = messages.renderText(contents[9])
    expect(assistant).toEqual({ stream: 'stdout', text: 'hi\n⏺ Bash({"command":"ls"})' })
    expect(messages.renderText(contents[10]).text).toBe('  ⎿ a')
    expect(messages.renderText(contents[12])).toEqual({ stream: 'stderr', text: '✖ ["max turns"]' })
    expect(messages.renderText(contents[15]).text).toBe('[finished: signal SIGKILL, stopped]')
  })

  test("a user message whose content is a string (after a compaction) is one text block, and the CLI's log shows the session", async () => {
    expect(messages.contentBlocks(messages.parseContent(COMPACTED))).toEqual([
      { type: 'text', text: '<local-command-stdout>Compacted (ctrl+o to see full summary)</local-command-stdout>' },
    ])
    const db = path.join(tmpDir(), 'sessions.db')
    const store = SessionStore.open(db)
    const id = await store.createSession('compacted')
    await claudeBridge.storeEvent(store, id, COMPACTED)
    await claudeBridge.storeEvent(store, id, '{"type":"result","subtype":"success","result":"after the compaction"}')
    await store.close()
    const log = await runNode(CLI, ['log', id, '--db', db])
    expect(log.stderr).toBe('')
    expect(log.code).toBe(0)
    expect(log.stdout).toBe('✔ after the compaction\n')
  })

  test('the pieces of a line over MAX_LINE_BYTES render as one line', async () => {
    const store = SessionStore.inMemory()
    const id = await store.createSession('long')
    const bytes = MAX_LINE_BYTES * 2 + 100
    const run = await spawnTerminal({
      store,
      registry: new ProcessRegistry(),
      sessionId: id,
      command: process.execPath,
      args: ['-e', `process.stdout.write('é'.repeat(${bytes / 2}) + '\\nnext\\n')`],
      env: { EREN_TEST_CHILD: '1' },
    })
    await run.exited
    const shown = (await store.messages(id))
      .map((m) => messages.renderText(m.content, { maxLineBytes: MAX_LINE_BYTES }))
      .filter((r) => r.stream === 'stdout')
    expect(shown.map((r) => Boolean(r.continues))).toEqual([true, true, false, false])
    expect(
      shown
        .slice(0, 3)
        .map((r) => r.text)
        .join(''),
    ).toBe('é'.repeat(bytes / 2))
    expect(shown[3].text).toBe('next')
    await store.close()
  })
})
