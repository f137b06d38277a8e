'use strict'
const path = require('node:path')
const { Worker } = require('node:worker_threads')
const { ProcessRegistry, StopHandle, ProcessStatus } = require('..')
const { deferred, nextTurn, runNode, isError, thrownBy, thrownCode } = require('./helpers')

const fixture = (name) => path.join(__dirname, 'fixtures', name)

/** A promise for the next call of a stop callback, and the callback. */
function stopSpy() {
  const calls = []
  const called = deferred()
  const cb = (id) => {
    calls.push(id)
    called.resolve(id)
  }
  return { calls, called: called.promise, cb }
}

describe('ProcessRegistry basics', () => {
  test('starts empty', () => {
    const registry = new ProcessRegistry()
    expect(registry.count()).toBe(0)
    expect(registry.isEmpty()).toBe(true)
    expect(registry.sessionIds()).toEqual([])
  })

  test('register adds a running session and returns its handle', () => {
    const registry = new ProcessRegistry()
    const handle = registry.register('a')
    expect(handle).toBeInstanceOf(StopHandle)
    expect(handle.sessionId).toBe('a')
    expect(handle.stopped).toBe(false)
    expect(handle.signal).toBeInstanceOf(AbortSignal)
    expect(handle.signal.aborted).toBe(false)
    expect(registry.status('a')).toBe('running')
    expect(registry.status('a')).toBe(ProcessStatus.Running)
    expect(registry.count()).toBe(1)
    expect(registry.isEmpty()).toBe(false)
  })

  test('ProcessStatus values are the strings', () => {
    expect(ProcessStatus.Running).toBe('running')
    expect(ProcessStatus.NotRunning).toBe('not_running')
  })

  test('a duplicate register throws ALREADY_RUNNING naming the id', () => {
    const registry = new ProcessRegistry()
    registry.register('dup')
    const error = thrownBy(() => registry.register('dup'))
    expect(isError(error)).toBe(true)
    expect(error.code).toBe('ALREADY_RUNNING')
    expect(error.message).toContain('dup')
    expect(registry.count()).toBe(1)
  })

  test('status of an unknown id is not_running', () => {
    expect(new ProcessRegistry().status('ghost')).toBe('not_running')
  })

  test('several sessions, sessionIds sorted ascending', () => {
    const registry = new ProcessRegistry()
    for (const id of ['zeta', 'alpha', 'mid', 'Beta']) registry.register(id)
    expect(registry.count()).toBe(4)
    expect(registry.sessionIds()).toEqual(['Beta', 'alpha', 'mid', 'zeta'])
  })

  test('stopping an unknown id returns false; removing one returns false', () => {
    const registry = new ProcessRegistry()
    registry.register('a')
    expect(registry.stop('nope')).toBe(false)
    expect(registry.remove('nope')).toBe(false)
    expect(registry.count()).toBe(1)
  })

  test('stopping one of many leaves the others running', () => {
    const registry = new ProcessRegistry()
    for (const id of ['a', 'b', 'c']) registry.register(id)
    expect(registry.stop('b')).toBe(true)
    expect(registry.sessionIds()).toEqual(['a', 'c'])
    expect(registry.status('b')).toBe('not_running')
  })

  test('re-registering after stop and after remove is allowed', () => {
    const registry = new ProcessRegistry()
    registry.register('a')
    expect(registry.stop('a')).toBe(true)
    registry.register('a')
    expect(registry.remove('a')).toBe(true)
    expect(registry.register('a').sessionId).toBe('a')
    expect(registry.count()).toBe(1)
  })
})

