//! Per-app HTTP callbacks around a broadcast, as Tencent Cloud IM's
//! third-party callbacks work, so moderation and mirroring servers written
//! for it keep working (docs/migration.md).
//!
//! * before-broadcast: awaited before the broadcast gets its seq; the answer
//!   allows it, rejects it (the admin sees why), drops it silently, or
//!   replaces its `data`. A callback that fails or times out lets the
//!   broadcast through (fail-open, Tencent's behaviour) or refuses it
//!   (fail-closed), as configured; either way it is counted.
//! * after-broadcast: queued (bounded) and sent by one task per app, in
//!   order, retried with backoff until the server takes it; what does not fit
//!   the queue is counted, never silently lost.
//! * room events (`room.occupied`, `room.vacated`, as `events` asks): decided
//!   by the room (`room::events`), then sent by the same task, signed and
//!   retried the same way, with the event's name as `CallbackCommand`, from a
//!   queue of their own that never drops (a dropped one would break their
//!   alternation; they are few: each room's are a debounce apart).
//!
//! [`wire`] has the request bodies and the reading of answers.

pub mod wire;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Counter, Gauge, counter, gauge};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::room::events::Transition;
use wire::{Message, Verdict};

/// One app's callback settings (`[app.callbacks]`).
#[derive(Clone, PartialEq, Eq)]
pub struct CallbackConfig {
    /// `http://` or `https://`.
    pub url: String,
    pub timeout: Duration,
    /// Refuse broadcasts while the before-broadcast callback fails.
    pub fail_closed: bool,
    /// Signs requests as Tencent does: `Sign = sha256(token + RequestTime)`.
    pub token: Option<String>,
    pub before_broadcast: bool,
    pub after_broadcast: bool,
    /// After-broadcast events (and room events) held while the server is slow or down.
    pub after_queue: usize,
    /// Which room events to send.
    pub events: RoomEvents,
    /// How long a room stays empty before `room.vacated`.
    pub vacated_after: Duration,
}

/// The room events an app asked for (`events` in `[app.callbacks]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoomEvents {
    pub occupied: bool,
    pub vacated: bool,
}

impl RoomEvents {
    pub fn any(self) -> bool {
        self.occupied || self.vacated
    }

    fn wants(self, transition: Transition) -> bool {
        match transition {
            Transition::Occupied => self.occupied,
            Transition::Vacated => self.vacated,
        }
    }
}

/// What the sending task posts: the `CallbackCommand`, the metrics' kind and the body.
#[derive(Debug)]
struct Queued {
    command: &'static str,
    kind: Kind,
    body: Value,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    After,
    Event,
}

impl std::fmt::Debug for CallbackConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("CallbackConfig")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .field("fail_closed", &self.fail_closed)
            .field("signed", &self.token.is_some())
            .field("before_broadcast", &self.before_broadcast)
            .field("after_broadcast", &self.after_broadcast)
            .field("after_queue", &self.after_queue)
            .field("events", &self.events)
            .field("vacated_after", &self.vacated_after)
            .finish()
    }
}

/// The longest wait between after-broadcast retries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Why a before-broadcast callback gave no verdict (fail-closed only).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the before-broadcast callback failed: {0}")]
pub struct CallbackFailed(pub String);

/// One app's callback metrics, registered once.
struct CallbackMetrics {
    before_ok: Counter,
    /// `result="failed_open"` or `"failed_closed"`, as the app is configured.
    before_failed: Counter,
    after_ok: Counter,
    after_retried: Counter,
    event_ok: Counter,
    event_retried: Counter,
    overflow: Counter,
    queue_depth: Gauge,
}

impl CallbackMetrics {
    fn new(app: &str, fail_closed: bool) -> CallbackMetrics {
        let calls = |kind: &'static str, result: &'static str| counter!(crate::metrics::CALLBACKS, "app" => app.to_owned(), "kind" => kind, "result" => result);
        let metrics = CallbackMetrics {
            before_ok: calls("before", "ok"),
            before_failed: calls("before", if fail_closed { "failed_closed" } else { "failed_open" }),
            after_ok: calls("after", "ok"),
            after_retried: calls("after", "retried"),
            event_ok: calls("event", "ok"),
            event_retried: calls("event", "retried"),
            overflow: counter!(crate::metrics::CALLBACK_OVERFLOW, "app" => app.to_owned()),
            queue_depth: gauge!(crate::metrics::CALLBACK_QUEUE, "app" => app.to_owned()),
        };
        // Exported from the start, so dashboards and alerts see zeros rather than nothing.
        metrics.before_ok.increment(0);
        metrics.after_ok.increment(0);
        metrics.event_ok.increment(0);
        metrics.overflow.increment(0);
        metrics.queue_depth.set(0.0);
        metrics
    }
}

pub struct Callbacks {
    app: Arc<str>,
    /// `SdkAppid` in the query: the app's Tencent SDKAppID, or its id.
    sdkappid: String,
    config: CallbackConfig,
    http: reqwest::Client,
    after_send: mpsc::Sender<Queued>,
    /// Room events: never dropped (a dropped one would break their alternation), and few
    /// (each room's are at least a debounce apart), so unbounded.
    event_send: mpsc::UnboundedSender<Queued>,
    event_receive: Mutex<Option<mpsc::UnboundedReceiver<Queued>>>,
    /// Taken by the worker when the server starts.
    after_receive: Mutex<Option<mpsc::Receiver<Queued>>>,
    metrics: CallbackMetrics,
}

