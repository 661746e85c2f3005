// wsroom.js — the browser client of a wsroom hub. An ES module with no dependencies.
//
//   import { connect } from "/wsroom.js";
//   const conn = connect("/ws/lobby?user=ann");
//   conn.on("chat", (payload, envelope) => { ... });
//   conn.onState(({ state }) => { ... });   // connecting | open | reconnecting | offline | closed | error
//   conn.send("chat", { text: "hi" });
//   conn.close();
//
// Every frame is one JSON object {"type": ..., "payload": ...}. The connection comes back by
// itself after a drop, with exponential backoff and jitter, unless the server's close code says
// not to (see FINAL_CODES) or close() was called.
//
// When to stop retrying. A browser cannot read the HTTP status of a failed WebSocket handshake
// (the socket just closes with 1006), so the rule is:
// - a close code from FINAL_CODES, or any 4000-4999 but 4008, ends the connection: state
//   "closed" with {code, reason}; refused is true for 1008 and for the application's 4xxx
//   (4002-4999 but 4008): the server turned this participant away;
// - a socket that closes before it opened is a failed handshake: the client asks the same URL
//   over plain HTTP once (a fetch; the resolver runs before the upgrade, so it answers as the
//   upgrade did); a 401, 403 or 404 is a refusal: state "error" with {refused: true, status,
//   reason} and no retry. Anything else (no answer, 5xx, 400) is retried with backoff;
// - a connection that never opened gives up after maxFailedOpens failed attempts in a row:
//   state "error" with {refused: false, reason}; one that was open before keeps retrying (a
//   server restarting), except on a refusal as above.
// After "error", reconnect() tries again from scratch.
//
// Resume without loss: connect(url, { resume: true }) offers the subprotocol wsroom.resume.1.
// When the hub takes it, the connection does the rest by itself: it acknowledges what it
// receives (in batches), asks to resume after every reconnect and drops what it already has,
// numbers what it sends and sends again what the hub had not acknowledged, so every envelope
// arrives once, in order, in both directions, across drops inside the grace period. When the
// hub cannot fill a gap (its log overflowed, the grace period expired) it says so:
//   conn.onGap(({ reason, lastSeq, firstSeq }) => { ... resync ... });
// The plain protocol is offered by name too (wsroom.plain.1): a hub that cannot resume (no
// grace period or no queue) chooses it and is spoken to as before. In resume mode,
// bufferLimit bounds the envelopes not yet acknowledged: past it send() refuses (returns
// false, and warns). The first connection starts afresh; every later one resumes.

/** Close codes after which reconnecting would not help (or would fight another tab). */
export const FINAL_CODES = new Set([
  1000, // a normal close asked for by the server
  1003, // binary frame
  1008, // on_join refused the connection
  1009, // message too big
  4000, // room closed
  4001, // replaced by a newer connection for the same participant
]);

/** The subprotocol of resume without loss. */
export const RESUME_PROTOCOL = "wsroom.resume.1";
/** The plain protocol by name, offered with it: a hub that cannot resume chooses that one
 *  (a browser fails a handshake that chose none of the subprotocols it offered). */
export const PLAIN_PROTOCOL = "wsroom.plain.1";

/** HTTP statuses that mean "you may not connect": retrying would get the same answer. */
export const REFUSED_STATUSES = new Set([401, 403, 404]);

/** Whether a final close code means the server turned this participant away. */
export function isRefusalCode(code) {
  return code === 1008 || (code >= 4002 && code <= 4999 && code !== 4008);
}

/** Whether a close code from the server should end the connection for good. */
export function isFinalCode(code) {
  if (FINAL_CODES.has(code)) return true;
  // 4xxx codes come from the application (CloseConnection); 4008 is "slow consumer".
  return code >= 4000 && code <= 4999 && code !== 4008;
}

const DEFAULTS = {
  minDelay: 250, // ms before the first retry
  maxDelay: 10000, // ms, the cap of the backoff
  factor: 2, // growth per failed attempt
  jitter: 0.5, // a retry waits delay * (1 - jitter * random())
  bufferLimit: 100, // envelopes sent while disconnected, written on the next open
  maxFailedOpens: 5, // failed attempts before a connection that never opened gives up
  probe: true, // after a failed handshake, ask the URL over HTTP once why (see above)
  protocols: undefined,
  resume: false, // offer resume without loss (see above)
  ackEvery: 16, // resume: acknowledge after this many envelopes at the latest ...
  ackDelay: 500, // ... or this many ms after the first one not acknowledged (each ack costs the
  // hub a trip through its inbound path: under a steady stream the count should set the pace)
  shouldReconnect: (code) => !isFinalCode(code),
  WebSocket: globalThis.WebSocket,
};