describe('invalid arguments', () => {
  const registry = new ProcessRegistry()

  test('empty and over-long ids are INVALID_ARGUMENT', () => {
    expect(thrownCode(() => registry.register(''))).toBe('INVALID_ARGUMENT')
    expect(thrownCode(() => registry.register('x'.repeat(257)))).toBe('INVALID_ARGUMENT')
    // 86 characters, but 258 UTF-8 bytes.
    expect(thrownCode(() => registry.register('€'.repeat(86)))).toBe('INVALID_ARGUMENT')
    expect(registry.register('x'.repeat(256)).sessionId).toHaveLength(256)
    expect(thrownCode(() => registry.onStop('', () => {}))).toBe('INVALID_ARGUMENT')
  })

  test('wrong JS types throw INVALID_ARGUMENT instead of crashing', () => {
    registry.register('typed')
    const handle = registry.register('typed-handle')
    for (const bad of [undefined, null, 42, {}, [], Symbol('s')]) {
      expect(thrownCode(() => registry.register(bad))).toBe('INVALID_ARGUMENT')
      expect(thrownCode(() => registry.stop(bad))).toBe('INVALID_ARGUMENT')
      expect(thrownCode(() => registry.remove(bad))).toBe('INVALID_ARGUMENT')
      expect(thrownCode(() => registry.status(bad))).toBe('INVALID_ARGUMENT')
      expect(thrownCode(() => registry.onStop(bad, () => {}))).toBe('INVALID_ARGUMENT')
      expect(thrownCode(() => registry.onStop('typed', bad))).toBe('INVALID_ARGUMENT')
      expect(thrownCode(() => handle.onStop(bad))).toBe('INVALID_ARGUMENT')
    }
    expect(registry.status('typed')).toBe('running')
  })

  test('onStop for an id that is not registered throws NOT_RUNNING', () => {
    const error = thrownBy(() => registry.onStop('not-here', () => {}))
    expect(error.code).toBe('NOT_RUNNING')
    expect(error.message).toContain('not-here')
  })
})

describe('stop delivery', () => {
  test('stop removes the entry, then calls every callback once, after stop() returns, in subscription order', async () => {
    const registry = new ProcessRegistry()
    const handle = registry.register('s')
    const order = []
    handle.onStop((id) => order.push(`handle-1:${id}`))
    registry.onStop('s', (id) => order.push(`registry-2:${id}`))
    handle.onStop((id) => order.push(`handle-3:${id}`))
    const last = stopSpy()
    registry.onStop('s', last.cb)

    expect(registry.stop('s')).toBe(true)
    expect(order).toEqual([])
    expect(registry.status('s')).toBe('not_running')
    expect(registry.count()).toBe(0)
    expect(handle.stopped).toBe(true)

    await last.called
    await nextTurn()
    expect(order).toEqual(['handle-1:s', 'registry-2:s', 'handle-3:s'])
    expect(last.calls).toEqual(['s'])
  })

  test('the handle signal aborts when this registration is stopped', async () => {
    const registry = new ProcessRegistry()
    const handle = registry.register('sig')
    const signal = handle.signal
    expect(handle.signal).toBe(signal)
    const aborted = new Promise((resolve) => signal.addEventListener('abort', resolve))
    registry.stop('sig')
    await aborted
    expect(signal.aborted).toBe(true)
    expect(signal.reason.name).toBe('AbortError')
  })

  test('a signal first read after stop is already aborted', () => {
    const registry = new ProcessRegistry()
    const handle = registry.register('late-signal')
    registry.stop('late-signal')
    expect(handle.signal.aborted).toBe(true)
  })

  test('the signal can be handed to child_process.spawn', async () => {
    const { spawn } = require('node:child_process')
    const registry = new ProcessRegistry()
    const handle = registry.register('child')
    const child = spawn('sleep', ['30'], { signal: handle.signal })
    child.on('error', () => {})
    const closed = new Promise((resolve) => child.on('close', (_code, signal) => resolve(signal)))
    registry.stop('child')
    expect(await closed).toBe('SIGTERM')
  })

  test('onStop on an already stopped handle calls back once, asynchronously', async () => {
    const registry = new ProcessRegistry()
    const handle = registry.register('s')
    registry.stop('s')
    const spy = stopSpy()
    handle.onStop(spy.cb)
    expect(spy.calls).toEqual([])
    await spy.called
    await nextTurn()
    expect(spy.calls).toEqual(['s'])
  })

  test('unsubscribe prevents the call and can be called any number of times', async () => {
    const registry = new ProcessRegistry()
    const handle = registry.register('u')
    const removed = stopSpy()
    const unsubscribe = handle.onStop(removed.cb)
    const removedToo = stopSpy()
    const unsubscribeToo = registry.onStop('u', removedToo.cb)
    const kept = stopSpy()
    handle.onStop(kept.cb)
    unsubscribe()
    unsubscribe()
    unsubscribeToo()
    registry.stop('u')
    await kept.called
    unsubscribe()
    await nextTurn()
    expect(removed.calls).toEqual([])
    expect(removedToo.calls).toEqual([])
    expect(kept.calls).toEqual(['u'])
  })

  test('remove() releases the entry and signals nobody', async () => {
    const registry = new ProcessRegistry()
    const handle = registry.register('r')
    const spy = stopSpy()
    handle.onStop(spy.cb)
    registry.onStop('r', spy.cb)
    const signal = handle.signal
    expect(registry.remove('r')).toBe(true)
    expect(registry.status('r')).toBe('not_running')
    expect(handle.stopped).toBe(false)

    // A later registration of the same id is stopped and delivered; the
    // removed one must still have heard nothing.
    const next = registry.register('r')
    const nextSpy = stopSpy()
    next.onStop(nextSpy.cb)
    registry.stop('r')
    await nextSpy.called
    await nextTurn()
    expect(spy.calls).toEqual([])
    expect(signal.aborted).toBe(false)
    expect(handle.stopped).toBe(false)
  })

  test('a later registration stop never reaches an earlier handle', async () => {
    const registry = new ProcessRegistry()
    const first = registry.register('g')
    const firstSpy = stopSpy()
    first.onStop(firstSpy.cb)
    registry.stop('g')
    await firstSpy.called

    const second = registry.register('g')
    const secondSpy = stopSpy()
    second.onStop(secondSpy.cb)
    registry.onStop('g', secondSpy.cb)
    registry.stop('g')
    await secondSpy.called
    await nextTurn()
    expect(firstSpy.calls).toEqual(['g'])
    expect(secondSpy.calls).toEqual(['g', 'g'])
    expect(first.stopped).toBe(true)
    expect(second.stopped).toBe(true)
  })

  test('registry.onStop subscribes to the current registration only', async () => {
    const registry = new ProcessRegistry()
    registry.register('c')
    const spy = stopSpy()
    registry.onStop('c', spy.cb)
    registry.remove('c')
    registry.register('c')
    const nextSpy = stopSpy()
    registry.onStop('c', nextSpy.cb)
    registry.stop('c')
    await nextSpy.called
    await nextTurn()
    expect(spy.calls).toEqual([])
  })

  test('a throwing callback does not starve the others and surfaces as uncaught', async () => {
    const result = await runNode(fixture('throwing-callback.js'))
    expect(result.code).toBe(0)
    expect(JSON.parse(result.stdout)).toEqual(['first', 'second', 'uncaught:boom', 'third'])
  })

  test('10,000 register/onStop/stop cycles deliver 10,000 callbacks', async () => {
    const registry = new ProcessRegistry()
    let delivered = 0
    const all = deferred()
    for (let i = 0; i < 10000; i++) {
      const id = `cycle-${i}`
      registry.register(id).onStop(() => {
        if (++delivered === 10000) all.resolve()
      })
      registry.stop(id)
    }
    await all.promise
    await nextTurn()
    expect(delivered).toBe(10000)
    expect(registry.count()).toBe(0)
  })
})

