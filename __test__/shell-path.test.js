// loginShellPath() with fake login shells (SHELL pointing at a script), each
// in a fresh Node process because the answer is cached per process.
const fs = require('node:fs')
const path = require('node:path')
const { loginShellPath } = require('..')
const { ROOT, codeOf, runNode, settleGone, tempDirs } = require('./helpers')

const tmpDir = tempDirs('eren-shell-')

/** Writes an executable shell script; $2 is the script a login shell gets after -ilc. */
function fakeShell(body) {
  const file = path.join(tmpDir(), 'shell')
  fs.writeFileSync(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 })
  return file
}

/** Calls loginShellPath `calls` times in a fresh process; resolves with the answers. */
async function resolveWith(shell, { calls = 1, timeoutMs, env = {} } = {}) {
  const script = path.join(tmpDir(), 'ask.js')
  fs.writeFileSync(
    script,
    `const { loginShellPath } = require(${JSON.stringify(ROOT)})
;(async () => {
  const answers = []
  for (let i = 0; i < ${calls}; i++) answers.push(await loginShellPath(${timeoutMs ? `{ timeoutMs: ${timeoutMs} }` : ''}))
  console.log(JSON.stringify(answers))
})()`,
  )
  const result = await runNode(script, [], {
    env: { ...process.env, SHELL: shell, PATH: '/usr/bin:/bin', EREN_TEST_CHILD: '1', ...env },
  })
  expect(result.stderr).toBe('')
  return JSON.parse(result.stdout)
}

test('the login shell PATH is taken from between the noise its startup files print, once per process', async () => {
  const runs = path.join(tmpDir(), 'runs')
  const shell = fakeShell(
    `echo run >> ${runs}\necho 'Welcome! PATH=/decoy'\nPATH=/opt/homebrew/bin:/usr/local/bin:/usr/bin; export PATH\neval "$2"\necho 'bye'`,
  )
  expect(await resolveWith(shell, { calls: 2 })).toEqual([
    '/opt/homebrew/bin:/usr/local/bin:/usr/bin',
    '/opt/homebrew/bin:/usr/local/bin:/usr/bin',
  ])
  expect(fs.readFileSync(runs, 'utf8')).toBe('run\n')
})

// The shell would hang for 300 s: an answer at all shows the bound held.
test('a shell that hangs gives the inherited PATH after timeoutMs, and its process group is killed', async () => {
  const pidFile = path.join(tmpDir(), 'pid')
  const shell = fakeShell(`sleep 300 & echo $! > ${pidFile}\nwait`)
  expect(await resolveWith(shell, { timeoutMs: 300 })).toEqual(['/usr/bin:/bin'])
  expect(await settleGone(Number(fs.readFileSync(pidFile, 'utf8')))).toBe(true)
})

test('a shell that fails gives the inherited PATH, and is asked again next time', async () => {
  const runs = path.join(tmpDir(), 'runs')
  const shell = fakeShell(`echo run >> ${runs}\nexit 1`)
  expect(await resolveWith(shell, { calls: 2 })).toEqual(['/usr/bin:/bin', '/usr/bin:/bin'])
  expect(fs.readFileSync(runs, 'utf8')).toBe('run\nrun\n')
})

test('bad options are INVALID_ARGUMENT', async () => {
  expect(await codeOf(() => loginShellPath({ timeoutMs: -5 }))).toBe('INVALID_ARGUMENT')
  expect(await codeOf(() => loginShellPath('fast'))).toBe('INVALID_ARGUMENT')
})

// zsh is the login shell of macOS, where desktop apps get the least PATH.
// Its startup files live in ZDOTDIR: .zprofile (login) and .zshrc
// (interactive) are both read, since users set PATH in either.
const zsh = ['/bin/zsh', '/usr/bin/zsh'].find((file) => fs.existsSync(file))
const withZsh = zsh ? test : test.skip
if (!zsh) console.warn('zsh is not installed: the zsh loginShellPath tests are skipped (macOS CI runs them)')

/** A ZDOTDIR with the given startup files. */
function zdotdir(files) {
  const dir = tmpDir()
  for (const [name, body] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), `${body}\n`)
  return dir
}

withZsh('zsh as a login and interactive shell: PATH from .zprofile and .zshrc, through their noise', async () => {
  const dir = zdotdir({
    '.zprofile': "echo 'Last login: PATH=/decoy'\npath=(/opt/homebrew/bin $path)",
    '.zshrc': "print -P '%F{green}welcome%f'\nexport PATH=$HOME/.local/bin:$PATH\necho rc done",
  })
  const [found] = await resolveWith(zsh, { env: { ZDOTDIR: dir, HOME: dir } })
  // The system's own files run first (macOS's path_helper reorders PATH),
  // so only the user's additions are certain to lead.
  expect(found.split(':').slice(0, 2)).toEqual([`${dir}/.local/bin`, '/opt/homebrew/bin'])
  expect(found.split(':')).toContain('/usr/bin')
})

withZsh('a .zshrc that hangs gives the inherited PATH after timeoutMs, and what it started is killed', async () => {
  const pidFile = path.join(tmpDir(), 'pid')
  const dir = zdotdir({ '.zshrc': `sleep 300 &\necho $! > ${pidFile}\nwait` })
  expect(await resolveWith(zsh, { timeoutMs: 500, env: { ZDOTDIR: dir, HOME: dir } })).toEqual(['/usr/bin:/bin'])
  expect(await settleGone(Number(fs.readFileSync(pidFile, 'utf8')))).toBe(true)
})
