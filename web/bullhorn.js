// bullhorn.js: the browser client for bullhorn broadcast rooms. No dependencies.
//
//   import { connect } from "/sdk/bullhorn.js";            // as an ES module
//   <script src="/sdk/bullhorn.global.js"></script>        // or a plain script: window.Bullhorn.connect
//
//   const conn = connect({ app: "demo", rooms: ["gifts"], onMessage: (m) => show(m.data) });
//   conn.close();
//
// In a WeChat, uni-app or Alipay mini program, where there is no `WebSocket`,
// it uses the platform's `connectSocket` (`wx`, `uni`, `my`; or the one named
// by the `socket` option) behind the same interface; give it `url` there.
//
// Tries WebTransport (QUIC: no head-of-line blocking, survives network
// changes) where the browser has it, and falls back to WebSocket when it
// fails or is not ready within a short timeout, and to Server-Sent Events
// when WebSocket closes before the server's first message (a proxy or web
// view that blocks it); each fallback is remembered for the browser session.
// Reconnects by itself with full-jitter exponential
// backoff, or after the delay the server asked for (`closing.reconnect_after_ms`);
// resumes every room after the last seq it saw (`room@seq`), so nothing sent
// while it was away is lost while the server still holds it; pings a quiet
// server and replaces a silent connection; reports every gap it sees
// (announced by the server or not) through onLagged.
// The server serves /sdk/bullhorn.global.js from this file with `export` removed.

export const VERSION = "2";

/**
 * Subscribes to rooms of an app. See bullhorn.d.ts for the options and events.
 */
