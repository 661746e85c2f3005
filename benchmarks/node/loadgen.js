// The load generator: many WebSocket clients in one Node process (pinned to its own core by
// run.py), driving one scenario against one server and printing one JSON result.
//
//   node loadgen.js --proto plain|sio --port N --scenario fanout|idle|echo|stall|rooms|relay|unacked [options]
//       [--resume [--no-ack]]  (scenario R: resume without loss, wsroom only)
//
// `--ports A,B,...` spreads the clients over several server processes (the backplane scenarios
// F, G, H): client id i connects to ports[i % ports.length] (the relay scenario places its own).
//
// proto "plain" speaks the JSON envelope protocol of wsroom_server.py and floor_server.py.
// proto "sio" speaks socket.io (protocol 5 over engine.io 4) on a raw `ws` socket: the same
// frames socket.io-client sends on its websocket transport, without the client library's
// per-message overhead, so that the generator is not the bottleneck; `--scenario check`
// proves the servers answer the real socket.io-client.
//
// Talking to run.py: a line "@rss <label>" asks it to sample the server's RSS, and the
// generator waits for one line on stdin before going on; the last line is "@result <json>".
'use strict';

const WebSocket = require('ws');
const readline = require('readline');

// -- arguments -------------------------------------------------------------------------------
const args = {};
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if (a.startsWith('--')) {
    const next = process.argv[i + 1];
    if (next === undefined || next.startsWith('--')) args[a.slice(2)] = true;
    else { args[a.slice(2)] = next; i++; }
  }
}
const num = (k, d) => (args[k] === undefined ? d : Number(args[k]));
const PROTO = args.proto || 'plain';
const PORT = num('port', 8080);
// Several server processes (scenarios F, G, H): client id i goes to PORTS[i % PORTS.length].
const PORTS = args.ports ? String(args.ports).split(',').map(Number) : [PORT];
let portOf = (id) => PORTS[id % PORTS.length];
const SCENARIO = args.scenario || 'fanout';

// --resume (scenario R, wsroom only): every client offers the subprotocol of resume without
// loss (contract §7) as wsroom.js does (wsroom.resume.1, then wsroom.plain.1), starts afresh
// with an ack of nothing as its first frame, numbers what it sends (cseq), checks that the
// numbered envelopes it gets are contiguous, and acknowledges cumulatively with wsroom.js's
// defaults: after ACK_EVERY envelopes at the latest, or ACK_DELAY ms after the first one not
// acknowledged. --no-ack: never acknowledges past the first frame (R's memory run).
const RESUME = Boolean(args.resume);
const RESUME_PROTOCOL = 'wsroom.resume.1';
const PLAIN_PROTOCOL = 'wsroom.plain.1';
const ACK_EVERY = num('ack-every', 16); // wsroom.js: ackEvery
const ACK_DELAY = num('ack-delay', 500); // wsroom.js: ackDelay (ms)
const NO_ACK = Boolean(args['no-ack']);
// Every client's resume figures, summed: how many took the resume subprotocol, numbered
// envelopes received, seq gaps (envelopes skipped) and repeats, acks sent.
const resumeStats = { numbered_clients: 0, numbered: 0, seq_gaps: 0, seq_repeats: 0, acks: 0, hub_acks: 0 };

const now = () => performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// -- run.py handshake -----------------------------------------------------------------------
const stdinLines = [];
let stdinWaiter = null;
readline.createInterface({ input: process.stdin }).on('line', (l) => {
  if (stdinWaiter) { const w = stdinWaiter; stdinWaiter = null; w(l); } else stdinLines.push(l);
});
function sampleRss(label) {
  process.stdout.write(`@rss ${label}\n`);
  if (stdinLines.length) return Promise.resolve(stdinLines.shift());
  return new Promise((r) => { stdinWaiter = r; });
}
function log(msg) { process.stderr.write(`[loadgen] ${msg}\n`); }

// -- clients ---------------------------------------------------------------------------------
// Each client calls onEvent(type, payload) for every envelope / socket.io event it receives.
const WS_OPTS = { perMessageDeflate: false, skipUTF8Validation: true, maxPayload: 64 << 20 };

