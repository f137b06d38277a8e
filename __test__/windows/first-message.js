// The first stored message of a run that matches, as an onMessage callback
// and a Promise of its parsed content (the Windows suite and its host).
function firstMessage(matches = () => true) {
  let found
  const message = new Promise((resolve) => {
    found = resolve
  })
  const onMessage = (stored) => {
    const content = JSON.parse(stored.content)
    if (matches(content)) found(content)
  }
  return { message, onMessage }
}

const isStdout = (content) => content.stream === 'stdout'

module.exports = { firstMessage, isStdout }
