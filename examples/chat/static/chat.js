// The chat page: wsroom.js for the connection, plain DOM for the rest.
import { connect } from "/wsroom.js";

const $ = (id) => document.getElementById(id);
const room = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "lobby");

// -- who am I: a name per person (kept), a participant id per tab (kept across reloads) --------
function randomId() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID().replaceAll("-", "");
  return Array.from({ length: 24 }, () => Math.floor(Math.random() * 36).toString(36)).join("");
}

function sessionFor(name) {
  const key = "wsroom-chat-session";
  let s = null;
  try { s = JSON.parse(sessionStorage.getItem(key) || "null"); } catch { s = null; }
  if (!s || s.name !== name) {
    s = { name, sid: randomId() };
    sessionStorage.setItem(key, JSON.stringify(s));
  }
  return s.sid;
}

function askName() {
  return new Promise((resolve) => {
    const saved = localStorage.getItem("wsroom-chat-name");
    if (saved) return resolve(saved);
    const dialog = $("name-dialog");
    $("dialog-room").textContent = `#${room}`;
    dialog.addEventListener("close", () => {
      const name = $("name").value.trim() || "anonymous";
      localStorage.setItem("wsroom-chat-name", name);
      resolve(name);
    }, { once: true });
    dialog.addEventListener("cancel", (e) => e.preventDefault());
    dialog.showModal();
  });
}

// -- the message log: one entry per seq, in seq order, cached for reloads ---------------------
const log = {
  key: "",
  epoch: "", // the room's history id: another one means the old history is gone
  server: "", // the server's id, made at its start: another one means it restarted
  entries: new Map(), // seq -> entry
  maxSeq: 0,
  load(key) {
    this.key = key;
    try {
      const saved = JSON.parse(sessionStorage.getItem(key) || "null");
      if (saved) {
        this.epoch = saved.epoch;
        this.server = saved.server || "";
        for (const e of saved.entries) this.entries.set(e.seq, e);
        this.maxSeq = Math.max(0, ...this.entries.keys());
      }
    } catch { /* a broken cache is an empty one */ }
  },
  save() {
    const entries = [...this.entries.values()].slice(-200);
    const state = { epoch: this.epoch, server: this.server, entries };
    sessionStorage.setItem(this.key, JSON.stringify(state));
  },
  /** A new history: drop the old one, keep what is still being sent, and say why (unless
   *  this page never had a history, e.g. its first visit). */
  reset(epoch, server) {
    const had = this.epoch !== "";
    const restarted = had && this.server !== "" && server !== this.server;
    this.epoch = epoch;
    this.server = server;
    this.entries.clear();
    this.maxSeq = 0;
    const stillSending = [...$("messages").querySelectorAll("li.pending")];
    $("messages").replaceChildren();
    if (had) {
      const li = document.createElement("li");
      li.className = "notice restart";
      li.dataset.seq = "0";
      li.textContent = restarted
        ? "The server restarted: the conversation before it is gone."
        : "Everyone had left this room: the conversation before is gone.";
      $("messages").append(li);
    }
    $("messages").append(...stillSending);
  },
  add(entry) {
    confirm(entry);
    if (this.entries.has(entry.seq)) return false; // exactly once, whatever arrives twice
    this.entries.set(entry.seq, entry);
    this.maxSeq = Math.max(this.maxSeq, entry.seq);
    render(entry);
    return true;
  },
};

// -- messages on their way: a bubble from the moment it is typed until the server has it -----
const pending = new Map(); // cid -> {text, written, li}

function newCid() {
  return randomId().slice(0, 16);
}

function renderPending(cid, text) {
  const li = document.createElement("li");
  li.className = "msg mine pending";
  li.dataset.cid = cid;
  const bubble = document.createElement("div");
  bubble.className = "bubble";
  const meta = document.createElement("div");
  meta.className = "meta";
  const who = document.createElement("b");
  who.textContent = "You";
  const when = document.createElement("span");
  when.className = "sending";
  when.textContent = "sending…";
  meta.append(who, when);
  const body = document.createElement("div");
  body.className = "text";
  body.textContent = text;
  bubble.append(meta, body);
  li.append(avatar(localStorage.getItem("wsroom-chat-name") || "you"), bubble);
  const list = $("messages");
  list.append(li); // after every confirmed message (render() inserts before pending ones)
  list.scrollTop = list.scrollHeight;
  return li;
}

