'use strict';
// Stand-in Rocket.Chat server (tests only). It reads Rocket.Chat's environment,
// connects to MongoDB with the official Node driver (so MONGO_URL, replicaSet,
// authSource and SCRAM are exercised for real), creates the first admin from
// ADMIN_* like Rocket.Chat does, registers itself in `instances`, and answers
// the endpoints the wizard and its tests use. It is not a chat server.

const http = require('http');
const net = require('net');
const os = require('os');
const path = require('path');
const crypto = require('crypto');
const { spawnSync } = require('child_process');
const { MongoClient } = require('mongodb');

const release = require(path.join(__dirname, 'release.json'));
const env = process.env;

function fail(message) {
  console.error(`rocketchat-standin: ${message}`);
  process.exit(1);
}

for (const name of ['ROOT_URL', 'MONGO_URL']) {
  if (!env[name]) fail(`${name} is required`);
}
const PORT = parseInt(env.PORT || '3000', 10);
const BIND_IP = env.BIND_IP || '0.0.0.0';
const INSTANCE_IP = env.INSTANCE_IP || '127.0.0.1';
const TCP_PORT = env.TCP_PORT ? parseInt(env.TCP_PORT, 10) : 0;
const instanceId = crypto.randomUUID();

// Rocket.Chat 7.9+ spawns deno for the apps engine; a tarball install without
// deno on PATH fails with "spawn deno ENOENT" (issues #33863, #33140).
if (release.requiresDeno) {
  const r = spawnSync('deno', ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) fail(`deno not usable: ${r.error ? r.error.message : r.stderr}`);
  console.log(`deno: ${r.stdout.split('\n')[0]}`);
}

function hashPassword(pass) {
  const salt = crypto.randomBytes(16).toString('hex');
  const hash = crypto.scryptSync(pass, salt, 32).toString('hex');
  return { scrypt: `${salt}:${hash}` };
}

function checkPassword(stored, pass) {
  if (!stored || !stored.scrypt) return false;
  const [salt, hash] = stored.scrypt.split(':');
  const got = crypto.scryptSync(pass, salt, 32);
  return crypto.timingSafeEqual(got, Buffer.from(hash, 'hex'));
}

function hashToken(token) {
  return crypto.createHash('sha256').update(token).digest('base64');
}

let db;
let mongoOk = false;

async function connect() {
  const client = new MongoClient(env.MONGO_URL, {
    serverSelectionTimeoutMS: parseInt(env.STANDIN_MONGO_TIMEOUT_MS || '15000', 10),
    appName: `rocketchat-standin-${PORT}`,
  });
  try {
    await client.connect();
    db = client.db();
    await db.command({ ping: 1 });
  } catch (err) {
    fail(`cannot connect to MongoDB (MONGO_URL host(s) ${redact(env.MONGO_URL)}): ${err.message}`);
  }
  mongoOk = true;
  client.on('serverHeartbeatFailed', () => { mongoOk = false; });
  client.on('serverHeartbeatSucceeded', () => { mongoOk = true; });
  return client;
}

function redact(url) {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}

async function ensureAdmin() {
  const username = env.ADMIN_USERNAME;
  const pass = env.ADMIN_PASS;
  if (!username || !pass) return;
  const users = db.collection('users');
  // Like Rocket.Chat: only when no admin exists yet, so a restart or a second
  // instance never creates another one or resets a changed password.
  const existing = await users.findOne({ roles: 'admin' });
  if (existing) {
    console.log(`admin exists (${existing.username}); ADMIN_* ignored`);
    return;
  }
  try {
    await users.insertOne({
      _id: crypto.randomBytes(9).toString('hex'),
      createdAt: new Date(),
      username,
      name: env.ADMIN_NAME || username,
      emails: [{ address: env.ADMIN_EMAIL || `${username}@localhost`, verified: true }],
      roles: ['admin', 'user'],
      type: 'user',
      active: true,
      services: { password: hashPassword(pass), resume: { loginTokens: [] } },
    });
    console.log(`created admin ${username}`);
  } catch (err) {
    if (err.code !== 11000) throw err;   // another instance won the race
  }
}

async function applySettings() {
  const settings = db.collection('rocketchat_settings');
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('OVERWRITE_SETTING_')) continue;
    const id = name.slice('OVERWRITE_SETTING_'.length);
    await settings.updateOne({ _id: id }, { $set: { value, _updatedAt: new Date() } }, { upsert: true });
  }
}