class Client {
  // `room`: the room to join (scenario E); null joins the servers' one default room.
  constructor(id, onEvent, room = null) {
    const port = portOf(id);
    this.id = id;
    this.onEvent = onEvent;
    this.room = room;
    this.joined = false;
    this.closeCode = null;
    const url = PROTO === 'sio'
      ? `ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`
      : `ws://127.0.0.1:${port}/ws?id=${id}${room === null ? '' : `&room=${room}`}`;
    this.ready = new Promise((resolve, reject) => {
      this._resolve = resolve;
      this._reject = reject;
    });
    // Resume without loss (contract §7): where the numbered stream stands.
    this.numbered = false;
    this.received = 0; // the last seq received
    this.ackSent = 0;
    this.ackTimer = null;
    this.nextCseq = 1;
    this.ws = RESUME && PROTO === 'plain'
      ? new WebSocket(url, [RESUME_PROTOCOL, PLAIN_PROTOCOL], WS_OPTS)
      : new WebSocket(url, WS_OPTS);
    if (RESUME && PROTO === 'plain') {
      this.ws.on('open', () => {
        if (this.ws.protocol !== RESUME_PROTOCOL) return; // the hub chose plain: counted below
        this.numbered = true;
        resumeStats.numbered_clients++;
        // wsroom.js's first frame on a first connection: a fresh start, an ack of nothing.
        this.ws.send('{"type":"wsroom.ack","payload":{"seq":0}}');
      });
    }
    this.ws.on('message', (data) => this._message(data.toString()));
    this.ws.on('error', (e) => { if (!this.joined) this._reject(e); });
    this.ws.on('close', (code) => {
      this.closeCode = code;
      if (!this.joined) this._reject(new Error(`closed ${code} before joining`));
    });
  }

  _message(s) {
    if (PROTO === 'plain') {
      const env = JSON.parse(s);
      if (this.numbered && !this._numbered(env)) return;
      this._event(env.type, env.payload);
      return;
    }
    // engine.io packet type is the first character; socket.io packet type the second.
    const eio = s.charCodeAt(0);
    if (eio === 52 /* '4' message */) {
      const sio = s.charCodeAt(1);
      if (sio === 50 /* '2' EVENT */) {
        const arr = JSON.parse(s.slice(2));
        this._event(arr[0], arr[1]);
      } else if (sio === 48 /* '0' CONNECT ack */) {
        this.ws.send(this.room === null ? '42["join"]' : `42${JSON.stringify(['join', this.room])}`);
      }
    } else if (eio === 50 /* '2' ping */) {
      this.ws.send('3');
    } else if (eio === 48 /* '0' open */) {
      this.ws.send('40');
    }
  }

  // One envelope of a numbered connection, as wsroom.js's _numberedFrame: false for the
  // protocol's own frames and repeats (not delivered), true to deliver.
  _numbered(env) {
    if (env.type === 'wsroom.ack') { resumeStats.hub_acks++; return false; }
    if (env.type === 'wsroom.resumed') return false;
    const seq = env.seq;
    if (!Number.isInteger(seq)) return true; // the connection's own (on_join's `joined`)
    if (seq <= this.received) { resumeStats.seq_repeats++; return false; }
    if (seq > this.received + 1) resumeStats.seq_gaps += seq - this.received - 1;
    this.received = seq;
    resumeStats.numbered++;
    if (NO_ACK) return true;
    if (this.received - this.ackSent >= ACK_EVERY) this.sendAck();
    else if (this.ackTimer === null) this.ackTimer = setTimeout(() => this.sendAck(), ACK_DELAY);
    return true;
  }

  sendAck() {
    clearTimeout(this.ackTimer);
    this.ackTimer = null;
    if (this.ws.readyState !== 1 || this.received <= this.ackSent) return;
    this.ackSent = this.received;
    resumeStats.acks++;
    this.ws.send(`{"type":"wsroom.ack","payload":{"seq":${this.received}}}`);
  }

  _event(type, payload) {
    if (type === 'joined') {
      this.joined = true;
      this._resolve(this);
      return;
    }
    this.onEvent(type, payload);
  }