impl std::fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("Callbacks").field("app", &self.app).field("url", &self.config.url).finish_non_exhaustive()
    }
}

impl Callbacks {
    pub fn new(app: &str, sdkappid: Option<u64>, config: CallbackConfig) -> Callbacks {
        let (after_send, after_receive) = mpsc::channel(config.after_queue.max(1));
        let (event_send, event_receive) = mpsc::unbounded_channel();
        let http = reqwest::Client::builder().timeout(config.timeout).build().expect("a client with a timeout");
        Callbacks {
            metrics: CallbackMetrics::new(app, config.fail_closed),
            app: Arc::from(app),
            sdkappid: sdkappid.map_or_else(|| app.to_owned(), |id| id.to_string()),
            config,
            http,
            after_send,
            after_receive: Mutex::new(Some(after_receive)),
            event_send,
            event_receive: Mutex::new(Some(event_receive)),
        }
    }

    pub fn wants_before(&self) -> bool {
        self.config.before_broadcast
    }

    pub fn wants_after(&self) -> bool {
        self.config.after_broadcast
    }

    /// Asks the before-broadcast callback. On failure: `Allow` when
    /// fail-open, `Err` when fail-closed.
    pub async fn before(&self, message: &Message<'_>) -> Result<Verdict, CallbackFailed> {
        let answer = self.post(wire::BEFORE_COMMAND, &wire::before_body(message)).await;
        let verdict = answer.and_then(|bytes| wire::verdict(&bytes, message.data).map_err(|e| e.to_string()));
        match verdict {
            Ok(verdict) => {
                self.metrics.before_ok.increment(1);
                Ok(verdict)
            }
            Err(error) => {
                self.metrics.before_failed.increment(1);
                let result = if self.config.fail_closed { "failed_closed" } else { "failed_open" };
                tracing::warn!(app = %self.app, %error, result, "before-broadcast callback failed");
                if self.config.fail_closed { Err(CallbackFailed(error)) } else { Ok(Verdict::Allow) }
            }
        }
    }

    /// Queues an after-broadcast event; counts it if the queue is full.
    pub fn after(&self, body: Value) {
        self.queue(Queued { command: wire::AFTER_COMMAND, kind: Kind::After, body });
    }

    pub fn wants_events(&self) -> bool {
        self.config.events.any()
    }

    /// How long a room stays empty before `room.vacated`.
    pub fn vacated_after(&self) -> Duration {
        self.config.vacated_after
    }

    /// Queues room event `transition` of `room` (if the app asked for it).
    pub fn room_event(&self, transition: Transition, room: &str, online: usize) {
        if !self.config.events.wants(transition) {
            return;
        }
        let command = transition.event();
        let body = wire::room_event_body(command, &self.app, room, online, std::time::SystemTime::now());
        // Fails only once the worker is gone (the node is stopping).
        let _ = self.event_send.send(Queued { command, kind: Kind::Event, body });
    }

    fn queue(&self, queued: Queued) {
        if self.after_send.try_send(queued).is_err() {
            self.metrics.overflow.increment(1);
            tracing::warn!(app = %self.app, "callback queue full: event not queued");
        }
        self.record_depth();
    }

    /// Starts the task that sends after-broadcast and room events (once),
    /// each in its own order, room events first when both wait.
    pub fn spawn_worker(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let mut after = self.after_receive.lock().expect("callback receiver").take()?;
        let mut events = self.event_receive.lock().expect("event receiver").take()?;
        let this = self.clone();
        Some(tokio::spawn(async move {
            loop {
                let queued = tokio::select! {
                    biased;
                    Some(queued) = events.recv() => queued,
                    Some(queued) = after.recv() => queued,
                    else => return,
                };
                this.deliver(&queued).await;
                this.record_depth();
            }
        }))
    }

    /// Sends one event until the server takes it.
    async fn deliver(&self, queued: &Queued) {
        let (ok, retried) = match queued.kind {
            Kind::After => (&self.metrics.after_ok, &self.metrics.after_retried),
            Kind::Event => (&self.metrics.event_ok, &self.metrics.event_retried),
        };
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.post(queued.command, &queued.body).await {
                Ok(_) => {
                    ok.increment(1);
                    return;
                }
                Err(error) => {
                    retried.increment(1);
                    tracing::debug!(app = %self.app, %error, command = queued.command, "callback failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    fn record_depth(&self) {
        let depth = self.after_send.max_capacity() - self.after_send.capacity();
        self.metrics.queue_depth.set(depth as f64);
    }

    /// One request: Tencent's query, the JSON body; the answer's bytes when it is a 2xx.
    async fn post(&self, command: &str, body: &Value) -> Result<bytes::Bytes, String> {
        let mut query = vec![
            ("SdkAppid", self.sdkappid.clone()),
            ("CallbackCommand", command.to_owned()),
            ("contenttype", "json".to_owned()),
            ("ClientIP", String::new()),
            ("OptPlatform", "RESTAPI".to_owned()),
        ];
        if let Some(token) = &self.config.token {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            query.push(("RequestTime", now.to_string()));
            query.push(("Sign", wire::sign(token, now)));
        }
        let response = self
            .http
            .post(&self.config.url)
            .query(&query)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| if e.is_timeout() { "timed out".to_owned() } else { e.to_string() })?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        response.bytes().await.map_err(|e| e.to_string())
    }
}
