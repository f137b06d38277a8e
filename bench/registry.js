'use strict'
// Registry throughput and stop-to-callback latency. Numbers to report, not
// assertions. Run with `npm run bench:registry`.
const { performance } = require('node:perf_hooks')
const { ProcessRegistry } = require('..')

const CYCLES = Number(process.env.CYCLES || 100000)
const LATENCY_SAMPLES = Number(process.env.SAMPLES || 5000)

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]
}

async function throughput() {
  const registry = new ProcessRegistry()
  let delivered = 0
  let resolve
  const done = new Promise((r) => (resolve = r))
  const start = performance.now()
  for (let i = 0; i < CYCLES; i++) {
    const id = `s${i}`
    registry.register(id).onStop(() => {
      if (++delivered === CYCLES) resolve()
    })
    registry.stop(id)
  }
  await done
  const seconds = (performance.now() - start) / 1000
  return CYCLES / seconds
}

async function latency() {
  const registry = new ProcessRegistry()
  const samples = []
  for (let i = 0; i < LATENCY_SAMPLES; i++) {
    const id = `l${i}`
    const handle = registry.register(id)
    const called = new Promise((resolve) => handle.onStop(resolve))
    const start = performance.now()
    registry.stop(id)
    await called
    samples.push((performance.now() - start) * 1000)
  }
  samples.sort((a, b) => a - b)
  return { median: percentile(samples, 50), p99: percentile(samples, 99) }
}

async function main() {
  await throughput() // warm-up
  const rate = await throughput()
  const { median, p99 } = await latency()
  console.log(`register+onStop+stop cycles/s: ${Math.round(rate).toLocaleString('en-US')} (${CYCLES} cycles)`)
  console.log(
    `stop-to-callback latency: median ${median.toFixed(1)} µs, p99 ${p99.toFixed(1)} µs (${LATENCY_SAMPLES} samples)`,
  )
}

main()