async function registerInstance() {
  const doc = {
    name: os.hostname(),
    _updatedAt: new Date(),
    extraInformation: {
      host: INSTANCE_IP,
      port: String(PORT),
      tcpPort: TCP_PORT,
      os: { type: os.type(), release: os.release() },
      nodeVersion: process.version,
    },
  };
  await db.collection('instances').updateOne(
    { _id: instanceId }, { $set: doc, $setOnInsert: { _createdAt: new Date() } }, { upsert: true });
}

function send(res, status, body, headers = {}) {
  const data = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': typeof body === 'string' ? 'text/plain' : 'application/json',
    'Content-Length': Buffer.byteLength(data),
    ...headers,
  });
  res.end(data);
}

function readJson(req) {
  return new Promise((resolve) => {
    let raw = '';
    req.on('data', (c) => { raw += c; if (raw.length > 1e6) req.destroy(); });
    req.on('end', () => { try { resolve(JSON.parse(raw || '{}')); } catch { resolve(null); } });
  });
}

function publicUser(u) {
  return { _id: u._id, username: u.username, name: u.name, roles: u.roles,
    emails: u.emails, active: u.active };
}

async function userFromHeaders(req) {
  const id = req.headers['x-user-id'];
  const token = req.headers['x-auth-token'];
  if (!id || !token) return null;
  const u = await db.collection('users').findOne({ _id: id });
  if (!u) return null;
  const tokens = ((u.services || {}).resume || {}).loginTokens || [];
  return tokens.some((t) => t.hashedToken === hashToken(token)) ? u : null;
}

const routes = {
  'GET /api/info': async () => [200, { version: release.version, success: true }],
  'GET /livez': async () => [200, 'OK'],
  'GET /health': async () => [200, 'OK'],     // deprecated alias, kept by Rocket.Chat
  'GET /readyz': async () => (mongoOk ? [200, 'OK'] : [503, 'Service Unavailable']),
  'POST /api/v1/login': async (req) => {
    const body = await readJson(req);
    if (!body) return [400, { success: false, error: 'invalid JSON' }];
    const name = body.user || body.username;
    const u = name && await db.collection('users').findOne(
      name.includes('@') ? { 'emails.address': name } : { username: name });
    if (!u || !checkPassword((u.services || {}).password, String(body.password || ''))) {
      return [401, { status: 'error', error: 'Unauthorized', message: 'Unauthorized' }];
    }
    const token = crypto.randomBytes(32).toString('base64url');
    const tokens = (((u.services || {}).resume || {}).loginTokens || []).slice(-9);
    tokens.push({ hashedToken: hashToken(token), when: new Date() });
    await db.collection('users').updateOne(
      { _id: u._id }, { $set: { 'services.resume.loginTokens': tokens } });
    return [200, { status: 'success', data: { userId: u._id, authToken: token, me: publicUser(u) } }];
  },
  'POST /api/v1/users.register': async (req) => {
    const body = await readJson(req);
    if (!body || !body.username || !body.pass || !body.email) {
      return [400, { success: false, error: 'username, email and pass are required' }];
    }
    const users = db.collection('users');
    if (await users.findOne({ username: body.username })) {
      return [400, { success: false, error: `${body.username} is already in use :(` }];
    }
    // Whatever the request says (roles, isAdmin...), a sign-up is a plain user.
    const u = {
      _id: crypto.randomBytes(9).toString('hex'),
      createdAt: new Date(),
      username: String(body.username),
      name: String(body.name || body.username),
      emails: [{ address: String(body.email), verified: false }],
      roles: ['user'],
      type: 'user',
      active: true,
      services: { password: hashPassword(String(body.pass)), resume: { loginTokens: [] } },
    };
    await users.insertOne(u);
    return [200, { user: publicUser(u), success: true }];
  },
  'GET /api/v1/me': async (req) => {
    const u = await userFromHeaders(req);
    if (!u) return [401, { status: 'error', message: 'You must be logged in to do this.' }];
    return [200, { ...publicUser(u), success: true }];
  },
};

async function handle(req, res) {
  const url = req.url.split('?')[0];
  const route = routes[`${req.method} ${url}`];
  if (!route) return send(res, 404, { success: false, error: 'Not found' });
  try {
    const [status, body] = await route(req);
    send(res, status, body);
  } catch (err) {
    console.error(`rocketchat-standin: ${req.method} ${url}: ${err.stack || err}`);
    send(res, 500, { success: false, error: 'internal error' });
  }
}

