// bullhorn.js: the browser client for bullhorn broadcast rooms.
// Dependency-free ES module; also sets `window.Bullhorn` when loaded as a classic script.
//
//   const conn = Bullhorn.connect({ app: "demo", rooms: ["gifts"], onMessage: (m) => … });
//   conn.close();
//
// Reconnects with full-jitter exponential backoff, honours the server's
// reconnect_after_ms, resumes each room after the last seq it saw, pings to
// detect half-open connections, and reports gaps through onLagged.
(function (global) {
  "use strict";

  function connect(options) {
    var opts = Object.assign({ app: "demo", rooms: [], minBackoffMs: 500, maxBackoffMs: 30000 }, options || {});
    var lastSeq = {};
    var socket = null;
    var attempt = 0;
    var closed = false;
    var retryTimer = null;
    var pingTimer = null;
    var serverDelay = null;
    var lastHeard = 0;

    function emit(name, value) {
      var fn = opts[name];
      if (typeof fn === "function") { try { fn(value); } catch (e) { console.error(e); } }
    }

    function baseUrl() {
      if (opts.url) return opts.url.replace(/\/$/, "");
      var scheme = location.protocol === "https:" ? "wss:" : "ws:";
      return scheme + "//" + location.host;
    }

    function endpoint() {
      var query = opts.rooms.map(function (room) {
        var entry = lastSeq[room] !== undefined ? room + "@" + lastSeq[room] : room;
        return "room=" + encodeURIComponent(entry);
      }).join("&");
      return baseUrl() + "/v1/apps/" + encodeURIComponent(opts.app) + "/ws?" + query;
    }

    function open() {
      if (closed) return;
      emit("onState", attempt === 0 ? "connecting" : "reconnecting");
      socket = new WebSocket(endpoint());
      socket.onopen = function () { lastHeard = Date.now(); };
      socket.onmessage = function (event) {
        lastHeard = Date.now();
        var msg;
        try { msg = JSON.parse(event.data); } catch (e) { return; }
        handle(msg);
      };
      socket.onclose = function () {
        stopPing();
        socket = null;
        if (closed) { emit("onState", "closed"); return; }
        schedule();
      };
      socket.onerror = function () { /* onclose follows */ };
    }

    function handle(msg) {
      switch (msg.type) {
        case "welcome":
          attempt = 0;
          serverDelay = null;
          (msg.rooms || []).forEach(function (r) {
            if (lastSeq[r.room] === undefined) lastSeq[r.room] = r.seq;
          });
          startPing(msg.heartbeat_ms || 25000);
          emit("onState", "open");
          break;
        case "broadcast":
          var prev = lastSeq[msg.room];
          if (prev !== undefined && msg.seq <= prev) return; // already seen (resume overlap)
          if (prev !== undefined && msg.seq > prev + 1) {
            emit("onLagged", { room: msg.room, missed: msg.seq - prev - 1, reason: "gap" });
          }
          lastSeq[msg.room] = msg.seq;
          emit("onMessage", msg);
          break;
        case "lagged":
          emit("onLagged", msg);
          break;
        case "closing":
          if (typeof msg.reconnect_after_ms === "number") serverDelay = msg.reconnect_after_ms;
          if (msg.reason === "room_destroyed") { closed = true; emit("onState", "room_destroyed"); }
          break;
      }
    }

    function startPing(heartbeatMs) {
      stopPing();
      pingTimer = setInterval(function () {
        if (!socket || socket.readyState !== 1) return;
        if (Date.now() - lastHeard > heartbeatMs * 2 + 5000) { socket.close(); return; }
        socket.send('{"type":"ping"}');
      }, heartbeatMs);
    }

    function stopPing() {
      if (pingTimer) clearInterval(pingTimer);
      pingTimer = null;
    }

    function schedule() {
      var delay;
      if (serverDelay !== null) {
        delay = serverDelay;
        serverDelay = null;
      } else {
        var cap = Math.min(opts.maxBackoffMs, opts.minBackoffMs * Math.pow(2, attempt));
        delay = Math.random() * cap; // full jitter
      }
      attempt += 1;
      emit("onState", "waiting");
      retryTimer = setTimeout(open, delay);
    }

    open();
    return {
      close: function () {
        closed = true;
        if (retryTimer) clearTimeout(retryTimer);
        stopPing();
        if (socket) socket.close(1000);
      },
      lastSeq: function (room) { return lastSeq[room]; },
    };
  }

  var api = { connect: connect };
  if (global) global.Bullhorn = api;
})(typeof window !== "undefined" ? window : globalThis);

export const connect = globalThis.Bullhorn.connect;
export default globalThis.Bullhorn;
