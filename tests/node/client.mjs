// A WebSocket client for the wsroom tests, driven over stdin and stdout, one JSON object a line.
//
//   node client.mjs <url>
//
// stdout: {"event": "open", "extensions": "...", "protocol": "..."}
//         {"event": "message", "data": <the parsed text frame>}
//         {"event": "close", "code": 1000, "reason": "..."}
//         {"event": "error", "message": "..."}
// stdin:  {"send": <any JSON value, sent as one text frame>}
//         {"close": [code, reason]}
import { createInterface } from "node:readline";
import WebSocket from "ws";

const url = process.argv[2];
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const ws = new WebSocket(url, { perMessageDeflate: true });

ws.on("open", () => {
  out({ event: "open", extensions: ws.extensions, protocol: ws.protocol });
});
ws.on("message", (data, isBinary) => {
  if (isBinary) {
    out({ event: "binary", length: data.length });
    return;
  }
  out({ event: "message", data: JSON.parse(data.toString("utf8")) });
});
ws.on("close", (code, reason) => {
  out({ event: "close", code, reason: reason.toString("utf8") });
  process.exit(0);
});
ws.on("error", (err) => {
  out({ event: "error", message: String(err && err.message) });
});

const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  if (!line.trim()) return;
  const cmd = JSON.parse(line);
  if ("send" in cmd) {
    ws.send(JSON.stringify(cmd.send));
  } else if ("close" in cmd) {
    ws.close(cmd.close[0], cmd.close[1] || "");
  }
});
rl.on("close", () => {
  if (ws.readyState === WebSocket.OPEN) ws.close(1000, "stdin closed");
});