// --- WebSocket (RFC 6455), enough for Meteor's DDP handshake on /websocket ---
const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

function wsFrame(text) {
  const payload = Buffer.from(text);
  let head;
  if (payload.length < 126) head = Buffer.from([0x81, payload.length]);
  else { head = Buffer.alloc(4); head[0] = 0x81; head[1] = 126; head.writeUInt16BE(payload.length, 2); }
  return Buffer.concat([head, payload]);
}

function wsParse(buf) {
  // Returns [frames, rest]; frames are {opcode, data}. Client frames are masked.
  const frames = [];
  let off = 0;
  while (buf.length - off >= 2) {
    const opcode = buf[off] & 0x0f;
    const masked = buf[off + 1] & 0x80;
    let len = buf[off + 1] & 0x7f;
    let p = off + 2;
    if (len === 126) { if (buf.length < p + 2) break; len = buf.readUInt16BE(p); p += 2; }
    else if (len === 127) { if (buf.length < p + 8) break; len = Number(buf.readBigUInt64BE(p)); p += 8; }
    const maskLen = masked ? 4 : 0;
    if (buf.length < p + maskLen + len) break;
    const mask = buf.subarray(p, p + maskLen);
    const data = Buffer.from(buf.subarray(p + maskLen, p + maskLen + len));
    if (masked) for (let i = 0; i < data.length; i += 1) data[i] ^= mask[i % 4];
    frames.push({ opcode, data });
    off = p + maskLen + len;
  }
  return [frames, buf.subarray(off)];
}

function onUpgrade(req, socket) {
  const key = req.headers['sec-websocket-key'];
  const url = req.url.split('?')[0];
  if (!/^\/(websocket|sockjs\/.*\/websocket)$/.test(url) || !key
      || String(req.headers.upgrade).toLowerCase() !== 'websocket') {
    socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    return;
  }
  const accept = crypto.createHash('sha1').update(key + WS_GUID).digest('base64');
  socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n'
    + `Connection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
  socket.write(wsFrame(JSON.stringify({ server_id: '0' })));
  let pending = Buffer.alloc(0);
  socket.on('data', (chunk) => {
    let frames;
    [frames, pending] = wsParse(Buffer.concat([pending, chunk]));
    for (const f of frames) {
      if (f.opcode === 0x8) { socket.end(Buffer.from([0x88, 0])); return; }
      if (f.opcode === 0x9) { socket.write(Buffer.concat([Buffer.from([0x8a, f.data.length]), f.data])); continue; }
      if (f.opcode !== 0x1) continue;
      let msg;
      try { msg = JSON.parse(f.data.toString()); } catch { continue; }
      if (msg.msg === 'connect') {
        socket.write(wsFrame(JSON.stringify({ msg: 'connected', session: crypto.randomBytes(8).toString('hex') })));
      } else if (msg.msg === 'ping') {
        socket.write(wsFrame(JSON.stringify(msg.id ? { msg: 'pong', id: msg.id } : { msg: 'pong' })));
      }
    }
  });
  socket.on('error', () => socket.destroy());
}

async function main() {
  await connect();
  await ensureAdmin();
  await applySettings();
  await registerInstance();
  setInterval(() => registerInstance().catch((e) => console.error(`instance heartbeat: ${e.message}`)), 10000).unref();
  if (TCP_PORT) {
    // Rocket.Chat's instance-to-instance transporter listens here; peers use
    // the address and port registered in `instances`.
    net.createServer((s) => s.end()).listen(TCP_PORT, INSTANCE_IP === '127.0.0.1' ? BIND_IP : INSTANCE_IP);
  }
  const server = http.createServer((req, res) => { handle(req, res); });
  server.on('upgrade', onUpgrade);
  server.on('error', (err) => fail(`cannot listen on ${BIND_IP}:${PORT}: ${err.message}`));
  server.listen(PORT, BIND_IP, () => {
    console.log(`Rocket.Chat stand-in ${release.version} listening on ${BIND_IP}:${PORT} `
      + `(ROOT_URL ${env.ROOT_URL}, instance ${INSTANCE_IP}:${TCP_PORT || '-'})`);
  });
  const stop = () => { server.close(); process.exit(0); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => fail(err.stack || String(err)));