export function connect(options) {
  const opts = Object.assign({
    app: "demo", rooms: [], minBackoffMs: 500, maxBackoffMs: 30000,
    transport: "auto", webtransportPort: 4433, webtransportTimeoutMs: 3000,
    pingAfterMs: 10000, silentTimeoutMs: 30000,
  }, options);
  const lastSeq = new Map();
  let link = null; // the connection in use: { transport, open, send(text), close() }
  let attempt = 0;
  let closed = false;
  let retryTimer = null;
  let pingTimer = null;
  let serverDelay = null;
  let lastHeard = 0;
  let lastPing = 0;
  let webtransportWorked = false;
  let websocketWorked = false;
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

  function wsBase() {
    if (opts.url) return opts.url.replace(/\/$/, "");
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host;
  }

  function wtBase() {
    if (opts.webtransportUrl) return opts.webtransportUrl.replace(/\/$/, "");
    let host = new URL(wsBase().replace(/^ws/, "http")).hostname;
    // A development certificate is pinned by hash, not checked by name, and
    // browsers try only ::1 for "localhost" where the listener takes IPv4.
    if (host === "localhost" && opts.certificateHash) host = "127.0.0.1";
    return "https://" + host + ":" + opts.webtransportPort;
  }

  function path(kind) {
    const query = opts.rooms.map((room) => {
      const entry = lastSeq.has(room) ? room + "@" + lastSeq.get(room) : room;
      return "room=" + encodeURIComponent(entry);
    });
    return "/v1/apps/" + encodeURIComponent(opts.app) + "/" + kind + "?" + query.join("&");
  }

  // A fallback lasts the browser session, per WebTransport address.
  const memoryKey = "bullhorn.transport " + wtBase();
  let memory = null; // when sessionStorage is off: this page only
  function remembered() {
    try { return sessionStorage.getItem(memoryKey); } catch (e) { return memory; }
  }
  function remember(transport) {
    memory = transport;
    try { sessionStorage.setItem(memoryKey, transport); } catch (e) { /* storage off: this page only */ }
  }

  function tryWebTransport() {
    if (opts.transport !== "auto" && opts.transport !== "webtransport") return false;
    if (typeof WebTransport !== "function") return false;
    return opts.transport === "webtransport" || remembered() === null;
  }

  function trySse() {
    if (typeof EventSource !== "function") return false;
    return opts.transport === "sse" || (opts.transport === "auto" && remembered() === "sse");
  }

  function open() {
    retryTimer = null;
    if (closed) return;
    setState(attempt === 0 ? "connecting" : "reconnecting");
    const mini = miniProgramSocket(opts.socket);
    if (mini) openMiniProgramSocket(mini);
    else if (tryWebTransport()) openWebTransport();
    else if (trySse()) openSse();
    else openWebSocket();
  }

  // A mini program's socket API: the one named by `socket`, else the first of
  // wx, uni, my present where there is no WebSocket (uni-app's H5 build has both).
  function miniProgramSocket(choice) {
    if (choice === "websocket") return null;
    if (!choice && typeof WebSocket === "function") return null;
    for (const name of choice ? [choice] : ["wx", "uni", "my"]) {
      const api = globalThis[name];
      if (api && typeof api.connectSocket === "function") return { name, api };
    }
    return null;
  }

  // Their SocketTask: onOpen, onMessage({data}), onClose, onError, send({data}), close({code}).
  // `multiple: true` makes Alipay's my.connectSocket return one too.
  function openMiniProgramSocket(mini) {
    let task = null;
    const current = {
      transport: mini.name,
      open: false,
      send: (text) => task.send({ data: text }),
      close: () => task.close({ code: 1000 }),
    };
    link = current;
    // `complete` makes uni-app return the SocketTask rather than a Promise; `fail` is a failed open.
    task = mini.api.connectSocket({
      url: wsBase() + path("ws"), multiple: true, complete: () => {}, fail: () => ended(current),
    });
    task.onOpen(() => { current.open = true; lastHeard = Date.now(); });
    task.onMessage((event) => { if (typeof event.data === "string") received(event.data); });
    task.onClose(() => ended(current));
    task.onError(() => { ended(current); try { task.close({ code: 1000 }); } catch (e) { /* closed */ } });
  }


  function openWebSocket() {
    const ws = new WebSocket(wsBase() + path("ws"));
    let answered = false;
    const current = { transport: "websocket", open: false, send: (text) => ws.send(text), close: () => ws.close(1000) };
    link = current;
    ws.onopen = () => { current.open = true; lastHeard = Date.now(); };
    ws.onmessage = (event) => {
      if (!answered) { answered = true; websocketWorked = true; }
      received(event.data);
    };
    // Closed before the server's first message, on a page where WebSocket
    // never worked: blocked on the way, most likely; Server-Sent Events go
    // as a plain HTTP response. (A server that is down fails both alike.)
    ws.onclose = () => {
      if (!answered && !websocketWorked && opts.transport === "auto" && typeof EventSource === "function") {
        fallBack(current, "websocket closed before the first message", "sse");
      } else {
        ended(current);
      }
    };
  }

  // Server-Sent Events: each message is an event of its type. The server's
  // heartbeats are comments, which EventSource does not surface, so the
  // silence check is off here; a failed or ended stream is reopened by this
  // client (with room@seq from lastSeq), not by EventSource's own retry.
  // A fallback is remembered once SSE has worked: a server that refused
  // WebSocket (an unknown room, a full node) refuses SSE alike.
  function openSse(fallback) {
    const es = new EventSource(wsBase().replace(/^ws/, "http") + path("sse"));
    const current = { transport: "sse", open: false, quiet: true, send: () => {}, close: () => es.close() };
    link = current;
    es.onopen = () => { current.open = true; lastHeard = Date.now(); };
    // (Refusals are HTTP errors before the stream: EventSource reports them as `error`, below.)
    for (const type of ["welcome", "broadcast", "lagged", "sticky", "occupancy", "closing"]) {
      es.addEventListener(type, (event) => {
        if (fallback) { fallback = false; remember("sse"); }
        received(event.data);
      });
    }
    es.onerror = () => { es.close(); ended(current); };
  }

  function openWebTransport() {
    const hash = opts.certificateHash;
    const pinned = hash ? { serverCertificateHashes: [{ algorithm: "sha-256", value: hexBytes(hash) }] } : {};
    let wt;
    try { wt = new WebTransport(wtBase() + path("wt"), pinned); } catch (e) { return fallBack(null, e, "websocket"); }
    let pings = null;
    let answered = false;
    const current = {
      transport: "webtransport",
      open: false,
      send(text) {
        pings = pings || wt.createUnidirectionalStream().then((stream) => stream.getWriter());
        pings.then((writer) => writer.write(frame(text))).catch(() => {});
      },
      close() { try { wt.close({ closeCode: 1000, reason: "" }); } catch (e) { /* closed already */ } },
    };
    link = current;
    const timer = setTimeout(() => fallBack(current, new Error("no answer in time"), "websocket"), opts.webtransportTimeoutMs);
    (async () => {
      await wt.ready;
      current.open = true;
      lastHeard = Date.now();
      const { value: stream } = await wt.incomingUnidirectionalStreams.getReader().read();
      const reader = stream.getReader();
      const decoder = new TextDecoder();
      let buf = new Uint8Array(0);
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buf = concat(buf, value);
        while (buf.length >= 4) {
          const len = new DataView(buf.buffer, buf.byteOffset, buf.length).getUint32(0);
          if (buf.length < 4 + len) break;
          const text = decoder.decode(buf.subarray(4, 4 + len));
          buf = buf.subarray(4 + len);
          if (!answered) { answered = true; webtransportWorked = true; clearTimeout(timer); }
          received(text);
        }
      }
    })().catch((e) => e).then((error) => {
      clearTimeout(timer);
      if (answered) ended(current); else fallBack(current, error, "websocket");
    });
  }

  // A transport did not get as far as the server's first message: use the
  // next one (`to`) now. WebSocket, after WebTransport, is remembered for the
  // session unless WebTransport has worked on this page before (then the
  // server was more likely down or restarting than UDP blocked); SSE, once it
  // has worked (openSse).
  function fallBack(current, error, to) {
    if (link !== current && current !== null) return;
    if (current) current.close();
    link = null;
    if (closed) { setState("closed"); return; } // closed by the page, not a failure
    emit("onFallback", { reason: String((error && error.message) || error || "failed"), transport: to });
    if (to === "sse") { openSse(true); return; }
    if (!webtransportWorked && remembered() === null) remember("websocket");
    openWebSocket();
  }

  function received(text) {
    lastHeard = Date.now();
    let msg;
    try { msg = JSON.parse(text); } catch (e) { return; }
    handle(msg);
  }

  function ended(current) {
    if (link !== current) return;
    stopPing();
    link = null;
    if (closed) { setState("closed"); return; }
    schedule();
  }

  function handle(msg) {
    switch (msg.type) {
      case "welcome":
        attempt = 0;
        serverDelay = null;
        // The server's word: the seq we resume after, or an earlier one if the room restarted.
        for (const r of msg.rooms || []) lastSeq.set(r.room, r.seq);
        startPing();
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
      case "sticky":
        // The room's pinned message, right after welcome; its seq is not the stream's.
        emit("onSticky", msg);
        break;
      case "occupancy":
        emit("onOccupancy", msg);
        break;
      case "closing":
        if (typeof msg.reconnect_after_ms === "number") serverDelay = msg.reconnect_after_ms;
        emit("onClosing", msg);
        if (msg.reason === "room_destroyed") { closed = true; setState("room_destroyed"); }
        break;
      case "error":
        emit("onError", msg);
        // A full node is a reason to come back later; anything else is final.
        if (msg.code === "over_capacity") break;
        closed = true;
        setState("failed");
        break;
    }
  }

  // Liveness (contract section 11): after pingAfterMs without a word from the
  // server, ping; a restarted server answers a connection it no longer knows
  // with a reset, so the page comes back within seconds. After
  // silentTimeoutMs without a word, pongs included, the connection is dead.
  function startPing() {
    stopPing();
    lastPing = Date.now();
    pingTimer = setInterval(() => {
      if (!link || !link.open || link.quiet) return;
      const now = Date.now();
      if (now - lastHeard >= opts.silentTimeoutMs) { const dead = link; dead.close(); ended(dead); return; }
      if (now - Math.max(lastHeard, lastPing) >= opts.pingAfterMs) {
        lastPing = now;
        link.send('{"type":"ping"}');
      }
    }, Math.max(100, Math.min(1000, opts.pingAfterMs / 4)));
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
      if (link) link.close();
      else setState("closed");
    },
    lastSeq: (room) => lastSeq.get(room),
    get state() { return state; },
    get transport() { return link ? link.transport : null; },
  };
}

// A QUIC frame (contract §5): a 4-byte big-endian length, then UTF-8 JSON.
function frame(text) {
  const body = new TextEncoder().encode(text);
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, 4);
  return out;
}

function concat(a, b) {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function hexBytes(hex) {
  return new Uint8Array(hex.match(/../g).map((h) => parseInt(h, 16)));
}