  send(type, payload) {
    if (PROTO === 'sio') this.ws.send('42' + JSON.stringify([type, payload]));
    else if (this.numbered) this.ws.send(JSON.stringify({ type, payload, cseq: this.nextCseq++ }));
    else this.ws.send(JSON.stringify({ type, payload }));
  }

  stall() { this.ws._socket.pause(); }

  close() {
    clearTimeout(this.ackTimer);
    try { this.ws.terminate(); } catch (e) { /* already gone */ }
  }
}

// Open `n` clients, `parallel` handshakes at a time; ids from `base`; client i joins roomOf(i)
// (null: the default room). `all` keeps each client at its index (undefined where it failed).
async function connectMany(n, base, onEvent, parallel = 100, roomOf = null) {
  const clients = new Array(n);
  let next = 0;
  let failed = 0;
  async function worker() {
    while (next < n) {
      const i = next++;
      const c = new Client(base + i, onEvent, roomOf === null ? null : roomOf(i));
      const timer = setTimeout(() => c._reject(new Error('join timeout')), 30000);
      try { clients[i] = await c.ready; } catch (e) {
        failed++;
        if (failed <= 3) log(`client ${base + i}: ${e.message}`);
        c.close();
      } finally { clearTimeout(timer); }
    }
  }
  await Promise.all(Array.from({ length: Math.min(parallel, n) }, worker));
  return { clients: clients.filter(Boolean), all: clients, failed };
}

// -- statistics ------------------------------------------------------------------------------
function pct(sorted, p) {
  if (!sorted.length) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}
const r2 = (x) => (x === null ? null : Math.round(x * 100) / 100);

// A stream of `count` numbered broadcasts into `receivers`, tracking order and latency.
class Stream {
  constructor(receivers, count) {
    this.count = count;
    this.expected = receivers * count;
    this.lat = new Float64Array(this.expected);
    this.n = 0;
    this.outOfOrder = 0;
    this.duplicates = 0;
    this.last = new Map();
    this.firstSend = null;
    this.lastDelivery = null;
    this.done = null;
    this.finished = new Promise((r) => { this.done = r; });
  }

  deliver(client, p) {
    const t = now();
    const prev = this.last.has(client) ? this.last.get(client) : -1;
    if (p.seq <= prev) { if (p.seq === prev) this.duplicates++; else this.outOfOrder++; }
    else this.last.set(client, p.seq);
    if (this.n < this.expected) this.lat[this.n] = t - p.t;
    this.n++;
    this.lastDelivery = t;
    if (this.n >= this.expected) this.done();
  }

  result() {
    const got = Math.min(this.n, this.expected);
    const lat = this.lat.subarray(0, got).sort();
    const secs = this.lastDelivery !== null ? (this.lastDelivery - this.firstSend) / 1000 : null;
    return {
      expected: this.expected,
      delivered: this.n,
      missing: Math.max(0, this.expected - this.n + this.duplicates),
      out_of_order: this.outOfOrder,
      duplicates: this.duplicates,
      seconds: r2(secs),
      deliveries_per_s: secs ? Math.round(got / secs) : null,
      p50_ms: r2(pct(lat, 50)),
      p99_ms: r2(pct(lat, 99)),
      max_ms: r2(got ? lat[got - 1] : null),
    };
  }
}

function pad(size) {
  // An envelope {"type":"bcast","payload":{"seq":123,"t":12345.678,"pad":"..."}} of ~`size` bytes.
  return 'x'.repeat(Math.max(0, size - 62));
}

function cpuMeter() {
  const c0 = process.cpuUsage();
  const t0 = now();
  return () => {
    const c = process.cpuUsage(c0);
    return r2((c.user + c.system) / 1000 / (now() - t0));
  };
}

// Send `count` broadcasts from `sender`, back to back (interval 0) or every `interval` ms.
async function runStream(sender, stream, interval, size, timeoutMs) {
  const padding = pad(size);
  const cpu = cpuMeter();
  stream.firstSend = now();
  const start = stream.firstSend;
  for (let seq = 0; seq < stream.count; seq++) {
    if (interval > 0) {
      const due = start + seq * interval;
      const wait = due - now();
      if (wait > 0) await sleep(wait);
    }
    sender.send('bcast', { seq, t: now(), pad: padding });
  }
  const timeout = sleep(timeoutMs).then(() => 'timeout');
  const how = await Promise.race([stream.finished.then(() => 'done'), timeout]);
  const res = stream.result();
  res.loadgen_cpu = cpu();
  if (how === 'timeout') res.timed_out = true;
  return res;
}

