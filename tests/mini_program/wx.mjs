// A WeChat mini program's socket API, simulated over a real WebSocket (Node's,
// `--experimental-websocket`): wx.connectSocket returns a SocketTask with the
// callbacks and calls WeChat documents. There is no `WebSocket` for the SDK to
// find: it must take the mini program path. One message line per event on stdout.
//
//   node --experimental-websocket wx.mjs <sdk.mjs> <ws://viewer>
const [sdkPath, url] = process.argv.slice(2);
const NodeWebSocket = globalThis.WebSocket;
delete globalThis.WebSocket;
let sockets = 0;
let current = null;
globalThis.wx = {
  connectSocket({ url }) {
    sockets += 1;
    const ws = new NodeWebSocket(url);
    current = ws;
    const task = {
      onOpen: (cb) => ws.addEventListener("open", () => cb({})),
      onMessage: (cb) => ws.addEventListener("message", (event) => cb({ data: event.data })),
      onClose: (cb) => ws.addEventListener("close", (event) => cb({ code: event.code, reason: event.reason })),
      onError: (cb) => ws.addEventListener("error", () => cb({ errMsg: "connectSocket:fail" })),
      send: ({ data }) => ws.send(data),
      close: ({ code } = {}) => ws.close(code || 1000),
    };
    return task;
  },
};
const print = (event) => console.log(JSON.stringify(event));
const { connect } = await import(sdkPath);
let received = 0;
const conn = connect({
  url, app: "demo", rooms: ["gifts"], minBackoffMs: 10, maxBackoffMs: 50,
  onState: (state) => print({ state, transport: conn ? conn.transport : null, sockets }),
  onMessage: (message) => {
    print({ seq: message.seq, data: message.data });
    received += 1;
    // After the second broadcast the network drops: the SDK must come back and resume.
    if (received === 2) { current.close(4000); print({ dropped: true }); }
    if (received === 4) { conn.close(); print({ done: true, sockets }); }
  },
  onLagged: (lagged) => print({ lagged }),
});
