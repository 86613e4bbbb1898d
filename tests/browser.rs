//! H5 viewers in a real browser: Debian's Chromium, headless, driven through
//! chromedriver (WebDriver) with fantoccini. The test command installs both.
//! The pages are the server's own: the demo page at `/` (the SDK as an ES
//! module) and the SDK as a plain `<script>` (`/sdk/bullhorn.global.js`).
//! Screenshots are written to `target/browser-artifacts/`.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bullhorn::cli::ServeArgs;
use common::{ChildServer, HANG, TestServer};
use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

/// A headless Chromium behind its own chromedriver; both end with it.
struct Browser {
    client: Client,
    _driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let driver = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver (the test command installs Debian's chromium-driver)");
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=420,860",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut last_error = None;
        for _ in 0..100 {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector).capabilities(caps.clone()).connect(&url).await {
                Ok(client) => return Browser { client, _driver: driver, _profile: profile },
                Err(error) => last_error = Some(error),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not start: {last_error:?}");
    }

    async fn eval(&self, script: &str) -> Value {
        self.eval_with(script, vec![]).await
    }

    async fn eval_with(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    /// Polls `script` until it returns true; panics past the hang guard.
    async fn until(&self, script: &str) {
        let deadline = tokio::time::Instant::now() + HANG;
        while tokio::time::Instant::now() < deadline {
            if self.eval(script).await == Value::Bool(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.screenshot("hung").await;
        panic!("the page never satisfied: {script}");
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../browser-artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, self.client.screenshot().await.unwrap()).unwrap();
        path
    }

    async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// The seqs the demo page lists, oldest first (it lists newest first).
async fn demo_seqs(browser: &Browser) -> Vec<u64> {
    let value =
        browser.eval("return [...document.querySelectorAll('#log li.broadcast')].map(li => +li.dataset.seq)").await;
    let mut seqs: Vec<u64> = serde_json::from_value(value).unwrap();
    seqs.reverse();
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_shows_each_broadcast_once_in_order() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let browser = Browser::start().await;
    browser.client.goto(&format!("http://{}/?room=gifts", server.viewer)).await.unwrap();
    browser.until("return document.getElementById('state').textContent === 'open'").await;
    for i in 1..=5 {
        server.admin.broadcast("gifts", json!({"text": format!("🚀 rocket {i}")})).await;
    }
    browser.until("return document.querySelectorAll('#log li.broadcast').length >= 5").await;
    assert_eq!(demo_seqs(&browser).await, [1, 2, 3, 4, 5], "each once, in order");
    let texts =
        browser.eval("return [...document.querySelectorAll('#log li.broadcast')].map(li => li.dataset.text)").await;
    assert_eq!(texts, json!(["🚀 rocket 5", "🚀 rocket 4", "🚀 rocket 3", "🚀 rocket 2", "🚀 rocket 1"]));
    // The banner shows them one at a time; picture it settled on one.
    browser.until("return document.getElementById('banner').className === 'show'").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    browser.screenshot("demo").await;
    browser.close().await;
    server.finish().await;
}

/// The real binary on `dir` with a room `gifts`, and the demo page open on it.
async fn demo_page_on_the_binary(dir: &std::path::Path) -> (ChildServer, Browser) {
    let server = ChildServer::start(dir, &[]).await;
    server.admin.create_room("gifts").await;
    let browser = Browser::start().await;
    browser.client.goto(&format!("http://{}/?room=gifts", server.viewer)).await.unwrap();
    browser.until("return document.getElementById('state').textContent === 'open'").await;
    (server, browser)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_reconnects_after_the_server_is_killed_and_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, browser) = demo_page_on_the_binary(dir.path()).await;
    first.admin.broadcast("gifts", json!({"text": "before"})).await;
    browser.until("return document.querySelectorAll('#log li.broadcast').length === 1").await;
    first.signal(9); // no drain, no goodbye
    first.wait().await;
    browser.until("return document.getElementById('state').textContent !== 'open'").await;
    // The same binary, data dir and address, as a supervisor's restart would be.
    let viewer = first.viewer.to_string();
    let second = ChildServer::start(dir.path(), &["--viewer-addr", &viewer]).await;
    browser.until("return document.getElementById('state').textContent === 'open'").await;
    second.admin.broadcast("gifts", json!({"text": "after"})).await;
    browser.until("return document.querySelectorAll('#log li.broadcast').length === 2").await;
    let newest = browser.eval("return document.querySelector('#log li.broadcast').dataset.text").await;
    assert_eq!(newest, "after");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_works_from_a_plain_script_tag_and_closes_cleanly() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let browser = Browser::start().await;
    // A page of the viewer's origin (the demo page; its own module client is ignored here),
    // with the classic script added as a plain <script src>.
    browser.client.goto(&format!("http://{}/?room=gifts", server.viewer)).await.unwrap();
    browser
        .eval(
            "const s = document.createElement('script'); s.src = '/sdk/bullhorn.global.js'; \
             document.head.appendChild(s); return true",
        )
        .await;
    browser.until("return typeof window.Bullhorn === 'object' && typeof window.Bullhorn.connect === 'function'").await;
    browser
        .eval_with(
            "window.got = []; window.states = []; \
             window.options = { url: 'ws://' + arguments[0], webtransportPort: arguments[1], certificateHash: arguments[2] }; \
             window.conn = Bullhorn.connect({ ...options, app: 'demo', rooms: ['gifts'], \
               onMessage: (m) => got.push(m.seq), onState: (s) => states.push(s) }); return true",
            vec![json!(server.viewer.to_string()), json!(server.quic.port()), json!(server.fingerprint)],
        )
        .await;
    browser.until("return states.includes('open')").await;
    assert_eq!(browser.eval("return conn.transport").await, "webtransport");
    server.admin.broadcast("gifts", json!(1)).await;
    browser.until("return got.length === 1").await;
    // Drop the connection (as a network blip would), then send while it is away.
    browser.eval("conn.close(); return true").await;
    for i in 2..=4 {
        server.admin.broadcast("gifts", json!(i)).await;
    }
    browser
        .eval(
            "window.reopened = false; \
             window.conn = Bullhorn.connect({ ...options, app: 'demo', rooms: ['gifts'], onMessage: (m) => got.push(m.seq), \
               onState: (s) => { if (s === 'open') reopened = true; } }); \
             return true",
        )
        .await;
    browser.until("return reopened").await; // joined: what is sent from now on is owed to it
    server.admin.broadcast("gifts", json!(5)).await;
    browser.until("return got.length >= 2").await;
    // A fresh connection starts at the room's seq: it gets only what follows.
    let got = browser.eval("return got").await;
    assert_eq!(got, json!([1, 5]));
    browser.close().await;
    server.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_drain_pages_come_back_spread_over_the_window() {
    const WINDOW_MS: u64 = 3000;
    let first = TestServer::start_with(ServeArgs { drain_window_ms: Some(WINDOW_MS), ..Default::default() }).await;
    first.admin.create_room("gifts").await;
    let browser = Browser::start().await;
    browser.client.goto(&format!("http://{}/?room=gifts", first.viewer)).await.unwrap();
    // Twenty viewers on the page, each recording what the server asked and what the SDK did.
    browser
        .eval(
            "window.viewers = []; \
             import('/sdk/bullhorn.js').then(({ connect }) => { \
               for (let i = 0; i < 20; i++) { \
                 const v = { opens: 0, asked: null, waited: null }; viewers.push(v); \
                 connect({ app: 'demo', rooms: ['gifts'], transport: 'websocket', \
                   onState: (s) => { if (s === 'open') v.opens++; }, \
                   onClosing: (c) => { if (v.asked === null) v.asked = c.reconnect_after_ms; }, \
                   onReconnect: (r) => { if (v.waited === null) v.waited = r.delayMs; } }); \
               } }); \
             return true",
        )
        .await;
    browser.until("return viewers.length === 20 && viewers.every(v => v.opens === 1)").await;
    let viewer = first.viewer;
    first.finish().await;
    let second = TestServer::start_with(ServeArgs { viewer_addr: Some(viewer), ..Default::default() }).await;
    second.admin.create_room("gifts").await;
    browser.until("return viewers.every(v => v.opens === 2)").await;
    let viewers: Vec<Value> = serde_json::from_value(browser.eval("return viewers").await).unwrap();
    let mut asked: Vec<u64> = Vec::new();
    for v in &viewers {
        let (a, w) = (v["asked"].as_u64().unwrap(), v["waited"].as_f64().unwrap());
        assert_eq!(w, a as f64, "the SDK waited exactly the delay the server asked for");
        assert!(a <= WINDOW_MS);
        asked.push(a);
    }
    asked.sort_unstable();
    asked.dedup();
    let spread = asked.last().unwrap() - asked.first().unwrap();
    assert!(asked.len() >= 15, "not at once: {asked:?}");
    assert!(spread >= WINDOW_MS / 2, "spread over the window: {asked:?}");
    browser.close().await;
    second.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_creates_a_room_and_sends_a_broadcast() {
    use fantoccini::Locator;
    let server = TestServer::start().await;
    let browser = Browser::start().await;
    browser.client.goto(&format!("{}/console", server.admin.base)).await.unwrap();
    browser.client.find(Locator::Id("key")).await.unwrap().send_keys(common::KEY).await.unwrap();
    browser.client.find(Locator::Css("#login button")).await.unwrap().click().await.unwrap();
    browser.until("return document.getElementById('cap').textContent === '0 of 5'").await;
    browser.client.find(Locator::Id("new-room")).await.unwrap().send_keys("gifts").await.unwrap();
    browser.client.find(Locator::Id("new-name")).await.unwrap().send_keys("Gift announcements").await.unwrap();
    browser.client.find(Locator::Css("#create button")).await.unwrap().click().await.unwrap();
    browser.until("return document.querySelector('tr[data-room=gifts]') !== null").await;
    let (_, room) = server.admin.get("/v1/apps/demo/rooms/gifts").await;
    assert_eq!(room["name"], "Gift announcements", "created through the API");

    let mut viewer = server.subscribe(&["gifts"]).await;
    viewer.next_json().await;
    browser.until("return document.querySelector('tr[data-room=gifts] .online').textContent === '1'").await;
    browser.client.find(Locator::Css("#priority option:nth-child(2)")).await.unwrap().click().await.unwrap();
    browser.client.find(Locator::Css("#send button")).await.unwrap().click().await.unwrap();
    let message = viewer.next_json().await;
    assert_eq!(message["type"], "broadcast");
    assert_eq!(message["data"], json!({"text": "🎁 test gift from the console"}));
    browser.until("return document.getElementById('status').textContent.startsWith('sent to gifts: seq 1')").await;
    // The reach panel shows what became of it: one target, delivered.
    browser.until("return document.querySelector('#reach tr[data-seq=\"1\"] .delivered')?.textContent === '1'").await;
    let stored = browser.eval("return sessionStorage.getItem('bullhorn.key')").await;
    assert_eq!(stored, common::KEY, "the key lives in the tab's session storage");
    browser.screenshot("console").await;
    browser.close().await;
    server.finish().await;
}

/// A TCP proxy the test can cut: while `open` is false it drops every
/// connection, and `cut` ends the ones it carries, as a network blip would.
struct Blip {
    addr: std::net::SocketAddr,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Blip {
    async fn start(upstream: std::net::SocketAddr) -> Blip {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let gate = open.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !gate.load(Ordering::SeqCst) {
                    continue; // dropped: refused, as far as the page can tell
                }
                let mut cuts = cuts.clone();
                cuts.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Blip { addr, open, cut }
    }

    fn cut_and_close(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    fn reopen(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_network_blip_the_page_resumes_what_it_missed() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let blip = Blip::start(server.viewer).await;
    let browser = Browser::start().await;
    browser.client.goto(&format!("http://{}/?room=gifts", server.viewer)).await.unwrap();
    browser
        .eval_with(
            "window.got = []; window.lagged = []; window.opens = 0; \
             import('/sdk/bullhorn.js').then(({ connect }) => connect({ url: 'ws://' + arguments[0], transport: 'websocket', \
               app: 'demo', rooms: ['gifts'], minBackoffMs: 100, maxBackoffMs: 400, \
               onMessage: (m) => got.push(m.seq), onLagged: (l) => lagged.push(l), \
               onState: (s) => { if (s === 'open') opens++; } })); \
             return true",
            vec![json!(blip.addr.to_string())],
        )
        .await;
    browser.until("return opens === 1").await;
    server.admin.broadcast("gifts", json!(1)).await;
    browser.until("return got.length === 1").await;
    blip.cut_and_close();
    browser.until("return document.readyState === 'complete' && opens === 1 && got.length === 1").await;
    // Sent while the page cannot reach the server.
    for i in 2..=4 {
        server.admin.broadcast("gifts", json!(i)).await;
    }
    blip.reopen();
    browser.until("return opens === 2").await;
    server.admin.broadcast("gifts", json!(5)).await;
    browser.until("return got.length >= 5").await;
    assert_eq!(browser.eval("return got").await, json!([1, 2, 3, 4, 5]), "resumed: none missing, none twice");
    assert_eq!(browser.eval("return lagged").await, json!([]));
    browser.close().await;
    server.finish().await;
}

async fn transport_metrics(server: &TestServer) -> [Option<f64>; 3] {
    let metrics = server.admin.metrics().await;
    ["websocket", "webtransport", "quic"]
        .map(|transport| common::metric(&metrics, &format!("bullhorn_connections{{transport=\"{transport}\"}}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_receives_over_webtransport() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let browser = Browser::start().await;
    browser.client.goto(&format!("http://{}/?room=gifts", server.viewer)).await.unwrap();
    browser.until("return document.getElementById('state').textContent === 'open'").await;
    assert_eq!(browser.eval("return document.getElementById('transport').textContent").await, "webtransport");
    assert_eq!(transport_metrics(&server).await, [Some(0.0), Some(1.0), Some(0.0)]);
    for i in 1..=5 {
        server.admin.broadcast("gifts", json!({"text": format!("🎁 gift {i}")})).await;
    }
    browser.until("return document.querySelectorAll('#log li.broadcast').length >= 5").await;
    assert_eq!(demo_seqs(&browser).await, [1, 2, 3, 4, 5], "each once, in order");
    let metrics = server.admin.metrics().await;
    assert_eq!(common::metric(&metrics, "bullhorn_deliveries_total{transport=\"webtransport\"}"), Some(5.0));
    assert_eq!(browser.eval("return document.getElementById('transport').dataset.fallback ?? null").await, Value::Null);
    browser.screenshot("demo-webtransport").await;
    // Closing the page's connection ends the session on the server.
    browser.client.goto("about:blank").await.unwrap();
    for _ in 0..200 {
        if transport_metrics(&server).await[1] == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(transport_metrics(&server).await[1], Some(0.0));
    browser.close().await;
    server.finish().await;
}

/// Contract §11: a page on WebTransport whose node is killed and started
/// again on the same addresses and data dir shows a new broadcast within
/// 15 s, still over WebTransport. The new process answers the page's next
/// packet (its ping after 10 s of quiet) with a stateless reset, which the
/// browser believes because the reset key is kept in the data dir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webtransport_page_shows_a_new_broadcast_within_15_s_of_a_kill_9_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, browser) = demo_page_on_the_binary(dir.path()).await;
    assert_eq!(browser.eval("return document.getElementById('transport').textContent").await, "webtransport");
    first.admin.broadcast("gifts", json!({"text": "before"})).await;
    browser.until("return document.querySelectorAll('#log li.broadcast').length === 1").await;
    // Let the page's acknowledgements go out: a packet sent while no process
    // holds the port draws an ICMP error that ends the session by itself,
    // which is not the case under test (a quiet page and a quick restart).
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (viewer, quic) = (first.viewer.to_string(), first.quic.to_string());
    first.signal(9);
    first.wait().await;
    let second = ChildServer::start(dir.path(), &["--viewer-addr", &viewer, "--quic-addr", &quic]).await;
    let restarted = tokio::time::Instant::now();
    let admin = second.admin.clone();
    // Broadcast until the page shows one: one accepted before the page is
    // back reaches it only through the resume window.
    let sender = tokio::spawn(async move {
        loop {
            admin.broadcast("gifts", json!({"text": "after"})).await;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    browser.until("return document.querySelector('#log li.broadcast').dataset.text === 'after'").await;
    let took = restarted.elapsed();
    sender.abort();
    eprintln!("the page showed a new broadcast {took:?} after the restart");
    browser.screenshot("webtransport-after-restart").await;
    assert!(took <= Duration::from_secs(15), "the page showed a new broadcast {took:?} after the restart");
    assert_eq!(browser.eval("return document.getElementById('transport').textContent").await, "webtransport");
    assert_eq!(browser.eval("return document.getElementById('transport').dataset.fallback ?? null").await, Value::Null);
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_udp_port_closed_or_silent_the_page_falls_back_to_websocket() {
    // A UDP port nothing listens on: the page is told to reach QUIC there.
    let closed_port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = TestServer::start_with(ServeArgs { quic_public_port: Some(closed_port), ..Default::default() }).await;
    server.admin.create_room("gifts").await;
    let browser = Browser::start().await;
    let page = format!("http://{}/?room=gifts", server.viewer);
    browser.client.goto(&page).await.unwrap();
    browser.until("return document.getElementById('state').textContent === 'open'").await;
    assert_eq!(browser.eval("return document.getElementById('transport').textContent").await, "websocket");
    let reason = browser.eval("return document.getElementById('transport').dataset.fallback ?? null").await;
    assert!(reason.is_string(), "the page reported the fallback: {reason}");
    assert_eq!(transport_metrics(&server).await, [Some(1.0), Some(0.0), Some(0.0)]);
    server.admin.broadcast("gifts", json!({"text": "over websocket"})).await;
    browser.until("return document.querySelectorAll('#log li.broadcast').length === 1").await;
    // The choice holds for the browser session: a reload goes straight to WebSocket.
    browser.client.goto(&page).await.unwrap();
    browser.until("return document.getElementById('state').textContent === 'open'").await;
    assert_eq!(browser.eval("return document.getElementById('transport').textContent").await, "websocket");
    assert_eq!(
        browser.eval("return document.getElementById('transport').dataset.fallback ?? null").await,
        Value::Null,
        "no second WebTransport attempt"
    );
    // A port that swallows packets: no error ever comes, so the timeout decides.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    browser
        .eval_with(
            "window.fallbacks = []; window.sdk = null; \
             import('/sdk/bullhorn.js').then(({ connect }) => { window.sdk = connect({ app: 'demo', rooms: ['gifts'], \
               webtransportUrl: 'https://127.0.0.1:' + arguments[0], certificateHash: arguments[1], \
               webtransportTimeoutMs: 1000, onFallback: (f) => fallbacks.push(f.reason) }); }); \
             return true",
            vec![json!(silent.local_addr().unwrap().port()), json!(server.fingerprint)],
        )
        .await;
    browser.until("return sdk !== null && sdk.state === 'open'").await;
    assert_eq!(browser.eval("return [sdk.transport, fallbacks]").await, json!(["websocket", ["no answer in time"]]));
    browser.close().await;
    server.finish().await;
}

/// Chromium offers `permessage-deflate` on every WebSocket: it is negotiated
/// (the page sees the extension), large broadcasts come compressed (counted
/// once each) and the page reads the same JSON as a plain client, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_negotiates_compression_and_reads_the_same_json() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let browser = Browser::start().await;
    browser.client.goto(&format!("http://{}/?room=gifts", server.viewer)).await.unwrap();
    browser
        .eval_with(
            "window.texts = []; window.ws = new WebSocket('ws://' + arguments[0] + '/v1/apps/demo/ws?room=gifts'); \
             ws.onmessage = (e) => texts.push(e.data); return true",
            vec![json!(server.viewer.to_string())],
        )
        .await;
    browser.until("return texts.length === 1").await; // the welcome
    assert_eq!(
        browser.eval("return ws.extensions").await,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    );
    let mut plain = server.subscribe(&["gifts"]).await;
    plain.next_json().await;
    let large = json!({"gift": "rocket", "from": "Ana", "note": "🚀 ".repeat(600)});
    for data in [large.clone(), json!({"n": 2}), large] {
        server.admin.broadcast("gifts", data).await;
    }
    browser.until("return texts.length === 4").await;
    let texts = browser.eval("return texts.slice(1)").await;
    for text in texts.as_array().unwrap() {
        let page: Value = serde_json::from_str(text.as_str().unwrap()).unwrap();
        assert_eq!(page, plain.next_json().await, "the same JSON, in order");
    }
    let metrics = server.admin.metrics().await;
    assert_eq!(common::metric(&metrics, "bullhorn_compressed_broadcasts_total"), Some(2.0), "the two large ones");
    browser.close().await;
    server.finish().await;
}

/// Chromium's own `EventSource`, through a proxy the test cuts: it receives
/// broadcasts, and after the cut it reconnects by itself with the
/// `Last-Event-ID` the server's ids gave it (the URL names no seq), getting
/// exactly what it missed: none lost, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventsource_resumes_a_cut_stream_with_last_event_id() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let blip = Blip::start(server.viewer).await;
    let browser = Browser::start().await;
    browser.client.goto(&format!("http://{}/?room=none", server.viewer)).await.unwrap();
    browser
        .eval_with(
            "window.got = []; window.welcomes = 0; window.ids = []; \
             window.es = new EventSource('http://' + arguments[0] + '/v1/apps/demo/sse?room=gifts'); \
             es.addEventListener('welcome', () => welcomes++); \
             es.addEventListener('broadcast', (e) => { got.push(JSON.parse(e.data).seq); ids.push(e.lastEventId); }); \
             return true",
            vec![json!(blip.addr.to_string())],
        )
        .await;
    browser.until("return welcomes === 1").await;
    server.admin.broadcast("gifts", json!(1)).await;
    browser.until("return got.length === 1").await;
    blip.cut_and_close();
    browser.until("return es.readyState === EventSource.CONNECTING").await;
    for i in 2..=4 {
        server.admin.broadcast("gifts", json!(i)).await;
    }
    blip.reopen();
    browser.until("return welcomes === 2").await;
    server.admin.broadcast("gifts", json!(5)).await;
    browser.until("return got.length >= 5").await;
    assert_eq!(browser.eval("return got").await, json!([1, 2, 3, 4, 5]), "resumed: none missing, none twice");
    assert_eq!(browser.eval("return ids[4]").await, "gifts@5");
    browser.close().await;
    server.finish().await;
}

/// A proxy that passes plain HTTP and refuses WebSocket upgrades, as some
/// corporate proxies and in-app web views do.
async fn no_websocket_proxy(upstream: std::net::SocketAddr) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match client.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                if String::from_utf8_lossy(&head).to_ascii_lowercase().contains("upgrade: websocket") {
                    return; // dropped
                }
                let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else { return };
                if server.write_all(&head).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    addr
}

/// With UDP blocked and WebSocket refused on the way, the SDK falls back
/// WebTransport → WebSocket → SSE, receives there, and a reload of the page
/// goes straight to SSE for the rest of the browser session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_udp_and_websocket_blocked_the_sdk_falls_back_to_sse() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let proxy = no_websocket_proxy(server.viewer).await;
    let closed_port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let browser = Browser::start().await;
    let page = format!("http://{}/?room=none", server.viewer);
    let connect = "window.fallbacks = []; window.got = []; window.sdk = null; \
         import('/sdk/bullhorn.js').then(({ connect }) => { window.sdk = connect({ app: 'demo', rooms: ['gifts'], \
           url: 'ws://' + arguments[0], webtransportUrl: 'https://127.0.0.1:' + arguments[1], \
           certificateHash: arguments[2], webtransportTimeoutMs: 1000, \
           onMessage: (m) => got.push(m.data), onFallback: (f) => fallbacks.push(f.transport) }); }); \
         return true";
    let args = vec![json!(proxy.to_string()), json!(closed_port), json!(server.fingerprint)];
    browser.client.goto(&page).await.unwrap();
    browser.eval_with(connect, args.clone()).await;
    browser.until("return sdk !== null && sdk.state === 'open'").await;
    assert_eq!(browser.eval("return [sdk.transport, fallbacks]").await, json!(["sse", ["websocket", "sse"]]));
    let metrics = server.admin.metrics().await;
    assert_eq!(common::metric(&metrics, r#"bullhorn_connections{transport="sse"}"#), Some(1.0), "{metrics}");
    server.admin.broadcast("gifts", json!({"text": "over sse"})).await;
    browser.until("return got.length === 1").await;
    assert_eq!(browser.eval("return got").await, json!([{"text": "over sse"}]));
    // The choice holds for the browser session.
    browser.client.goto(&page).await.unwrap();
    browser.eval_with(connect, args).await;
    browser.until("return sdk !== null && sdk.state === 'open'").await;
    assert_eq!(browser.eval("return [sdk.transport, fallbacks]").await, json!(["sse", []]), "no second attempt");
    browser.close().await;
    server.finish().await;
}

/// Pusher's own browser client (npm `pusher-js`'s `dist/web/pusher.min.js`,
/// unmodified, installed by the test command) in Chromium: it subscribes to
/// a room, is refused an unknown room and a private channel, gets events from
/// the native API and from Pusher's HTTP API (its official server library)
/// in order and once, pings when silent, and after a drain reconnects and
/// subscribes again on the next node at the same address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusher_js_in_chromium_gets_both_apis_events_pings_and_comes_back_after_a_drain() {
    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";
    let file = format!(
        "[[app]]\nid = \"demo\"\nadmin_key = \"{}\"\n[app.pusher]\napp_id = \"1234567\"\nkey = \"{KEY}\"\nsecret = \"{SECRET}\"\n",
        common::KEY
    );
    let args = ServeArgs {
        broadcasts_per_room: Some(0),
        drain_window_ms: Some(1_000),
        drain_timeout_ms: Some(5_000),
        ..Default::default()
    };
    let mut server = TestServer::start_with_file(args.clone(), &file).await;
    server.admin.create_room("gifts").await;
    let library = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/pusher/node_modules/pusher-js/dist/web/pusher.min.js"
    ))
    .expect("pusher-js (scripts/test installs it into tests/pusher/node_modules)");
    let browser = Browser::start().await;
    browser.client.goto(&format!("http://{}/?room=none", server.viewer)).await.unwrap();
    assert_eq!(
        browser.eval_with("(0, eval)(arguments[0]); return typeof Pusher", vec![json!(library)]).await,
        "function"
    );
    // A made-up authorization: the private subscribe reaches the server, which must refuse it itself.
    browser
        .eval_with(
            "window.got = []; window.refused = []; window.subscribed = 0; window.pongs = 0; window.codes = []; \
             window.pusher = new Pusher(arguments[0], {cluster: 'mt1', wsHost: arguments[1], wsPort: arguments[2], \
               forceTLS: false, enabledTransports: ['ws'], disableStats: true, activityTimeout: 300, \
               channelAuthorization: {customHandler: (params, callback) => callback(null, {auth: arguments[0] + ':0'})}}); \
             pusher.connection.bind('message', (m) => { if (m.event === 'pusher:pong') pongs++; }); \
             pusher.connection.bind('error', (e) => { if (e.data && e.data.code) codes.push(e.data.code); }); \
             const gifts = pusher.subscribe('gifts'); \
             gifts.bind('pusher:subscription_succeeded', () => { subscribed++; }); \
             gifts.bind_global((event, data) => { if (!event.startsWith('pusher:')) got.push([event, data]); }); \
             for (const name of ['no-such-room', 'private-vip']) \
               pusher.subscribe(name).bind('pusher:subscription_error', (e) => refused.push([name, e.status])); \
             return true",
            vec![json!(KEY), json!(server.viewer.ip().to_string()), json!(server.viewer.port())],
        )
        .await;
    browser.until("return subscribed === 1 && refused.length === 2").await;
    let mut refused = browser.eval("return refused").await.as_array().unwrap().clone();
    refused.sort_by_key(|r| r.to_string());
    assert_eq!(refused, [json!(["no-such-room", 404]), json!(["private-vip", 403])]);
    browser.until("return pongs >= 1").await;
    let body = json!({"data": {"n": 1}, "event": "gift"}).to_string();
    let (status, _) = server.admin.post("/v1/apps/demo/rooms/gifts/broadcast", &body).await;
    assert_eq!(status, 202);
    let credentials = common::pusher::Credentials { app_id: "1234567", key: KEY, secret: SECRET };
    common::pusher::server_library(&server, &credentials, &["trigger", "gifts", "combo", "text, not JSON"]).await;
    let (status, _) = server.admin.post("/v1/apps/demo/rooms/gifts/broadcast", r#"{"data":3}"#).await;
    assert_eq!(status, 202);
    browser.until("return got.length >= 3").await;
    assert_eq!(
        browser.eval("return got").await,
        json!([["gift", {"n": 1}], ["combo", "text, not JSON"], ["broadcast", 3]]),
        "in order, once each, each with its event name"
    );
    // The drain: the next node takes the address once this one lets go of it.
    let viewer = server.viewer;
    server.begin_shutdown();
    let mut next = None;
    for _ in 0..500 {
        if std::net::TcpListener::bind(viewer).is_ok() {
            next =
                Some(TestServer::start_with_file(ServeArgs { viewer_addr: Some(viewer), ..args.clone() }, &file).await);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let next = next.expect("the drained node let go of its address");
    next.admin.create_room("gifts").await;
    browser.until("return subscribed === 2").await;
    // pusher-js reports the code twice: from `pusher:error`, then from the close frame.
    let codes = browser.eval("return codes").await;
    assert!(
        codes.as_array().is_some_and(|c| !c.is_empty() && c.iter().all(|c| c == 4200)),
        "reconnect at once: {codes}"
    );
    let (status, _) = next.admin.post("/v1/apps/demo/rooms/gifts/broadcast", r#"{"data":"back","event":"gift"}"#).await;
    assert_eq!(status, 202);
    browser.until("return got.length >= 4").await;
    assert_eq!(browser.eval("return got[3]").await, json!(["gift", "back"]));
    browser.close().await;
    server.finish().await;
    next.finish().await;
}