/** The server's entry for one of our messages arrived: the pending bubble gives way to it. */
function confirm(entry) {
  const item = entry.cid && entry.from === me ? pending.get(entry.cid) : null;
  if (!item) return;
  item.li.remove();
  pending.delete(entry.cid);
}

/** The connection is gone for good: what did not get through is marked as not sent. */
function failPending() {
  for (const { li } of pending.values()) {
    li.classList.add("failed");
    li.querySelector(".sending").textContent = "not sent";
  }
}

let me = null;

function colorFor(text) {
  let h = 0;
  for (const ch of text) h = (h * 31 + ch.codePointAt(0)) % 360;
  return `hsl(${h} 70% 70%)`;
}

function avatar(name) {
  const el = document.createElement("span");
  el.className = "avatar";
  el.style.background = colorFor(name);
  el.textContent = name.split(/\s+/).map((w) => w[0] || "").join("").slice(0, 2).toUpperCase();
  return el;
}

function timeOf(ts) {
  return new Date(ts * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function render(entry) {
  const list = $("messages");
  const li = document.createElement("li");
  li.dataset.seq = entry.seq;
  li.dataset.kind = entry.kind;
  if (entry.kind === "message") {
    li.className = "msg" + (entry.from === me ? " mine" : "");
    const bubble = document.createElement("div");
    bubble.className = "bubble";
    const meta = document.createElement("div");
    meta.className = "meta";
    const who = document.createElement("b");
    who.textContent = entry.from === me ? "You" : entry.name;
    const when = document.createElement("span");
    when.textContent = timeOf(entry.ts);
    meta.append(who, when);
    const text = document.createElement("div");
    text.className = "text";
    text.textContent = entry.text;
    bubble.append(meta, text);
    li.append(avatar(entry.name), bubble);
  } else {
    li.className = "notice";
    li.textContent = `${entry.name} ${entry.kind === "joined" ? "joined" : "left"} · ${timeOf(entry.ts)}`;
  }
  // Keep seq order even if something arrives late (a sync answer after live traffic).
  let before = null;
  for (let node = list.lastElementChild; node; node = node.previousElementSibling) {
    if (Number(node.dataset.seq) < entry.seq) break;
    before = node;
  }
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  list.insertBefore(li, before);
  if (atBottom || entry.from === me) list.scrollTop = list.scrollHeight;
}

function renderPresence(people) {
  const ul = $("presence");
  ul.replaceChildren();
  for (const p of people) {
    const li = document.createElement("li");
    li.className = "person";
    li.dataset.id = p.id;
    li.dataset.name = p.name;
    li.dataset.state = p.state;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = p.name;
    if (p.id === me) {
      const you = document.createElement("span");
      you.className = "you";
      you.textContent = " (you)";
      who.append(you);
    }
    const state = document.createElement("span");
    state.className = "state";
    state.textContent = p.state === "online" ? "online" : "away";
    li.append(avatar(p.name), who, state);
    ul.append(li);
  }
  $("count").textContent = String(people.filter((p) => p.state === "online").length);
}

// -- connection state, always visible ---------------------------------------------------------
const CLOSE_TEXT = {
  4000: "This room was closed.",
  4001: "This chat is open in another tab or window.",
  1008: "The server refused this connection.",
};

function showState({ state, delay, code, refused, status, reason }) {
  const pill = $("conn");
  pill.dataset.state = state;
  document.body.dataset.conn = state;
  const banner = $("banner");
  banner.className = "banner";
  let text = "Not connected";
  let note = "";
  if (state === "open") text = "Connected";
  else if (state === "connecting") text = "Connecting…";
  else if (state === "reconnecting") {
    text = delay ? `Reconnecting in ${Math.max(1, Math.round(delay / 1000))}s…` : "Reconnecting…";
    note = "Connection lost — reconnecting. Messages you send now go out when it is back.";
  } else if (state === "offline") {
    text = "Offline";
    note = "You are offline. The chat will catch up when the network is back.";
  } else if (state === "closed") {
    text = "Disconnected";
    note = CLOSE_TEXT[code] || "Disconnected from the chat. Reload the page to join again.";
    banner.classList.add("bad");
  } else if (state === "error") {
    text = "Cannot connect";
    note = refused
      ? `The server refused this connection (${status ? `HTTP ${status}: ` : ""}${reason}).`
      : `Cannot reach the chat server (${reason}). Reload the page to try again.`;
    banner.classList.add("bad");
  }
  $("conn-text").textContent = text;
  banner.textContent = note;
  banner.hidden = !note;
}

/** A notice where messages may be missing: what the history still has is fetched after it. */
function showGap() {
  const li = document.createElement("li");
  li.className = "notice gap";
  li.dataset.seq = String(log.maxSeq + 0.5); // after what we have, before what comes
  li.textContent = "Some messages could not be delivered while you were away; catching up from the history.";
  const list = $("messages");
  list.append(li);
  list.scrollTop = list.scrollHeight;
}

// -- start ------------------------------------------------------------------------------------
async function main() {
  $("room-name").textContent = `#${room}`;
  document.title = `#${room} · wsroom chat`;
  $("switch-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const target = $("switch-room").value.trim().replace(/[^A-Za-z0-9_-]/g, "-").slice(0, 40);
    if (target) location.href = `/r/${encodeURIComponent(target)}`;
  });

  $("people-toggle").addEventListener("click", () => {
    // Only a phone layout folds the list (see chat.css); elsewhere the toggle changes nothing.
    const open = $("presence").closest(".people").classList.toggle("open");
    $("people-toggle").setAttribute("aria-expanded", String(open));
  });

  const name = await askName();
  const sid = sessionFor(name);
  me = sid;
  log.load(`wsroom-chat-log:${room}:${sid}`);
  for (const e of [...log.entries.values()].sort((a, b) => a.seq - b.seq)) render(e);

  // resume: every message reaches the server once and every one it sends reaches this page once,
  // across drops inside the grace period; what the server could not keep is reported (onGap).
  const conn = connect(
    `/ws/${encodeURIComponent(room)}?name=${encodeURIComponent(name)}&sid=${encodeURIComponent(sid)}`,
    { resume: true },
  );
  window.chat = { conn, log, room, me: sid }; // for tests and curious people

  let wasOpen = false;
  conn.onState((event) => {
    showState(event);
    if (event.state === "closed" || event.state === "error") failPending();
    if (event.state === "open") {
      // A message written to a socket that then died may never have arrived: send it again
      // (the server drops a copy it already has, by cid). Buffered ones go out by themselves,
      // and with resume (conn.numbered) the connection sends again what was not acknowledged.
      for (const [cid, item] of pending) {
        if (item.written && wasOpen && !conn.numbered) conn.send("say", { text: item.text, cid });
        item.written = true;
      }
      wasOpen = true;
    }
  });
  let presenceVersion = 0; // the newest presence list's, since this connection's hello
  conn.on("hello", (hello) => {
    presenceVersion = 0;
    // A new room under an old name, or a restarted server: the old history is gone.
    if (hello.epoch !== log.epoch) log.reset(hello.epoch, hello.server || "");
    log.server = hello.server || "";
    for (const e of hello.history || []) log.add(e);
    if (!hello.reconnect) conn.send("sync", { after: log.maxSeq }); // said during our join
    log.save();
  });
  conn.on("message", (entry) => {
    const gap = entry.seq > log.maxSeq + 1 && log.maxSeq > 0;
    const before = log.maxSeq;
    log.add(entry);
    if (gap) conn.send("sync", { after: before }); // e.g. more missed than the hub could queue
    log.save();
  });
  conn.on("messages", (entries) => {
    for (const e of entries) log.add(e);
    log.save();
  });
  conn.on("presence", (list) => {
    // With many server processes, lists made by two of them may cross on the way: keep the newest.
    if (list.version < presenceVersion) return;
    presenceVersion = list.version;
    renderPresence(list.people);
  });
  conn.onGap(() => {
    // The server could not keep everything sent while we were away (its queue filled, or the
    // grace period ran out): say so, and fetch what we missed from the history.
    showGap();
    conn.send("sync", { after: log.maxSeq });
  });

  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = $("text");
    const text = input.value.trim();
    if (!text) return;
    const cid = newCid();
    const li = renderPending(cid, text);
    const written = conn.send("say", { text, cid }); // false: buffered until the socket is back
    pending.set(cid, { text, written, li });
    if (conn.state === "closed" || conn.state === "error") failPending();
    input.value = "";
    input.focus();
  });
  $("text").focus();
}

main();
