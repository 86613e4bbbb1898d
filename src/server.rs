//! Assembling a node: bind the listeners, build the shared state, serve until
//! a shutdown signal, then drain.
//!
//! `bind` takes the configuration and does everything that can fail at start
//! (data dir, keys, registry, sockets), so `main` reports one clear error.
//! Listeners may be bound to port 0; `viewer_addr`/`admin_addr` tell the truth.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::net::{TcpListener, TcpSocket};

use crate::broker::Broker;
use crate::cluster::Cluster;
use crate::config::{Config, DEFAULT_MAX_ROOMS, DEMO_APP};
use crate::dataplane::close_stage::CLOSE_DEADLINE;
use crate::dataplane::{Dataplane, ShardContext};
use crate::metrics::{self, Metrics};
use crate::protocol::close::CloseReason;
use crate::registry::keys::{self, KeySource};
use crate::registry::store::Store;
use crate::registry::{AppSpec, Registry};
use crate::room::events::Transition;
use crate::room::{LaneDriver, Room, RoomConfig};
use crate::shutdown::Drain;
use crate::state::{Planes, Settings, Shared};
use crate::tls::CertStore;
use crate::tls::listener::TlsListener;
use crate::transport::capacity::Connections;
use crate::transport::quic::reset::ResetSecret;
use crate::{admin, tls, transport};

/// Pending connections the kernel may hold per listener (reconnect storms).
const LISTEN_BACKLOG: u32 = 4096;
/// Open files kept for everything that is not a subscriber.
const RESERVED_FILES: u64 = 64;

pub struct Server {
    shared: Arc<Shared>,
    viewer: TcpListener,
    admin: TcpListener,
    quic: transport::quic::Listener,
    viewer_tls: Option<Arc<rustls::ServerConfig>>,
    admin_tls: Option<Arc<rustls::ServerConfig>>,
    /// Every certificate loaded from files, reloaded on SIGHUP.
    cert_stores: Vec<Arc<CertStore>>,
    /// Registered at bind: a SIGHUP before `run` must not end the process.
    sighup: tokio::signal::unix::Signal,
    drain_timeout: Duration,
}