describe('host integration', () => {
  test('a script that only registers and subscribes exits by itself with code 0', async () => {
    const result = await runNode(fixture('idle-subscriber.js'), [], { timeout: 20000 })
    expect(result.signal).toBe(null)
    expect(result.code).toBe(0)
    expect(result.stdout).toContain('subscribed')
  })

  test('4 worker threads and the main thread use the addon at once; terminating workers mid-use leaves the host alive', async () => {
    const workers = [0, 1, 2, 3].map((index) => new Worker(fixture('registry-worker.js'), { workerData: { index } }))
    const progressed = workers.map(
      (worker) =>
        new Promise((resolve, reject) => {
          worker.on('error', reject)
          worker.on('message', (m) => {
            if (m.round >= 3) resolve(m)
          })
        }),
    )

    const registry = new ProcessRegistry()
    const mainSpy = stopSpy()
    registry.register('main').onStop(mainSpy.cb)
    registry.stop('main')

    const reports = await Promise.all(progressed)
    for (const report of reports) expect(report.delivered).toBeGreaterThan(0)
    await Promise.all(workers.map((w) => w.terminate()))

    // The host still works after its workers died mid-use.
    await mainSpy.called
    const after = stopSpy()
    registry.register('after').onStop(after.cb)
    registry.stop('after')
    expect(await after.called).toBe('after')
  })
})