// -- scenarios -------------------------------------------------------------------------------
async function fanout() {
  const members = num('members', 1000);
  const count = num('count', 200);
  const size = num('size', 100);
  const rate = num('rate', 20);
  let stream = null;
  const onEvent = function (type, p) { if (type === 'bcast' && stream) stream.deliver(this, p); };
  const { clients, failed } = await connectMany(members, 1, () => {});
  for (const c of clients) c.onEvent = onEvent.bind(c);
  const sender = (await connectMany(1, 0, () => {})).clients[0];
  await sleep(1000); // let the last joins settle
  const out = { members: clients.length, failed };
  // --marks (scenario F): "@rss" samples around an idle window and each phase, so that run.py
  // takes every server's and Redis's CPU (and Redis's command counts) over each of them.
  const marks = Boolean(args.marks);
  if (marks) {
    await sampleRss('idle-start');
    await sleep(num('idle-seconds', 3) * 1000);
    await sampleRss('idle-end');
    await sampleRss('fast-start');
  }
  stream = new Stream(clients.length, count);
  let acks = resumeStats.acks;
  out.fast = await runStream(sender, stream, 0, size, 60000);
  if (RESUME) out.fast.acks = resumeStats.acks - acks; // up to the last delivery
  if (marks) await sampleRss('fast-end');
  await sleep(1000);
  stream = new Stream(clients.length, num('paced-count', count));
  if (marks) await sampleRss('paced-start');
  acks = resumeStats.acks;
  out.paced = await runStream(sender, stream, 1000 / rate, size, 60000);
  if (RESUME) out.paced.acks = resumeStats.acks - acks;
  if (marks) await sampleRss('paced-end');
  out.closed = closedCodes([...clients, sender]);
  if (RESUME) out.resume = { ...resumeStats };
  return out;
}

// The clients the server closed (or that dropped), by close code: {} when none.
function closedCodes(clients) {
  const codes = {};
  for (const c of clients) if (c.closeCode !== null) codes[c.closeCode] = (codes[c.closeCode] || 0) + 1;
  return codes;
}

// Scenario R's memory run: the server's RSS with `members` members idle, then once each has
// `count` envelopes it did not acknowledge (with --resume --no-ack they all wait in the hub's
// logs; plain members are sent the same), then (resume) once they acknowledge everything.
// "@rss" marks: base (after `warmup` connections), idle, unacked, acked.
async function unacked() {
  const members = num('members', 1000);
  const count = num('count', 64);
  const size = num('size', 100);
  const rate = num('rate', 20);
  const settle = num('settle', 3) * 1000;
  const warm = await connectMany(num('warmup', 50), 100000, () => {});
  await sleep(1500);
  await sampleRss('base');
  let stream = null;
  const onEvent = function (type, p) { if (type === 'bcast' && stream) stream.deliver(this, p); };
  const { clients, failed } = await connectMany(members, 1, () => {});
  for (const c of clients) c.onEvent = onEvent.bind(c);
  const sender = (await connectMany(1, 0, () => {})).clients[0];
  await sleep(settle);
  await sampleRss('idle');
  stream = new Stream(clients.length, count);
  const out = { members: clients.length, failed, count };
  out.stream = await runStream(sender, stream, 1000 / rate, size, 30000);
  await sleep(settle);
  await sampleRss('unacked');
  out.closed_unacked = closedCodes([...clients, sender]);
  if (RESUME) {
    out.resume = { ...resumeStats };
    for (const c of clients) if (c.numbered && c.ws.readyState === 1) c.ws.send(`{"type":"wsroom.ack","payload":{"seq":${c.received}}}`);
    await sleep(settle);
    await sampleRss('acked');
  }
  out.closed = closedCodes([...clients, sender]);
  for (const c of [...clients, sender, ...warm.clients]) c.close();
  return out;
}

