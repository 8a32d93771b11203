// A whole Bluesky network on loopback for the tests: PLC, PDS, AppView (bsky), bsync, Ozone
// (@atproto/dev-env's TestNetwork; see ../../README.md "Tests").
// Usage: REDIS_HOST=127.0.0.1:6379 node_modules/.bin/node start.mjs
// Env: DB_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres),
//      NETWORK_SCHEMA (letters and _ only; default a random one),
//      PDS_PORT (the PDS's public port, named in DID documents),
//      PDS_LISTEN_PORT (where it really listens: a fault proxy sits at PDS_PORT), BSKY_PORT.
// Prints one JSON line {pds, pds_listen, appview, plc, schema} once ready, then runs until
// SIGTERM/SIGINT, when it drops its database schemas.
import net from 'node:net'
import { TestNetwork } from '@atproto/dev-env'

const pdsPort = Number(process.env.PDS_PORT || 0) || undefined
const pdsListen = Number(process.env.PDS_LISTEN_PORT || 0) || pdsPort

// Every listen(port) in this process binds 127.0.0.1; the PDS's public port is remapped to
// its listen port, so that a fault-injecting proxy can own the public one.
const origListen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  const a0 = args[0]
  if (typeof a0 === 'number' || (typeof a0 === 'string' && /^\d+$/.test(a0))) {
    if (pdsPort && Number(a0) === pdsPort) args[0] = pdsListen
    if (typeof args[1] !== 'string') args.splice(1, 0, '127.0.0.1')
  } else if (a0 && typeof a0 === 'object' && a0.path === undefined && !a0.host) {
    const port = a0.port && pdsPort && Number(a0.port) === pdsPort ? pdsListen : a0.port
    args[0] = { ...a0, port, host: '127.0.0.1' }
  }
  return origListen.apply(this, args)
}

const schema = process.env.NETWORK_SCHEMA ||
  'net_' + Array.from({ length: 10 }, () => 'abcdefghijklmnopqrstuvwxyz'[Math.floor(Math.random() * 26)]).join('')
// Only set keys that are given: dev-env spreads these objects last, so {port: undefined}
// would replace its free port with the PDS's default 2583.
const bsky = process.env.BSKY_PORT ? { port: Number(process.env.BSKY_PORT) } : {}
// the AppView reads the PDS's firehose (a WebSocket) at the real port, not through the proxy
if (pdsPort) bsky.repoProvider = `ws://localhost:${pdsListen}`
const t0 = Date.now()
const network = await TestNetwork.create({
  dbPostgresUrl: process.env.DB_POSTGRES_URL || 'postgresql://postgres@127.0.0.1:5432/postgres',
  dbPostgresSchema: schema,
  pds: pdsPort ? { port: pdsPort } : {},
  bsky,
})
console.log(JSON.stringify({
  pds: network.pds.url,
  pds_listen: `http://127.0.0.1:${pdsListen || network.pds.port}`,
  appview: network.bsky.url,
  plc: network.plc.url,
  schema,
  startupMs: Date.now() - t0,
}))

let stopping = false
const stop = async () => {
  if (stopping) return
  stopping = true
  try { await network.close() } catch (e) { console.error(e) }
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
