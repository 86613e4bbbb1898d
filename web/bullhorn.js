// bullhorn.js: the browser client for bullhorn broadcast rooms. No dependencies.
//
//   import { connect } from "/sdk/bullhorn.js";            // as an ES module
//   <script src="/sdk/bullhorn.global.js"></script>        // or a plain script: window.Bullhorn.connect
//
//   const conn = connect({ app: "demo", rooms: ["gifts"], onMessage: (m) => show(m.data) });
//   conn.close();
//
// Reconnects by itself with full-jitter exponential backoff, or after the delay
// the server asked for (`closing.reconnect_after_ms`); resumes every room after
// the last seq it saw (`room@seq`), so nothing sent while it was away is lost
// while the server still holds it; pings to find half-open connections; reports
// every gap it sees (announced by the server or not) through onLagged.
// The server serves /sdk/bullhorn.global.js from this file with `export` removed.

export const VERSION = "1";

/**
 * Subscribes to rooms of an app. See bullhorn.d.ts for the options and events.
 */
export function connect(options) {
  const opts = Object.assign({ app: "demo", rooms: [], minBackoffMs: 500, maxBackoffMs: 30000 }, options);
  const lastSeq = new Map();
  let socket = null;
  let attempt = 0;
  let closed = false;
  let retryTimer = null;
  let pingTimer = null;
  let serverDelay = null;
  let lastHeard = 0;
  let state = "";

  function emit(name, value) {
    const fn = opts[name];
    if (typeof fn === "function") {
      try { fn(value); } catch (e) { console.error(e); }
    }
  }

  function setState(next) {
    if (next === state) return;
    state = next;
    emit("onState", next);
  }

  function baseUrl() {
    if (opts.url) return opts.url.replace(/\/$/, "");
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host;
  }

  function endpoint() {
    const query = opts.rooms.map((room) => {
      const entry = lastSeq.has(room) ? room + "@" + lastSeq.get(room) : room;
      return "room=" + encodeURIComponent(entry);
    });
    return baseUrl() + "/v1/apps/" + encodeURIComponent(opts.app) + "/ws?" + query.join("&");
  }

  function open() {
    retryTimer = null;
    if (closed) return;
    setState(attempt === 0 ? "connecting" : "reconnecting");
    const ws = new WebSocket(endpoint());
    socket = ws;
    ws.onopen = () => { lastHeard = Date.now(); };
    ws.onmessage = (event) => {
      lastHeard = Date.now();
      let msg;
      try { msg = JSON.parse(event.data); } catch (e) { return; }
      handle(msg);
    };
    ws.onclose = () => {
      if (socket !== ws) return;
      stopPing();
      socket = null;
      if (closed) { setState("closed"); return; }
      schedule();
    };
  }

  function handle(msg) {
    switch (msg.type) {
      case "welcome":
        attempt = 0;
        serverDelay = null;
        // The server's word: the seq we resume after, or an earlier one if the room restarted.
        for (const r of msg.rooms || []) lastSeq.set(r.room, r.seq);
        startPing(msg.heartbeat_ms || 25000);
        setState("open");
        break;
      case "broadcast": {
        const prev = lastSeq.get(msg.room);
        if (prev !== undefined && msg.seq <= prev) return; // seen already
        if (prev !== undefined && msg.seq > prev + 1) {
          emit("onLagged", { type: "lagged", room: msg.room, missed: msg.seq - prev - 1, reason: "gap" });
        }
        lastSeq.set(msg.room, msg.seq);
        emit("onMessage", msg);
        break;
      }
      case "lagged":
        // A `lagged` stands where the messages it counts would have been.
        if (lastSeq.has(msg.room)) lastSeq.set(msg.room, lastSeq.get(msg.room) + msg.missed);
        emit("onLagged", msg);
        break;
      case "closing":
        if (typeof msg.reconnect_after_ms === "number") serverDelay = msg.reconnect_after_ms;
        emit("onClosing", msg);
        if (msg.reason === "room_destroyed") { closed = true; setState("room_destroyed"); }
        break;
      case "error":
        closed = true;
        emit("onError", msg);
        setState("failed");
        break;
    }
  }

  function startPing(heartbeatMs) {
    stopPing();
    pingTimer = setInterval(() => {
      if (!socket || socket.readyState !== WebSocket.OPEN) return;
      // Nothing heard for two heartbeats: the connection is half-open; drop it and reconnect.
      if (Date.now() - lastHeard > heartbeatMs * 2 + 5000) { socket.close(); return; }
      socket.send('{"type":"ping"}');
    }, heartbeatMs);
  }

  function stopPing() {
    if (pingTimer) clearInterval(pingTimer);
    pingTimer = null;
  }

  function schedule() {
    let delay;
    if (serverDelay !== null) {
      delay = serverDelay;
      serverDelay = null;
    } else {
      const cap = Math.min(opts.maxBackoffMs, opts.minBackoffMs * 2 ** Math.min(attempt, 16));
      delay = Math.random() * cap; // full jitter
    }
    attempt += 1;
    setState("waiting");
    emit("onReconnect", { delayMs: delay, attempt });
    retryTimer = setTimeout(open, delay);
  }

  open();
  return {
    close() {
      closed = true;
      if (retryTimer) clearTimeout(retryTimer);
      stopPing();
      if (socket) socket.close(1000);
      else setState("closed");
    },
    lastSeq: (room) => lastSeq.get(room),
    get state() { return state; },
  };
}