async function idle() {
  const n = num('connections', 5000);
  const warm = await connectMany(num('warmup', 50), 100000, () => {});
  await sleep(1500);
  await sampleRss('before');
  const t0 = now();
  const { clients, failed } = await connectMany(n, 1, () => {}, num('parallel', 100));
  const connectSeconds = (now() - t0) / 1000;
  await sleep(num('settle', 3) * 1000);
  await sampleRss('after');
  const stillOpen = clients.filter((c) => c.closeCode === null).length;
  for (const c of [...clients, ...warm.clients]) c.close();
  return { connections: clients.length, failed, still_open: stillOpen, connect_s: r2(connectSeconds) };
}

async function echo() {
  const n = num('clients', 100);
  const seconds = num('seconds', 10);
  const padding = pad(num('size', 100));
  let running = false;
  let trips = 0;
  const lat = [];
  const onEvent = function (type, p) {
    if (type !== 'echo' || !running) return;
    trips++;
    const t = now();
    if (lat.length < 2000000) lat.push(t - p.t);
    this.send('echo', { seq: p.seq + 1, t, pad: padding });
  };
  const { clients, failed } = await connectMany(n, 1, () => {});
  for (const c of clients) c.onEvent = onEvent.bind(c);
  await sleep(500);
  if (args.marks) await sampleRss('echo-start');
  running = true;
  const cpu = cpuMeter();
  const t0 = now();
  for (const c of clients) c.send('echo', { seq: 0, t: now(), pad: padding });
  await sleep(seconds * 1000);
  running = false;
  const secs = (now() - t0) / 1000;
  if (args.marks) await sampleRss('echo-end');
  const sorted = Float64Array.from(lat).sort();
  return {
    clients: clients.length,
    failed,
    round_trips: trips,
    round_trips_per_s: Math.round(trips / secs),
    p50_ms: r2(pct(sorted, 50)),
    p99_ms: r2(pct(sorted, 99)),
    loadgen_cpu: cpu(),
  };
}

async function stall() {
  const members = num('members', 1000);
  const withStalled = Boolean(args.stalled);
  const seconds = num('seconds', 60);
  const rate = num('rate', 20);
  const size = num('size', 100);
  let stream = null;
  const receivers = withStalled ? members - 2 : members - 1; // the sender and the stalled one
  const { clients, failed } = await connectMany(receivers, 1, () => {});
  const onEvent = function (type, p) { if (type === 'bcast' && stream) stream.deliver(this, p); };
  for (const c of clients) c.onEvent = onEvent.bind(c);
  const sender = (await connectMany(1, 0, () => {})).clients[0];
  let stalled = null;
  if (withStalled) {
    stalled = (await connectMany(1, 999999, () => {})).clients[0];
    stalled.stall();
  }
  await sleep(1000);
  await sampleRss('start');
  const count = Math.round(seconds * rate);
  stream = new Stream(clients.length, count);
  const res = await runStream(sender, stream, 1000 / rate, size, 30000);
  await sampleRss('end');
  res.members = clients.length + 1 + (withStalled ? 1 : 0);
  res.failed = failed;
  res.stalled = withStalled;
  if (stalled) res.stalled_close_code = stalled.closeCode; // null: the server kept it open
  return res;
}

