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

/** Close codes after which reconnecting would not help (or would fight another tab). */
export const FINAL_CODES = new Set([
  1000, // a normal close asked for by the server
  1003, // binary frame
  1008, // on_join refused the connection
  1009, // message too big
  4000, // room closed
  4001, // replaced by a newer connection for the same participant
]);

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
  shouldReconnect: (code) => !isFinalCode(code),
  WebSocket: globalThis.WebSocket,
};

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
    this._buffer = [];
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

  /** Send one envelope. True if written to an open socket; false if buffered for the next
   *  open (up to bufferLimit, oldest dropped first) or if the connection is closed. */
  send(type, payload = null) {
    if (typeof type !== "string" || type === "") throw new TypeError("type must be a non-empty string");
    const text = JSON.stringify({ type, payload });
    if (this._closed) return false;
    if (this._ws && this._ws.readyState === 1) {
      this._ws.send(text);
      return true;
    }
    this._buffer.push(text);
    while (this._buffer.length > this.options.bufferLimit) this._buffer.shift();
    return false;
  }

  /** Close for good: no reconnect after this. */
  close(code = 1000, reason = "") {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._timer);
    this._buffer = [];
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
    try {
      ws = new this.options.WebSocket(url, this.options.protocols);
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
      this._setState("open");
      const pending = this._buffer;
      this._buffer = [];
      for (const text of pending) ws.send(text);
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
      this._dispatch(envelope);
    };
    ws.onclose = (event) => {
      if (ws !== this._ws) return;
      this._ws = null;
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

export default { connect, Connection, FINAL_CODES, REFUSED_STATUSES, isFinalCode, isRefusalCode };