impl Server {
    /// Prepares a node: nothing is served until [`Server::run`].
    pub async fn bind(config: Config) -> anyhow::Result<Server> {
        let store = Store::open(&config.data_dir)
            .with_context(|| format!("cannot create the data dir {}", config.data_dir.display()))?;
        let specs = app_specs(&config)?;

        let prometheus = metrics::install_recorder();
        let metrics = Metrics::new();
        let cluster = match &config.cluster_nats {
            Some(urls) => Some(Arc::new(Cluster::connect(urls, &metrics).await?)),
            None => None,
        };
        // In a cluster the rooms live in NATS; the data dir keeps only keys and certificates.
        let store = cluster.is_none().then_some(store);
        let shards = config.fanout.shards.unwrap_or_else(worker_threads);
        let max_connections = config.websocket.max_connections.unwrap_or_else(default_max_connections);
        let shard_context = ShardContext {
            idle_timeout: config.websocket.idle_timeout,
            deliveries: metrics.ws_deliveries.clone(),
            sse_deliveries: metrics.sse_deliveries.clone(),
            pusher_deliveries: metrics.pusher_deliveries.clone(),
            drain_window: config.drain.window,
            // The node waits `timeout` for its connections to go: Pusher
            // closes are spread over it but the last one's flush deadline
            // (and over at most the window).
            pusher_close_spread: config.drain.window.min(config.drain.timeout.saturating_sub(CLOSE_DEADLINE)),
            draining: Default::default(),
            pusher_refused: metrics.pusher_subscriptions_refused.clone(),
            expired: metrics.dropped_expired.clone(),
        };
        let dataplane = Dataplane::start(shards, config.fanout.pin_shards, max_connections, shard_context)
            .context("cannot start the shard threads")?;
        let registry = Registry::load(
            store,
            specs,
            RoomConfig {
                shards,
                resume: config.fanout.resume,
                broadcasts_per_sec: config.limits.broadcasts_per_room,
                lanes: LaneDriver::Shards(dataplane.clone()),
                compress_min_bytes: config.websocket.compression.then_some(config.websocket.compress_min_bytes),
            },
            metrics.clone(),
        )
        .context("cannot load the room registry")?;

        let viewer = listen(config.listen.viewer)
            .with_context(|| format!("cannot listen on {} (viewer)", config.listen.viewer))?;
        let admin =
            listen(config.listen.admin).with_context(|| format!("cannot listen on {} (admin)", config.listen.admin))?;
        let identity = transport::quic::tls::Identity::load_or_generate(config.listen.tls.as_ref(), &config.data_dir)?;
        let reset_secret = reset_secret(&config.data_dir, cluster.as_deref()).await?;
        let quic = transport::quic::Listener::bind(
            config.listen.quic,
            shards,
            identity.server_config()?,
            &reset_secret,
            config.websocket.idle_timeout,
        )?;
        // wss shares the QUIC certificate (one host name for viewers); the admin listener has its own.
        let viewer_tls = match config.listen.viewer_tls {
            true => Some(tls::tcp_server_config(identity.store.clone())?),
            false => None,
        };
        let admin_store = match &config.listen.admin_tls {
            Some(files) => {
                Some(CertStore::from_files("admin", files.clone()).context("--admin-tls-cert/--admin-tls-key")?)
            }
            None => None,
        };
        let admin_tls = admin_store.clone().map(tls::tcp_server_config).transpose()?;
        let cert_stores = [Some(identity.store), admin_store].into_iter().flatten().collect();
        let sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot listen for SIGHUP (certificate reloads)")?;

        let settings = Settings {
            queue: config.fanout.queue,
            heartbeat: config.websocket.heartbeat,
            idle_timeout: config.websocket.idle_timeout,
            ws_compression: config.websocket.compression,
            max_payload_bytes: config.admin.max_payload_bytes,
            limits: config.limits.clone(),
            webtransport_port: match config.listen.quic_public_port {
                Some(port) => port,
                None => quic.local_addr().port(),
            },
            dev_cert_sha256: identity.dev_fingerprint.clone(),
        };
        let gauges = [
            metrics.ws_connections.clone(),
            metrics.quic_connections.clone(),
            metrics.webtransport_connections.clone(),
            metrics.sse_connections.clone(),
            metrics.pusher_connections.clone(),
        ];
        let shared = Arc::new(Shared::new(
            Arc::new(registry),
            metrics,
            Drain::new(config.drain.window),
            Connections::new(max_connections, config.limits.max_connections_per_ip, gauges),
            settings,
            prometheus,
            Planes { broker: cluster.map_or(Broker::Local, Broker::Nats), dataplane },
        ));
        tracing::info!(shards, max_connections, "node ready");
        Ok(Server {
            shared,
            viewer,
            admin,
            quic,
            viewer_tls,
            admin_tls,
            cert_stores,
            sighup,
            drain_timeout: config.drain.timeout,
        })
    }

    pub fn viewer_addr(&self) -> SocketAddr {
        self.viewer.local_addr().expect("bound listener")
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().expect("bound listener")
    }

    pub fn quic_addr(&self) -> SocketAddr {
        self.quic.local_addr()
    }