// Scenario E, many small rooms: `rooms` rooms of `room-size` members, every member sending
// `bcast` at the same fixed rate (the total rate spread round-robin over the members, rooms
// interleaved), each message broadcast by the server to the other members of its room. A
// message carries its sender's index `f`, a per-sender `seq` and its send time `t`; every
// receiver checks that it gets each message of its room's other members once and in per-sender
// order. First a fixed rate (`fixed-rate` msgs/s in total, for `fixed-seconds`, bracketed by
// "@rss" samples so that run.py can take the server's CPU over it), then a step search over the
// total rates in `steps`, each for `step-seconds`, stopping at the first step whose p99 reaches
// `max-p99` ms (or that loses a message, or that the generator cannot send on time) in
// `retries` + 1 tries, and before a step that would start after `search-seconds`.
async function rooms() {
  const nRooms = num('rooms', 100);
  const roomSize = num('room-size', 10);
  const size = num('size', 100);
  const fixedRate = num('fixed-rate', 500);
  const fixedSeconds = num('fixed-seconds', 10);
  const stepSeconds = num('step-seconds', 4);
  const steps = String(args.steps || '250,350,500,700,1000,1400,2000,2800,4000,5600,8000,11000,16000')
    .split(',').filter((x) => x.trim()).map(Number);
  const searchMs = num('search-seconds', 120) * 1000;
  const maxP99 = num('max-p99', 50);
  const retries = num('retries', 1);
  const n = nRooms * roomSize;
  const roomOf = (i) => Math.floor(i / roomSize);
  // ~`size` bytes on the wire: {"type":"bcast","payload":{"f":123,"seq":12,"t":12345.678,"pad":"..."}}
  const padding = 'x'.repeat(Math.max(0, size - 70));

  // -- the receiving side: per (receiver, sender) the last seq seen; per phase the latencies.
  const last = new Int32Array(n * roomSize).fill(-1);
  const totals = { expected: 0, delivered: 0, outOfOrder: 0, duplicates: 0, misrouted: 0 };
  const phases = [];
  function phaseOf(t) {
    for (let j = phases.length - 1; j >= 0; j--) if (t >= phases[j].t0) return phases[j];
    return null;
  }
  function deliver(r, p) {
    const t = now();
    const f = p.f;
    if (f === r || roomOf(f) !== roomOf(r)) { totals.misrouted++; return; }
    const idx = r * roomSize + (f % roomSize);
    const prev = last[idx];
    if (p.seq <= prev) { if (p.seq === prev) totals.duplicates++; else totals.outOfOrder++; }
    else last[idx] = p.seq;
    totals.delivered++;
    const ph = phaseOf(p.t);
    if (ph === null) return;
    ph.got++;
    const l = t - p.t;
    if (l >= maxP99) ph.slow++;
    if (ph.lat.length < 4000000) ph.lat.push(l);
  }

  const conn = await connectMany(n, 1, () => {}, 100, (i) => `r${roomOf(i)}`);
  const byIndex = conn.all;
  byIndex.forEach((c, i) => {
    if (c) c.onEvent = (type, p) => { if (type === 'bcast') deliver(i, p); };
  });
  const inRoom = new Int32Array(nRooms);
  byIndex.forEach((c, i) => { if (c) inRoom[roomOf(i)]++; });
  // Round-robin order over the members, one room after another: member j of room k is sender
  // number j * nRooms + k, so that consecutive messages go to different rooms.
  const order = [];
  for (let j = 0; j < roomSize; j++) {
    for (let k = 0; k < nRooms; k++) if (byIndex[k * roomSize + j]) order.push(k * roomSize + j);
  }
  const seq = new Int32Array(n);
  let k = 0; // messages sent in all, to walk `order`
  await sleep(1000); // let the last joins settle

  // Send at `rate` msgs/s in total for `ms`, on a fixed schedule (open loop: a late tick sends
  // what is due). Aborts early once more than 1 % of the phase's planned deliveries are late,
  // when p99 >= maxP99 is certain.
  async function drive(rate, ms, abortable) {
    const ph = { rate, t0: now(), t1: null, sent: 0, expected: 0, got: 0, slow: 0, lat: [], aborted: false };
    phases.push(ph);
    const planned = (rate * ms / 1000) * (roomSize - 1);
    const cpu = cpuMeter();
    const end = ph.t0 + ms;
    for (;;) {
      const t = now();
      if (t >= end) break;
      const due = Math.floor(((t - ph.t0) * rate) / 1000) + 1;
      while (ph.sent < due) {
        const i = order[k++ % order.length];
        const fanout = inRoom[roomOf(i)] - 1;
        ph.expected += fanout;
        totals.expected += fanout;
        ph.sent++;
        byIndex[i].send('bcast', { f: i, seq: seq[i]++, t: now(), pad: padding });
      }
      if (abortable && ph.slow > 0.01 * planned) { ph.aborted = true; break; }
      await sleep(1);
    }
    ph.t1 = now();
    ph.loadgenCpu = cpu();
    // Drain: wait for the phase's deliveries (bounded: a late one is a miss of this phase).
    const drainUntil = now() + (ph.aborted ? 500 : 2000);
    while (ph.got < ph.expected && now() < drainUntil) await sleep(10);
    return ph;
  }
  function summary(ph) {
    // A delivery still missing after the drain counts with the time it has waited so far (a
    // lower bound), so that late deliveries push the percentiles up instead of leaving them out.
    const late = Math.max(0, ph.expected - ph.got);
    const waited = now() - ph.t1;
    const lat = Float64Array.from({ length: ph.lat.length + late },
      (_, j) => (j < ph.lat.length ? ph.lat[j] : waited)).sort();
    const secs = (ph.t1 - ph.t0) / 1000;
    const achieved = secs > 0 ? ph.sent / secs : 0;
    const p99 = pct(lat, 99);
    const missing = late;
    const res = {
      rate: ph.rate,
      sent: ph.sent,
      seconds: r2(secs),
      achieved_rate: Math.round(achieved),
      deliveries: ph.got,
      missing, // not delivered by the end of the drain: late (the run's totals say if lost)
      p50_ms: r2(pct(lat, 50)),
      p99_ms: r2(p99),
      max_ms: r2(lat.length ? lat[lat.length - 1] : null),
      loadgen_cpu: ph.loadgenCpu,
    };
    if (ph.aborted) res.aborted = true;
    // The generator could not keep the schedule: the server was not the bound.
    res.generator_bound = !ph.aborted && achieved < 0.95 * ph.rate;
    res.pass = !ph.aborted && !res.generator_bound && missing === 0 && p99 !== null && p99 < maxP99;
    return res;
  }

  const out = { members: conn.clients.length, failed: conn.failed, rooms: nRooms, room_size: roomSize };
  if (args['idle-seconds'] !== undefined) {
    // Scenario H: what the servers and Redis spend with every member connected and silent.
    await sampleRss('idle-start');
    await sleep(num('idle-seconds', 3) * 1000);
    await sampleRss('idle-end');
  }
  await drive(fixedRate, 1000, false); // warm-up, not reported
  await sleep(300);
  await sampleRss('E-fixed-start');
  const fixed = await drive(fixedRate, fixedSeconds * 1000, false);
  await sampleRss('E-fixed-end');
  out.fixed = summary(fixed);

  out.steps = [];
  out.sustained_rate = 0;
  out.stopped = 'all steps passed';
  const searchStart = now();
  // --no-search (scenario H): the fixed rate only.
  search: for (const rate of (args['no-search'] ? [] : steps)) {
    // A step that misses is run again `retries` times before the search stops: on a shared
    // machine one burst of someone else's work can push a p99 over the line.
    for (let attempt = 0; ; attempt++) {
      if (now() - searchStart > searchMs) { out.stopped = 'time budget'; break search; }
      await sleep(300);
      await sampleRss(`E-step-${rate}-${attempt}-start`);
      const step = summary(await drive(rate, stepSeconds * 1000, true));
      await sampleRss(`E-step-${rate}-${attempt}-end`);
      step.attempt = attempt;
      out.steps.push(step);
      if (step.pass) break;
      if (step.generator_bound || attempt >= retries) {
        out.stopped = step.generator_bound ? 'generator-bound' : 'missed';
        break search;
      }
      await sleep(1000); // let a backlog drain before the retry
    }
    out.sustained_rate = rate;
  }

  // Wait for the backlog of the last (failed) step, as long as deliveries keep coming.
  const drainEnd = now() + 60000;
  let seen = -1;
  while (totals.delivered + totals.misrouted < totals.expected && now() < drainEnd) {
    if (totals.delivered === seen) break;
    seen = totals.delivered;
    await sleep(3000);
  }
  out.expected = totals.expected;
  out.delivered = totals.delivered;
  out.missing = Math.max(0, totals.expected - totals.delivered + totals.duplicates);
  out.out_of_order = totals.outOfOrder;
  out.duplicates = totals.duplicates;
  out.misrouted = totals.misrouted;
  for (const c of conn.clients) c.close();
  return out;
}

