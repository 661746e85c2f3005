// The game page: renders the state the game actor broadcasts; sends moves.
import { connect } from "/wsroom.js";

const $ = (id) => document.getElementById(id);
const gameId = location.pathname.split("/").filter(Boolean).pop();

function sessionId() {
  const key = `wsroom-game-sid:${gameId}`;
  let sid = sessionStorage.getItem(key);
  if (!sid) {
    sid = (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2)).replaceAll("-", "").slice(0, 24);
    sessionStorage.setItem(key, sid);
  }
  return sid;
}

const me = sessionId();
const name = localStorage.getItem("wsroom-game-name") || `Player ${me.slice(0, 3).toUpperCase()}`;
let state = null;
let connState = "idle";

function myMark() {
  if (!state) return null;
  for (const [mark, p] of Object.entries(state.players)) if (p && p.id === me) return mark;
  return null;
}

function setStatus(kind, text) {
  $("status").dataset.status = kind;
  $("status").textContent = text;
}

function render() {
  const mark = myMark();
  const live = connState === "open";
  if (state) {
    for (const m of ["X", "O"]) {
      const p = state.players[m];
      const el = $(`player-${m}`);
      el.querySelector(".pname").textContent = p ? p.name + (p.id === me ? " (you)" : "") : "waiting…";
      el.dataset.online = p ? String(p.online) : "";
      el.querySelector(".pstate").textContent = p ? (p.online ? "" : "reconnecting…") : "";
      el.classList.toggle("turn", state.status === "playing" && state.turn === m);
    }
    const cells = document.querySelectorAll(".cell");
    cells.forEach((cell, i) => {
      cell.textContent = state.board[i];
      cell.dataset.mark = state.board[i];
      cell.classList.toggle("win", !!state.line && state.line.includes(i));
      cell.disabled = !live || state.status !== "playing" || state.turn !== mark || !!state.board[i];
    });
  }
  $("board").classList.toggle("off", !live);
  if (connState === "closed" || connState === "error") return setStatus("disconnected", "Disconnected from the game. Reload the page to try again.");
  if (connState === "offline") return setStatus("disconnected", "You are offline — waiting for the network…");
  if (connState === "reconnecting") return setStatus("disconnected", "Connection lost — reconnecting…");
  if (!state) return setStatus("connecting", "Connecting…");
  const other = mark ? state.players[mark === "X" ? "O" : "X"] : null;
  $("bot").hidden = !(mark && !other && state.status !== "playing");
  $("rematch").hidden = !(mark && (state.status === "won" || state.status === "draw"));
  switch (state.status) {
    case "waiting":
      return setStatus("waiting", mark ? "Waiting for an opponent — share the link or play the bot." : "Waiting for players…");
    case "playing":
      if (!mark) return setStatus("playing", `${state.turn} to play`);
      const turn = state.turn === mark ? "Your turn" : "Opponent's turn";
      if (other && !other.online) return setStatus("playing", `${turn} — opponent disconnected, keeping their seat…`);
      return setStatus("playing", turn);
    case "won":
      if (!mark) return setStatus("won", `${state.winner} wins`);
      return state.winner === mark ? setStatus("won", "You win!") : setStatus("lost", "You lose.");
    case "draw":
      return setStatus("draw", "Draw.");
    case "abandoned":
      return setStatus("abandoned", "Opponent left the game.");
  }
}

function apply(next) {
  // Versions count within one game; another epoch is another game (the server restarted, or
  // the game was made anew): take its state whatever its version, and say so.
  const renewed = state !== null && next.epoch !== state.epoch;
  if (!renewed && state && next.version <= state.version) return; // an older state arriving late
  state = next;
  $("error").hidden = true;
  if (renewed) {
    $("notice").textContent = "The server restarted this game: it starts again from an empty board.";
    $("notice").hidden = false;
  } else if (state.board.some(Boolean)) {
    $("notice").hidden = true; // a move was made in the new game: old news
  }
  render();
}

const conn = connect(`/ws/${gameId}?name=${encodeURIComponent(name)}&sid=${me}`);
window.game = { conn, me, get state() { return state; } };
conn.onState(({ state: s }) => {
  connState = s;
  const pill = $("conn");
  pill.dataset.state = s;
  $("conn-text").textContent = { open: "Connected", connecting: "Connecting…", reconnecting: "Reconnecting…", offline: "Offline", closed: "Disconnected", error: "Cannot connect", idle: "Not connected" }[s];
  render();
});
conn.on("hello", ({ state: s }) => {
  apply(s);
  conn.send("sync"); // anything broadcast while our join was in flight
});
conn.on("state", apply);
conn.on("error", ({ message }) => {
  $("error").textContent = message;
  $("error").hidden = false;
});

$("board").addEventListener("click", (e) => {
  const cell = e.target.closest(".cell");
  if (cell && !cell.disabled) conn.send("play", { cell: Number(cell.dataset.cell) });
});
$("rematch").addEventListener("click", () => conn.send("rematch"));
$("bot").addEventListener("click", () => fetch(`/bot/${gameId}`, { method: "POST" }));
$("copy").addEventListener("click", async () => {
  try { await navigator.clipboard.writeText(location.href); $("copy").textContent = "Link copied"; }
  catch { $("copy").textContent = location.href; }
});