    /// `https` when the viewer listener speaks TLS.
    pub fn viewer_scheme(&self) -> &'static str {
        if self.viewer_tls.is_some() { "https" } else { "http" }
    }

    /// `https` when the admin listener speaks TLS.
    pub fn admin_scheme(&self) -> &'static str {
        if self.admin_tls.is_some() { "https" } else { "http" }
    }

    /// Hex SHA-256 of the self-signed development certificate, when there is one.
    pub fn dev_cert_fingerprint(&self) -> Option<&str> {
        self.shared.settings.dev_cert_sha256.as_deref()
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Serves until `shutdown` resolves, then drains and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let Server { shared, viewer, admin, quic, viewer_tls, admin_tls, cert_stores, sighup, drain_timeout, .. } =
            self;
        shared.dataplane.serve_quic(quic.into_setups(&shared));
        let (admin_stop_tx, admin_stop) = tokio::sync::oneshot::channel::<()>();
        let admin_stopped = async move {
            let _ = admin_stop.await;
        };
        // Tencent-style calls authenticate by UserSig, not by the bearer key.
        let admin_router = admin::router(shared.clone(), crate::tencent::routes().merge(crate::pusher::api::routes()));
        let admin_task = match admin_tls {
            None => tokio::spawn(axum::serve(admin, admin_router).with_graceful_shutdown(admin_stopped).into_future()),
            Some(config) => {
                let timeout = shared.settings.limits.handshake_timeout;
                let listener = TlsListener::new(admin, config, timeout, shared.metrics.clone())?;
                tokio::spawn(axum::serve(listener, admin_router).with_graceful_shutdown(admin_stopped).into_future())
            }
        };
        let viewer_task = tokio::spawn(transport::accept::serve(
            viewer,
            shared.clone(),
            transport::viewer::router(shared.clone()),
            viewer_tls.map(tokio_rustls::TlsAcceptor::from),
        ));
        let callback_workers: Vec<_> =
            shared.registry.apps().filter_map(|app| app.callbacks()?.spawn_worker()).collect();
        let reloads = tokio::spawn(tls::reload_on_sighup(sighup, cert_stores, shared.metrics.clone()));
        let cluster_tasks = shared.broker.spawn(&shared.registry, &shared.metrics);
        let upkeep = tokio::spawn({
            let prometheus = shared.prometheus.clone();
            async move {
                let mut every = tokio::time::interval(Duration::from_secs(5));
                loop {
                    every.tick().await;
                    prometheus.run_upkeep();
                    release_free_memory();
                }
            }
        });

        let heartbeat = tokio::spawn({
            let shared = shared.clone();
            async move {
                let period = shared.settings.heartbeat;
                let mut every = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                loop {
                    every.tick().await;
                    shared.registry.heartbeat();
                    shared.dataplane.heartbeat();
                }
            }
        });

        // Occupancy to members (and, with it, room events) looks at every room's count each tick.
        let room_ticks = tokio::spawn({
            let shared = shared.clone();
            async move {
                let mut every = tokio::time::interval(crate::room::occupancy::TICK);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    let now = std::time::Instant::now();
                    let mut owed = Vec::new();
                    for room in shared.registry.rooms() {
                        let online = shared.online(&room);
                        room.tick_occupancy(now, online);
                        owed.extend(room_event_owed(&shared, &room, now, online).await);
                    }
                    if owed.is_empty() {
                        continue;
                    }
                    // The registry keeps each room's last event, so a restart does not tell it
                    // twice: written before the events are queued, so that a backend that got
                    // one never gets it again from a node killed right after.
                    if let Err(error) = shared.registry.persist().await {
                        tracing::warn!(%error, "the registry could not be written after a room event");
                    }
                    for event in owed {
                        event.tell();
                    }
                }
            }
        });

        shutdown.await;
        heartbeat.abort();
        room_ticks.abort();
        tracing::info!(connections = shared.connections.open(), "draining");
        println!("bullhorn: draining {} connections", shared.connections.open());
        shared.drain.begin();
        shared.dataplane.drain_began();
        shared.registry.close_all({
            let delay = shared.drain.reconnect_delays();
            Arc::new(move || CloseReason::ServerDraining { reconnect_after_ms: delay() })
        });
        if tokio::time::timeout(drain_timeout, shared.connections.wait_idle()).await.is_err() {
            tracing::warn!(left = shared.connections.open(), "drain timed out; closing the rest");
        }
        // What a drain left on the shards (the timed out) is dropped with them.
        shared.dataplane.stop();
        if let Err(error) = shared.registry.persist().await {
            tracing::error!(%error, "could not write the room registry on shutdown");
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), viewer_task).await;
        let _ = admin_stop_tx.send(());
        let _ = tokio::time::timeout(Duration::from_secs(1), admin_task).await;
        upkeep.abort();
        reloads.abort();
        callback_workers.iter().for_each(|task| task.abort());
        cluster_tasks.iter().for_each(|task| task.abort());
        println!("bullhorn: stopped");
        Ok(())
    }
}