// Scenario G, targeted sends between processes: `pairs` pairs of clients in one room, a_i
// (id i + 1) on the first port and b_i (id pairs + i + 1) on the last. a_i sends `relay` naming
// b_i; the server's on_message does send_to(room, b_i, ...); b_i sends it straight back naming
// a_i; a_i counts a round trip (two send_to's, each crossing processes when the ports differ)
// and sends the next. For `seconds`, bracketed by "@rss" samples (run.py takes the CPU).
async function relay() {
  const pairs = num('pairs', 100);
  const seconds = num('seconds', 10);
  const padding = pad(num('size', 100));
  const first = PORTS[0];
  const last = PORTS[PORTS.length - 1];
  portOf = (id) => (id <= pairs ? first : last);
  let running = false;
  let trips = 0;
  let wrong = 0;
  const lat = [];
  const a = await connectMany(pairs, 1, () => {});
  const b = await connectMany(pairs, pairs + 1, () => {});
  for (const c of a.clients) {
    const partner = String(c.id + pairs);
    c.onEvent = (type, p) => {
      if (type !== 'relay' || !running) return;
      if (p.to !== String(c.id)) { wrong++; return; }
      trips++;
      const t = now();
      if (lat.length < 2000000) lat.push(t - p.t);
      c.send('relay', { to: partner, seq: p.seq + 1, t, pad: padding });
    };
  }
  for (const c of b.clients) {
    const partner = String(c.id - pairs);
    c.onEvent = (type, p) => {
      if (type !== 'relay') return;
      if (p.to !== String(c.id)) { wrong++; return; }
      c.send('relay', { to: partner, seq: p.seq, t: p.t, pad: p.pad });
    };
  }
  await sleep(500);
  await sampleRss('relay-start');
  running = true;
  const cpu = cpuMeter();
  const t0 = now();
  const bIds = new Set(b.clients.map((c) => c.id));
  for (const c of a.clients) {
    if (bIds.has(c.id + pairs)) c.send('relay', { to: String(c.id + pairs), seq: 0, t: now(), pad: padding });
  }
  await sleep(seconds * 1000);
  running = false;
  const secs = (now() - t0) / 1000;
  await sampleRss('relay-end');
  const sorted = Float64Array.from(lat).sort();
  for (const c of [...a.clients, ...b.clients]) c.close();
  return {
    pairs: Math.min(a.clients.length, b.clients.length),
    failed: a.failed + b.failed,
    round_trips: trips,
    round_trips_per_s: Math.round(trips / secs),
    misrouted: wrong,
    p50_ms: r2(pct(sorted, 50)),
    p99_ms: r2(pct(sorted, 99)),
    loadgen_cpu: cpu(),
  };
}