function numberedText(item) {
  return JSON.stringify({ type: item.type, payload: item.payload, cseq: item.cseq });
}

function protocolsWithResume(protocols) {
  const list = protocols === undefined ? [] : [].concat(protocols);
  const others = list.filter((p) => p !== RESUME_PROTOCOL && p !== PLAIN_PROTOCOL);
  return [...others, RESUME_PROTOCOL, PLAIN_PROTOCOL];
}

function absoluteURL(url) {
  if (/^wss?:\/\//.test(url)) return url;
  const loc = globalThis.location;
  const base = new URL(url, loc ? loc.href : "http://localhost/");
  base.protocol = base.protocol === "https:" ? "wss:" : "ws:";
  return base.toString();
}

/** One logical connection to a hub, surviving drops. */
export class Connection {
  constructor(url, options = {}) {
    this.url = url; // a string, or a function returning one (called before every attempt)
    this.options = { ...DEFAULTS, ...options };
    this.state = "idle";
    this.attempt = 0; // failed attempts since the last open
    this.lastClose = null; // {code, reason} of the last socket that ended
    this._handlers = new Map();
    this._stateHandlers = new Set();
    this._gapHandlers = new Set();
    this._buffer = []; // {type, payload} sent while no socket was open
    // Resume without loss: whether this membership numbers, and where both sequences stand.
    this._numbered = false;
    this._resumes = false; // a reconnect resumes; the first connection starts afresh
    this._ready = false; // the socket may carry numbered envelopes (the resume was answered)
    this._received = 0; // the last seq received
    this._ackSent = 0;
    this._ackTimer = null;
    this._nextCseq = 1;
    this._pending = []; // {cseq, type, payload, text} not yet acknowledged by the hub
    /** The gaps the hub reported (or a skipped seq showed), oldest first. */
    this.gaps = [];
    this._ws = null;
    this._timer = null;
    this._closed = false;
    this._everOpen = false; // whether any socket of this connection opened
    this._failedOpens = 0; // sockets in a row that closed before they opened
    this._probe = 0; // the id of the latest probe: older answers are ignored
    this._onOnline = () => this._online();
    this._onOffline = () => this._offline();
    if (typeof globalThis.addEventListener === "function") {
      globalThis.addEventListener("online", this._onOnline);
      globalThis.addEventListener("offline", this._onOffline);
    }
  }

  /** Call handler(payload, envelope) for each envelope of this type ("*": every envelope).
   *  Returns a function that removes the handler. */
  on(type, handler) {
    if (!this._handlers.has(type)) this._handlers.set(type, new Set());
    this._handlers.get(type).add(handler);
    return () => this._handlers.get(type)?.delete(handler);
  }

  /** Call handler({state, attempt, delay, code, reason}) on every change of state;
   *  it is called once at once with the current state. Returns a function that removes it. */
  onState(handler) {
    this._stateHandlers.add(handler);
    handler(this._stateEvent({}));
    return () => this._stateHandlers.delete(handler);
  }

  /** Whether the hub took resume without loss: envelopes are numbered both ways, and those
   *  not yet acknowledged are sent again by the connection after a reconnect. */
  get numbered() {
    return this._numbered;
  }

  /** Call handler({reason, lastSeq, firstSeq}) when envelopes from the hub are lost (resume
   *  mode): it had everything up to lastSeq and gets firstSeq next. reason is the hub's
   *  ("overflow", "expired", "unknown"), or "missing" (a seq was skipped), or "not offered"
   *  (a reconnect reached a hub without resume). Returns a function that removes it. */
  onGap(handler) {
    this._gapHandlers.add(handler);
    return () => this._gapHandlers.delete(handler);
  }

  /** Send one envelope. True if written to an open socket; false if buffered for the next
   *  open (up to bufferLimit, oldest dropped first) or if the connection is closed. In resume
   *  mode it is kept until acknowledged and written again after a reconnect; past bufferLimit
   *  unacknowledged envelopes it is refused (false, with a warning). */
  send(type, payload = null) {
    if (typeof type !== "string" || type === "") throw new TypeError("type must be a non-empty string");
    if (this._closed) return false;
    if (this._numbered) {
      if (this._pending.length >= this.options.bufferLimit) {
        console.warn(`wsroom: ${this._pending.length} envelopes not yet acknowledged; ${type} refused`);
        return false;
      }
      const item = { cseq: this._nextCseq++, type, payload };
      item.text = numberedText(item);
      this._pending.push(item);
      if (this._ready && this._ws && this._ws.readyState === 1) {
        this._ws.send(item.text);
        return true;
      }
      return false;
    }
    if (this._ws && this._ws.readyState === 1) {
      this._ws.send(JSON.stringify({ type, payload }));
      return true;
    }
    this._buffer.push({ type, payload });
    while (this._buffer.length > this.options.bufferLimit) this._buffer.shift();
    return false;
  }

  /** Close for good: no reconnect after this. */
  close(code = 1000, reason = "") {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._timer);
    clearTimeout(this._ackTimer);
    this._buffer = [];
    this._pending = [];
    this._ready = false;
    if (typeof globalThis.removeEventListener === "function") {
      globalThis.removeEventListener("online", this._onOnline);
      globalThis.removeEventListener("offline", this._onOffline);
    }
    const ws = this._ws;
    this._ws = null;
    if (ws && ws.readyState <= 1) ws.close(code, reason);
    this._setState("closed", { code, reason, byClient: true });
  }

  /** Drop the current socket now and reconnect at once (e.g. after a long sleep). */
  reconnect() {
    if (this.state === "error") this._closed = false; // "try again" after giving up
    if (this._closed) return;
    clearTimeout(this._timer);
    this.attempt = 0;
    this._failedOpens = 0;
    if (this._ws) this._drop(4100, "reconnect");
    else this._open();
  }

  // -- internals ----------------------------------------------------------------------

  _stateEvent(extra) {
    return { state: this.state, attempt: this.attempt, ...extra };
  }

  _setState(state, extra = {}) {
    this.state = state;
    const event = this._stateEvent(extra);
    for (const handler of [...this._stateHandlers]) {
      try {
        handler(event);
      } catch (err) {
        console.error("wsroom: state handler failed", err);
      }
    }
  }

  _isOffline() {
    return globalThis.navigator && globalThis.navigator.onLine === false;
  }

  _open() {
    if (this._closed) return;
    if (this._isOffline()) {
      this._setState("offline");
      return;
    }
    const url = absoluteURL(typeof this.url === "function" ? this.url() : this.url);
    let ws;
    const protocols = this.options.resume ? protocolsWithResume(this.options.protocols) : this.options.protocols;
    try {
      ws = new this.options.WebSocket(url, protocols);
    } catch (err) {
      this._scheduleRetry(1006, String(err));
      return;
    }
    this._ws = ws;
    let opened = false;
    this._setState(this.attempt === 0 && !this.lastClose ? "connecting" : "reconnecting", {
      connecting: true,
    });
    ws.onopen = () => {
      if (ws !== this._ws) return;
      opened = true;
      this._everOpen = true;
      this._failedOpens = 0;
      this.attempt = 0;
      if (this.options.resume && ws.protocol === RESUME_PROTOCOL) this._askResume(ws);
      else this._plainOpen(ws);
      this._setState("open");
    };
    ws.onmessage = (event) => {
      if (ws !== this._ws || typeof event.data !== "string") return;
      let envelope;
      try {
        envelope = JSON.parse(event.data);
      } catch (err) {
        console.error("wsroom: a frame that is not JSON", err);
        return;
      }
      if (this._numbered && !this._numberedFrame(ws, envelope)) return;
      this._dispatch(envelope);
    };
    ws.onclose = (event) => {
      if (ws !== this._ws) return;
      this._ws = null;
      this._ready = false;
      this.lastClose = { code: event.code, reason: event.reason };
      if (this._closed) return;
      if (!opened) {
        this._handshakeFailed(url, event.code);
        return;
      }
      if (!this.options.shouldReconnect(event.code)) {
        this._closed = true;
        const refused = isRefusalCode(event.code);
        this._setState("closed", { code: event.code, reason: event.reason, refused });
        return;
      }
      this._scheduleRetry(event.code, event.reason);
    };
  }

  _handshakeFailed(url, code) {
    // The socket closed before it opened: refused, or nobody there. Find out which if we can.
    this._failedOpens += 1;
    const probe = ++this._probe;
    const decide = (status, reason) => {
      if (probe !== this._probe || this._closed || this._ws) return; // overtaken meanwhile
      if (REFUSED_STATUSES.has(status)) {
        this._giveUp({ refused: true, status, reason: reason || `HTTP ${status}` });
      } else if (!this._everOpen && this._failedOpens >= this.options.maxFailedOpens) {
        const why = status ? `HTTP ${status} ${reason}`.trim() : "no answer";
        this._giveUp({ refused: false, status, reason: `could not connect after ${this._failedOpens} attempts (${why})` });
      } else {
        this._scheduleRetry(code, reason || "");
      }
    };
    if (!this.options.probe || typeof globalThis.fetch !== "function") return decide(0, "");
    const httpURL = url.replace(/^ws/, "http");
    globalThis
      .fetch(httpURL, { mode: "no-cors", cache: "no-store", credentials: "same-origin" })
      .then(async (answer) => {
        // Cross-origin answers are opaque (status 0): we know only that the server is there.
        const text = answer.status ? (await answer.text()).trim().split("\n")[0].slice(0, 200) : "";
        decide(answer.status, text);
      })
      .catch(() => decide(0, ""));
  }

  // -- resume without loss ------------------------------------------------------------

  _askResume(ws) {
    // The first frame: a resume from the last seq received, after which numbered envelopes
    // wait for the answer (it says where both sequences go on); or, on the first connection, a
    // fresh start: an ack of nothing, so the hub need not wait for a frame, and both sequences
    // count from 1 (a reloaded page is a new client of the same membership).
    this._numbered = true;
    for (const { type, payload } of this._buffer) {
      const item = { cseq: this._nextCseq++, type, payload };
      item.text = numberedText(item);
      this._pending.push(item);
    }
    this._buffer = [];
    if (this._resumes) {
      this._ready = false;
      ws.send(JSON.stringify({ type: "wsroom.resume", payload: { last_seq: this._received } }));
      return;
    }
    this._resumes = true;
    this._ready = true;
    this._received = this._ackSent = 0;
    this._pending.forEach((item, i) => {
      item.cseq = i + 1;
      item.text = numberedText(item);
    });
    this._nextCseq = this._pending.length + 1;
    ws.send(JSON.stringify({ type: "wsroom.ack", payload: { seq: 0 } }));
    for (const item of this._pending) ws.send(item.text);
  }

  _plainOpen(ws) {
    // A hub without resume: what it may not have goes as plain envelopes; a membership that
    // was numbered is told of a possible gap.
    const was = this._numbered;
    const pending = [...this._pending, ...this._buffer];
    this._numbered = false;
    this._pending = [];
    this._buffer = [];
    for (const { type, payload } of pending) ws.send(JSON.stringify({ type, payload }));
    if (was) this._gap({ reason: "not offered", lastSeq: this._received, firstSeq: 0 });
  }

  /** One frame of a numbered connection: false if it is the protocol's (handled here) or
   *  one already seen; true to deliver it. */
  _numberedFrame(ws, envelope) {
    if (envelope.type === "wsroom.ack") {
      const handled = envelope.payload && envelope.payload.cseq;
      if (Number.isInteger(handled)) this._dropAcknowledged(handled);
      // The hub's log for us is half full: acknowledge now, not at the batch's count or timer.
      if (envelope.payload && envelope.payload.ask === true) this._sendAck();
      return false;
    }
    if (envelope.type === "wsroom.resumed") {
      this._resumed(ws, envelope.payload || {});
      return false;
    }
    const seq = envelope.seq;
    if (!Number.isInteger(seq)) return true; // the connection's own (what on_join sent)
    if (seq <= this._received) return false; // had it before the reconnect
    if (seq > this._received + 1) this._gap({ reason: "missing", lastSeq: this._received, firstSeq: seq });
    this._received = seq;
    if (this._received - this._ackSent >= this.options.ackEvery) this._sendAck();
    else if (this._ackTimer === null) this._ackTimer = setTimeout(() => this._sendAck(), this.options.ackDelay);
    return true;
  }

  _resumed(ws, answer) {
    const handled = Number.isInteger(answer.cseq) && answer.cseq >= 0 ? answer.cseq : 0;
    let gap = null;
    if (!answer.ok) {
      const first = Number.isInteger(answer.first_seq) && answer.first_seq >= 1 ? answer.first_seq : 1;
      gap = { reason: String(answer.reason || "unknown"), lastSeq: this._received, firstSeq: first };
      this._received = this._ackSent = first - 1;
    }
    this._dropAcknowledged(handled);
    if (this._pending.length && this._pending[0].cseq !== handled + 1) {
      // The hub counts from elsewhere (a new membership): number them again.
      this._pending.forEach((item, i) => {
        item.cseq = handled + 1 + i;
        item.text = numberedText(item);
      });
    }
    this._nextCseq = handled + 1 + this._pending.length;
    this._ready = true;
    for (const item of this._pending) ws.send(item.text);
    if (gap) this._gap(gap);
  }

  _dropAcknowledged(handled) {
    let n = 0;
    while (n < this._pending.length && this._pending[n].cseq <= handled) n += 1;
    if (n) this._pending.splice(0, n);
  }

  _sendAck() {
    clearTimeout(this._ackTimer);
    this._ackTimer = null;
    const ws = this._ws;
    if (!this._ready || !ws || ws.readyState !== 1 || this._received <= this._ackSent) return;
    this._ackSent = this._received;
    ws.send(JSON.stringify({ type: "wsroom.ack", payload: { seq: this._received } }));
  }

  _gap(gap) {
    this.gaps.push(gap);
    console.warn(`wsroom: envelopes lost (${gap.reason}): after ${gap.lastSeq}, next ${gap.firstSeq}`);
    for (const handler of [...this._gapHandlers]) {
      try {
        handler(gap);
      } catch (err) {
        console.error("wsroom: gap handler failed", err);
      }
    }
  }

  _giveUp(extra) {
    this._closed = true;
    clearTimeout(this._timer);
    this.lastClose = { code: 1006, reason: extra.reason };
    this._setState("error", { code: 1006, ...extra });
  }

  _dispatch(envelope) {
    const targets = [
      ...(this._handlers.get(envelope.type) || []),
      ...(this._handlers.get("*") || []),
    ];
    for (const handler of targets) {
      try {
        handler(envelope.payload, envelope);
      } catch (err) {
        console.error(`wsroom: handler for ${envelope.type} failed`, err);
      }
    }
  }

  _scheduleRetry(code, reason) {
    if (this._closed) return;
    if (this._isOffline()) {
      this._setState("offline", { code, reason });
      return;
    }
    const { minDelay, maxDelay, factor, jitter } = this.options;
    const base = Math.min(maxDelay, minDelay * Math.pow(factor, this.attempt));
    const delay = Math.round(base * (1 - jitter * Math.random()));
    this.attempt += 1;
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._open(), delay);
    this._setState("reconnecting", { delay, code, reason });
  }

  _drop(code, reason) {
    // Give up on the current socket (it may be half dead) and treat it as a drop.
    const ws = this._ws;
    this._ws = null;
    this._ready = false;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      try {
        ws.close(code, reason);
      } catch (err) {
        // already closing
      }
    }
    this.lastClose = { code, reason };
    this._scheduleRetry(code, reason);
  }

  _offline() {
    if (this._closed) return;
    clearTimeout(this._timer);
    const ws = this._ws;
    this._ws = null;
    this._ready = false;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      try {
        ws.close(4100, "offline");
      } catch (err) {
        // already closing
      }
      this.lastClose = { code: 4100, reason: "offline" };
    }
    this._setState("offline");
  }

  _online() {
    if (this._closed || this._ws) return;
    clearTimeout(this._timer);
    this.attempt = 0;
    this._failedOpens = 0;
    this._open();
  }
}

/** Open a connection to a hub; see Connection. */
export function connect(url, options = {}) {
  const conn = new Connection(url, options);
  conn._open();
  return conn;
}

export default {
  connect,
  Connection,
  FINAL_CODES,
  REFUSED_STATUSES,
  RESUME_PROTOCOL,
  PLAIN_PROTOCOL,
  isFinalCode,
  isRefusalCode,
};
