/* The types of eren-machines/messages (messages.js): the package's one parser of stored messages. */
import type { Message, MessageContent, ClaudeContentBlock } from './index'

export type { MessageContent, ClaudeContentBlock }

/** The `type`s this package writes itself; equal to the addon's `messageKinds()`. */
export declare const KINDS: readonly string[]
/** The Claude CLI's stream-json event types, stored as printed. */
export declare const CLAUDE_EVENT_TYPES: readonly string[]

/**
 * A message's content, parsed. Never throws: a JSON object of a known type
 * comes as it is, other JSON as `{ type: 'other', value }`, and text that is
 * not JSON as `{ type: 'unparsed', text }`.
 */
export declare function parseContent(content: string): MessageContent
/** `parseContent(message.content)`. */
export declare function parseMessage(message: Message): MessageContent

/**
 * The content blocks of a Claude `user` or `assistant` event: a string
 * `message.content` (the CLI prints one after a compaction) is one text
 * block; anything that is not a block is left out.
 */
export declare function contentBlocks(event: MessageContent): ClaudeContentBlock[]
/** A `tool_result` block's text, whatever shape the CLI gave it. */
export declare function toolResultText(block: ClaudeContentBlock): string
/** What a session holds, from its first telling message. */
export declare function sessionKind(contents: Iterable<MessageContent>): 'pty' | 'lines' | 'claude' | null
/** The first line of a value, cut to `max` characters (default 120). */
export declare function summarize(value: unknown, max?: number): string
/** How a `terminal_finished` reads: `exit code 0`, `signal SIGKILL, stopped`. */
export declare function describeFinished(content: Extract<MessageContent, { type: 'terminal_finished' }>): string

/** A message as terminal text. */
export interface RenderedText {
  stream: 'stdout' | 'stderr'
  text: string
  /** The text goes on in the next message (a piece of a split line, a terminal chunk): no newline after it. */
  continues?: boolean
}
/**
 * A content (a string, or one already parsed) as terminal text, as the
 * `eren-machines` CLI prints it; null for what is not shown. Never throws.
 * Pass the addon's `MAX_LINE_BYTES` to tell the pieces of a split line.
 */
export declare function renderText(
  content: string | MessageContent,
  opts?: { maxLineBytes?: number },
): RenderedText | null