// Proves the socket.io servers answer the real socket.io-client (join, bcast, echo).
async function check() {
  const { io } = require('socket.io-client');
  const url = `http://127.0.0.1:${PORT}`;
  const opts = { transports: ['websocket'], reconnection: false, forceNew: true };
  const a = io(url, opts);
  const b = io(url, opts);
  const joined = (s) => new Promise((r) => { s.once('joined', r); s.emit('join'); });
  const once = (s, ev) => new Promise((r) => s.once(ev, r));
  const timeout = sleep(10000).then(() => { throw new Error('socket.io-client check timed out'); });
  const run = (async () => {
    await Promise.all([once(a, 'connect'), once(b, 'connect')]);
    await Promise.all([joined(a), joined(b)]);
    const got = once(b, 'bcast');
    a.emit('bcast', { seq: 1, t: now() });
    const bc = await got;
    const echoed = once(a, 'echo');
    a.emit('echo', { seq: 2 });
    const ec = await echoed;
    return { ok: bc.seq === 1 && ec.seq === 2 };
  })();
  try { return await Promise.race([run, timeout]); } finally { a.close(); b.close(); }
}

const SCENARIOS = { fanout, idle, echo, stall, rooms, relay, check, unacked };

(async () => {
  const fn = SCENARIOS[SCENARIO];
  if (!fn) throw new Error(`unknown scenario ${SCENARIO}`);
  const hardStop = setTimeout(() => {
    process.stdout.write('@result {"error":"loadgen hard timeout"}\n');
    process.exit(3);
  }, num('max-seconds', 600) * 1000);
  const result = await fn();
  clearTimeout(hardStop);
  process.stdout.write(`@result ${JSON.stringify(result)}\n`);
  process.exit(0);
})().catch((e) => {
  process.stdout.write(`@result ${JSON.stringify({ error: String(e && e.stack || e) })}\n`);
  process.exit(2);
});