/// The QUIC reset secret: the data dir's (made on a first start), or in a
/// cluster the one every node agreed on, then kept in the data dir too.
async fn reset_secret(data_dir: &std::path::Path, cluster: Option<&Cluster>) -> anyhow::Result<ResetSecret> {
    let local = ResetSecret::load_or_create(data_dir)?;
    let Some(cluster) = cluster else { return Ok(local) };
    let agreed = cluster.agree_reset_secret(&local).await?;
    if agreed != local {
        agreed.store(data_dir)?;
    }
    Ok(agreed)
}

/// Configured apps plus the embedded `demo` app, with its key resolved.
fn app_specs(config: &Config) -> anyhow::Result<Vec<AppSpec>> {
    let mut specs: Vec<AppSpec> = config
        .apps
        .iter()
        .map(|app| AppSpec {
            id: app.id.clone(),
            admin_key: app.admin_key.clone(),
            max_rooms: app.max_rooms,
            requests_per_sec: config.limits.admin_requests_per_app,
            tencent: app.tencent.clone(),
            pusher: app.pusher.clone(),
            callbacks: app.callbacks.clone(),
        })
        .collect();
    if specs.iter().any(|app| app.id == DEMO_APP) {
        return Ok(specs);
    }
    let (key, source) = keys::demo_key(&config.data_dir, config.demo_admin_key.clone())
        .context("cannot read or create the demo admin key")?;
    match source {
        KeySource::Environment => {
            println!("bullhorn: demo app admin key from {}", keys::DEMO_KEY_ENV)
        }
        KeySource::Generated(path) => {
            if !config.listen.admin.ip().is_loopback() {
                bail!(
                    "refusing to serve the admin API on {} with a generated demo key: set {} or configure apps in a config file",
                    config.listen.admin,
                    keys::DEMO_KEY_ENV
                );
            }
            println!("bullhorn: demo app admin key stored in {}", path.display());
        }
    }
    specs.push(AppSpec {
        id: DEMO_APP.into(),
        admin_key: key,
        max_rooms: DEFAULT_MAX_ROOMS,
        requests_per_sec: config.limits.admin_requests_per_app,
        tencent: None,
        pusher: None,
        callbacks: None,
    });
    Ok(specs)
}

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The open-file limit, less a reserve for listeners, the registry and logs.
fn default_max_connections() -> usize {
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((1024, 1024));
    soft.saturating_sub(RESERVED_FILES).max(1) as usize
}

/// Hands memory freed by finished handshakes back to the OS. glibc keeps
/// freed chunks resident inside its arenas; after a connection burst that is
/// a good part of the RSS beyond what connections hold (docs/benchmarks.md §3).
/// `malloc_trim` walks the free lists, so it runs on the upkeep interval.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages of glibc's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A room event this node must tell, once the registry holds it.
struct OwedEvent {
    callbacks: Arc<crate::callbacks::Callbacks>,
    transition: Transition,
    room: Arc<str>,
    online: usize,
}

impl OwedEvent {
    fn tell(self) {
        self.callbacks.room_event(self.transition, &self.room, self.online);
    }
}

/// Looks at `room` for its events (`room::events`) when its app asked for
/// any: the one owed, if this node is the one to tell it (in a cluster, the
/// one that moved the room's shared state).
async fn room_event_owed(shared: &Shared, room: &Room, now: std::time::Instant, online: usize) -> Option<OwedEvent> {
    let callbacks = shared.registry.app(room.app()).and_then(|app| app.callbacks()).filter(|c| c.wants_events())?;
    let (transition, before) = room.look_for_events(now, online, callbacks.vacated_after())?;
    if !shared.broker.claim_room_event(room, transition, before).await {
        return None;
    }
    // An occupied room had at least one member, even one already gone by this look.
    let online = if transition == Transition::Occupied { online.max(1) } else { online };
    Some(OwedEvent { callbacks: callbacks.clone(), transition, room: room.id().clone(), online })
}
