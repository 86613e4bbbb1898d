//! Configuration: one struct composed of module configs, merged from flags,
//! environment, config file and defaults, in that order of precedence.
//!
//! Flags and their `BULLHORN_*` twins arrive through clap (which already puts
//! a flag over its variable); the TOML file fills what they leave unset; the
//! defaults below fill the rest. Unknown file keys are rejected, and every
//! validation error names the field.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::callbacks::{CallbackConfig, RoomEvents};
use crate::cli::ServeArgs;
use crate::fanout::QueueLimits;
use crate::ids::is_valid_id;
use crate::registry::{PusherIdentity, TencentIdentity};
use crate::room::resume::ResumeLimits;
use crate::tls::certs::CertFiles;

/// Rooms per app unless the app says otherwise (contract §1).
pub const DEFAULT_MAX_ROOMS: usize = 5;
/// The embedded default app.
pub const DEMO_APP: &str = "demo";

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: ListenConfig,
    pub data_dir: PathBuf,
    pub cluster_nats: Option<String>,
    pub fanout: FanoutConfig,
    pub websocket: WebSocketConfig,
    pub admin: AdminConfig,
    pub drain: DrainConfig,
    pub limits: LimitsConfig,
    /// Apps from the config file; the `demo` app is added at start unless one
    /// of these is called `demo`.
    pub apps: Vec<AppConfig>,
    /// `BULLHORN_DEMO_ADMIN_KEY`; without it a key is generated and kept in the data dir.
    pub demo_admin_key: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ListenConfig {
    pub viewer: SocketAddr,
    pub quic: SocketAddr,
    /// Where browsers reach `quic`, if not at its own port.
    pub quic_public_port: Option<u16>,
    pub admin: SocketAddr,
    /// PEM files for QUIC and, with `viewer_tls`, the viewer listener;
    /// `None`: QUIC uses a self-signed development certificate.
    pub tls: Option<CertFiles>,
    /// The viewer listener speaks TLS (wss, https) with `tls`.
    pub viewer_tls: bool,
    /// PEM files for the admin listener; `None`: plain HTTP.
    pub admin_tls: Option<CertFiles>,
}

#[derive(Debug, Clone)]
pub struct FanoutConfig {
    /// Data-plane shard threads (and presence shards per room); `None` means one per core allowed.
    pub shards: Option<usize>,
    /// Pin each shard thread to a core.
    pub pin_shards: bool,
    pub queue: QueueLimits,
    pub resume: ResumeLimits,
}

#[derive(Debug, Clone)]
pub struct WebSocketConfig {
    pub heartbeat: Duration,
    pub idle_timeout: Duration,
    /// `permessage-deflate` offered by a client is accepted.
    pub compression: bool,
    /// Broadcasts at least this long are compressed (once each) for those clients.
    pub compress_min_bytes: usize,
    /// `None`: derived from the open-file limit at start.
    pub max_connections: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub max_payload_bytes: usize,
}

/// Flood limits (docs/security.md). A rate of 0 turns that limit off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Subscriber connections per client address (IPv6: per /64); 0: none.
    pub max_connections_per_ip: u32,
    /// A viewer connection must finish its handshake within this (slowloris).
    pub handshake_timeout: Duration,
    /// New connections (WebSocket and QUIC) taken per second; beyond it they wait.
    pub accept_rate: u32,
    /// Broadcasts each room accepts per second (429 `rate_limited` beyond).
    pub broadcasts_per_room: u32,
    /// Admin requests each app may make per second (429 `rate_limited` beyond).
    pub admin_requests_per_app: u32,
}

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig {
            max_connections_per_ip: 4096,
            handshake_timeout: Duration::from_secs(10),
            accept_rate: 10_000,
            broadcasts_per_room: 1000,
            admin_requests_per_app: 2000,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DrainConfig {
    pub window: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct AppConfig {
    pub id: String,
    pub admin_key: String,
    pub max_rooms: usize,
    /// Set when the app also answers Tencent-style calls (contract §8).
    pub tencent: Option<TencentIdentity>,
    /// Set when the app also speaks Pusher's protocol and HTTP API (`[app.pusher]`, contract §12).
    pub pusher: Option<PusherIdentity>,
    /// HTTP callbacks before and after each broadcast (`[app.callbacks]`).
    pub callbacks: Option<CallbackConfig>,
}

/// A configuration problem, naming the field it is about.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError { field: field.into(), message: message.into() }
}

/// The TOML file, as written by an operator.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    viewer_addr: Option<SocketAddr>,
    quic_addr: Option<SocketAddr>,
    quic_public_port: Option<u16>,
    admin_addr: Option<SocketAddr>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    viewer_tls: Option<bool>,
    admin_tls_cert: Option<PathBuf>,
    admin_tls_key: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    cluster_nats: Option<String>,
    #[serde(default)]
    fanout: FileFanout,
    #[serde(default)]
    websocket: FileWebSocket,
    #[serde(default)]
    admin: FileAdmin,
    #[serde(default)]
    drain: FileDrain,
    #[serde(default)]
    limits: FileLimits,
    #[serde(default, rename = "app")]
    apps: Vec<FileApp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFanout {
    shards: Option<usize>,
    pin_shards: Option<bool>,
    queue_max_messages: Option<usize>,
    queue_max_bytes: Option<usize>,
    slow_consumer_after_ms: Option<u64>,
    resume_messages: Option<usize>,
    resume_max_bytes: Option<usize>,
    resume_max_age_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWebSocket {
    heartbeat_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    /// "on" or "off".
    compression: Option<String>,
    compress_min_bytes: Option<usize>,
    max_connections: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAdmin {
    max_payload_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDrain {
    window_ms: Option<u64>,
    timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    max_connections_per_ip: Option<u32>,
    handshake_timeout_ms: Option<u64>,
    accept_rate: Option<u32>,
    broadcasts_per_room: Option<u32>,
    admin_requests_per_app: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileApp {
    id: String,
    admin_key: Option<String>,
    admin_key_env: Option<String>,
    max_rooms: Option<usize>,
    sdkappid: Option<u64>,
    usersig_key: Option<String>,
    usersig_key_env: Option<String>,
    admin_identifiers: Option<Vec<String>>,
    callbacks: Option<FileCallbacks>,
    pusher: Option<FilePusher>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePusher {
    app_id: String,
    key: String,
    secret: Option<String>,
    secret_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCallbacks {
    url: String,
    timeout_ms: Option<u64>,
    /// "open" (the default, as Tencent) or "closed".
    on_failure: Option<String>,
    token: Option<String>,
    token_env: Option<String>,
    before_broadcast: Option<bool>,
    after_broadcast: Option<bool>,
    after_queue: Option<usize>,
    /// `"room.occupied"`, `"room.vacated"`: none by default.
    events: Option<Vec<String>>,
    vacated_after_ms: Option<u64>,
}

impl Config {
    /// Builds the configuration from parsed flags (with their environment
    /// twins), the config file they name, and defaults.
    pub fn load(args: &ServeArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Config::merge(args, file, |name| std::env::var(name).ok())
    }

    /// Parses a config file's text (for tests and tools).
    pub fn from_toml(
        args: &ServeArgs,
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let file = toml::from_str(text).map_err(|e| invalid("config", toml_message(&e)))?;
        Config::merge(args, file, env)
    }

    fn merge(args: &ServeArgs, file: FileConfig, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let ms = Duration::from_millis;
        let config = Config {
            listen: ListenConfig {
                viewer: args.viewer_addr.or(file.viewer_addr).unwrap_or(([0, 0, 0, 0], 8080).into()),
                quic: args.quic_addr.or(file.quic_addr).unwrap_or(([0, 0, 0, 0], 4433).into()),
                quic_public_port: args.quic_public_port.or(file.quic_public_port),
                admin: args.admin_addr.or(file.admin_addr).unwrap_or(([127, 0, 0, 1], 8081).into()),
                tls: cert_files(
                    "tls_cert (--tls-cert) / tls_key (--tls-key)",
                    args.tls_cert.clone().or(file.tls_cert),
                    args.tls_key.clone().or(file.tls_key),
                )?,
                viewer_tls: args.viewer_tls || file.viewer_tls.unwrap_or(false),
                admin_tls: cert_files(
                    "admin_tls_cert (--admin-tls-cert) / admin_tls_key (--admin-tls-key)",
                    args.admin_tls_cert.clone().or(file.admin_tls_cert),
                    args.admin_tls_key.clone().or(file.admin_tls_key),
                )?,
            },
            data_dir: args.data_dir.clone().or(file.data_dir).unwrap_or_else(|| PathBuf::from("./data")),
            cluster_nats: args.cluster_nats.clone().or(file.cluster_nats),
            fanout: FanoutConfig {
                shards: args.shards.or(file.fanout.shards),
                pin_shards: args.pin_shards || file.fanout.pin_shards.unwrap_or(false),
                queue: QueueLimits {
                    max_messages: args.queue_max_messages.or(file.fanout.queue_max_messages).unwrap_or(512),
                    max_bytes: args.queue_max_bytes.or(file.fanout.queue_max_bytes).unwrap_or(1 << 20),
                    slow_consumer_after: ms(args
                        .slow_consumer_after_ms
                        .or(file.fanout.slow_consumer_after_ms)
                        .unwrap_or(10_000)),
                },
                resume: ResumeLimits {
                    messages: args.resume_messages.or(file.fanout.resume_messages).unwrap_or(64),
                    max_bytes: args.resume_max_bytes.or(file.fanout.resume_max_bytes).unwrap_or(8 << 20),
                    max_age: ms(args.resume_max_age_ms.or(file.fanout.resume_max_age_ms).unwrap_or(60_000)),
                },
            },
            websocket: WebSocketConfig {
                heartbeat: ms(args.heartbeat_ms.or(file.websocket.heartbeat_ms).unwrap_or(25_000)),
                idle_timeout: ms(args.idle_timeout_ms.or(file.websocket.idle_timeout_ms).unwrap_or(60_000)),
                compression: match args.ws_compression.clone().or(file.websocket.compression).as_deref() {
                    None | Some("on") => true,
                    Some("off") => false,
                    Some(_) => {
                        return Err(invalid("websocket.compression (--ws-compression)", "must be \"on\" or \"off\""));
                    }
                },
                compress_min_bytes: args.ws_compress_min_bytes.or(file.websocket.compress_min_bytes).unwrap_or(256),
                max_connections: args.max_connections.or(file.websocket.max_connections),
            },
            admin: AdminConfig {
                max_payload_bytes: args.max_payload_bytes.or(file.admin.max_payload_bytes).unwrap_or(64 * 1024),
            },
            drain: DrainConfig {
                window: ms(args.drain_window_ms.or(file.drain.window_ms).unwrap_or(10_000)),
                timeout: ms(args.drain_timeout_ms.or(file.drain.timeout_ms).unwrap_or(5_000)),
            },
            limits: {
                let default = LimitsConfig::default();
                LimitsConfig {
                    max_connections_per_ip: args
                        .max_connections_per_ip
                        .or(file.limits.max_connections_per_ip)
                        .unwrap_or(default.max_connections_per_ip),
                    handshake_timeout: args
                        .handshake_timeout_ms
                        .or(file.limits.handshake_timeout_ms)
                        .map_or(default.handshake_timeout, ms),
                    accept_rate: args.accept_rate.or(file.limits.accept_rate).unwrap_or(default.accept_rate),
                    broadcasts_per_room: args
                        .broadcasts_per_room
                        .or(file.limits.broadcasts_per_room)
                        .unwrap_or(default.broadcasts_per_room),
                    admin_requests_per_app: args
                        .admin_requests_per_app
                        .or(file.limits.admin_requests_per_app)
                        .unwrap_or(default.admin_requests_per_app),
                }
            },
            demo_admin_key: env(crate::registry::keys::DEMO_KEY_ENV).filter(|k| !k.is_empty()),
            apps: resolve_apps(file.apps, &env)?,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.viewer_tls && self.listen.tls.is_none() {
            return Err(invalid(
                "viewer_tls (--viewer-tls)",
                "needs tls_cert and tls_key (--tls-cert, --tls-key): browsers do not trust a generated certificate",
            ));
        }
        if self.fanout.shards == Some(0) {
            return Err(invalid("fanout.shards (--shards)", "must be at least 1"));
        }
        if self.fanout.queue.max_messages == 0 {
            return Err(invalid("fanout.queue_max_messages (--queue-max-messages)", "must be at least 1"));
        }
        if self.fanout.queue.max_bytes < self.admin.max_payload_bytes + 256 {
            return Err(invalid(
                "fanout.queue_max_bytes (--queue-max-bytes)",
                "must hold at least one broadcast of admin.max_payload_bytes plus its envelope",
            ));
        }
        if self.websocket.heartbeat.is_zero() {
            return Err(invalid("websocket.heartbeat_ms (--heartbeat-ms)", "must be above 0"));
        }
        if self.websocket.idle_timeout <= self.websocket.heartbeat {
            return Err(invalid(
                "websocket.idle_timeout_ms (--idle-timeout-ms)",
                "must be longer than websocket.heartbeat_ms, or every client times out",
            ));
        }
        if self.websocket.max_connections == Some(0) {
            return Err(invalid("websocket.max_connections (--max-connections)", "must be at least 1"));
        }
        if self.limits.handshake_timeout.is_zero() {
            return Err(invalid("limits.handshake_timeout_ms (--handshake-timeout-ms)", "must be above 0"));
        }
        if self.admin.max_payload_bytes == 0 {
            return Err(invalid("admin.max_payload_bytes (--max-payload-bytes)", "must be above 0"));
        }
        if let Some(nats) = &self.cluster_nats
            && !nats.split(',').all(|url| url.trim().starts_with("nats://") || url.trim().starts_with("tls://"))
        {
            return Err(invalid("cluster_nats (--cluster-nats)", "expected nats://host:port[,…]"));
        }
        Ok(())
    }
}

/// `[app.pusher]`: every field present and non-empty, the secret from the
/// file or the environment, `app_id` and `key` not another app's.
fn resolve_pusher(
    pusher: FilePusher,
    apps: &[AppConfig],
    field: &dyn Fn(&str) -> String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PusherIdentity, ConfigError> {
    let secret = match (pusher.secret, pusher.secret_env) {
        (Some(secret), None) => secret,
        (None, Some(var)) => env(&var)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid(field("secret_env"), format!("environment variable {var} is not set")))?,
        _ => return Err(invalid(field("secret"), "set exactly one of secret and secret_env")),
    };
    for (name, value) in [("app_id", &pusher.app_id), ("key", &pusher.key), ("secret", &secret)] {
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(field(name), "must be visible ASCII characters, at least one"));
        }
    }
    let taken = |pick: fn(&PusherIdentity) -> &String, value: &String| {
        apps.iter().any(|a| a.pusher.as_ref().is_some_and(|p| pick(p) == value))
    };
    if taken(|p| &p.app_id, &pusher.app_id) {
        return Err(invalid(field("app_id"), format!("{} belongs to another app", pusher.app_id)));
    }
    if taken(|p| &p.key, &pusher.key) {
        return Err(invalid(field("key"), "belongs to another app"));
    }
    Ok(PusherIdentity { app_id: pusher.app_id, key: pusher.key, secret })
}

fn resolve_callbacks(
    file: FileCallbacks,
    field: &impl Fn(&str) -> String,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<CallbackConfig, ConfigError> {
    if !(file.url.starts_with("http://") || file.url.starts_with("https://"))
        || file.url.parse::<axum::http::Uri>().is_err()
    {
        return Err(invalid(field("url"), "must be an http:// or https:// URL"));
    }
    let fail_closed = match file.on_failure.as_deref() {
        None | Some("open") => false,
        Some("closed") => true,
        Some(_) => return Err(invalid(field("on_failure"), "must be \"open\" or \"closed\"")),
    };
    let token = match (file.token, file.token_env) {
        (Some(token), None) => Some(token),
        (None, Some(var)) => Some(
            env(&var)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| invalid(field("token_env"), format!("{var} is not set")))?,
        ),
        (None, None) => None,
        _ => return Err(invalid(field("token"), "set at most one of token and token_env")),
    };
    let timeout = Duration::from_millis(file.timeout_ms.unwrap_or(2000));
    if timeout.is_zero() {
        return Err(invalid(field("timeout_ms"), "must be above 0"));
    }
    let after_queue = file.after_queue.unwrap_or(10_000);
    if after_queue == 0 {
        return Err(invalid(field("after_queue"), "must be at least 1"));
    }
    let mut events = RoomEvents::default();
    for event in file.events.unwrap_or_default() {
        match event.as_str() {
            "room.occupied" => events.occupied = true,
            "room.vacated" => events.vacated = true,
            _ => {
                return Err(invalid(
                    field("events"),
                    format!("{event:?} is not \"room.occupied\" or \"room.vacated\""),
                ));
            }
        }
    }
    let vacated_after_ms = file.vacated_after_ms.unwrap_or(5_000);
    if !(100..=3_600_000).contains(&vacated_after_ms) {
        return Err(invalid(field("vacated_after_ms"), "must be 100 to 3600000"));
    }
    Ok(CallbackConfig {
        url: file.url,
        timeout,
        fail_closed,
        token,
        before_broadcast: file.before_broadcast.unwrap_or(true),
        after_broadcast: file.after_broadcast.unwrap_or(true),
        after_queue,
        events,
        vacated_after: Duration::from_millis(vacated_after_ms),
    })
}

/// A certificate and its key: both or neither.
fn cert_files(field: &str, cert: Option<PathBuf>, key: Option<PathBuf>) -> Result<Option<CertFiles>, ConfigError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(CertFiles { cert, key })),
        (None, None) => Ok(None),
        _ => Err(invalid(field, "give both or neither")),
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid("config (--config)", format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| invalid(format!("config file {}", path.display()), toml_message(&e)))
}

/// toml's message already names the key and shows the line; keep it on one line.
fn toml_message(e: &toml::de::Error) -> String {
    e.to_string().lines().filter(|l| !l.trim().is_empty()).collect::<Vec<_>>().join(" | ")
}

fn resolve_apps(apps: Vec<FileApp>, env: &impl Fn(&str) -> Option<String>) -> Result<Vec<AppConfig>, ConfigError> {
    let mut out: Vec<AppConfig> = Vec::with_capacity(apps.len());
    for (i, app) in apps.into_iter().enumerate() {
        let field = |name: &str| format!("app[{i}].{name}");
        if !is_valid_id(&app.id) {
            return Err(invalid(field("id"), "must match ^[A-Za-z0-9_-]{1,64}$"));
        }
        if out.iter().any(|a| a.id == app.id) {
            return Err(invalid(field("id"), format!("app {:?} is defined twice", app.id)));
        }
        let admin_key = match (app.admin_key, app.admin_key_env) {
            (Some(key), None) => key,
            (None, Some(var)) => env(&var)
                .filter(|k| !k.is_empty())
                .ok_or_else(|| invalid(field("admin_key_env"), format!("environment variable {var} is not set")))?,
            _ => {
                return Err(invalid(field("admin_key"), "set exactly one of admin_key and admin_key_env"));
            }
        };
        if admin_key.len() < 16 {
            return Err(invalid(field("admin_key"), "must be at least 16 characters"));
        }
        let max_rooms = app.max_rooms.unwrap_or(DEFAULT_MAX_ROOMS);
        if max_rooms == 0 {
            return Err(invalid(field("max_rooms"), "must be at least 1"));
        }
        let usersig_key =
            match (app.usersig_key, app.usersig_key_env) {
                (Some(key), None) => Some(key),
                (None, Some(var)) => Some(env(&var).filter(|k| !k.is_empty()).ok_or_else(|| {
                    invalid(field("usersig_key_env"), format!("environment variable {var} is not set"))
                })?),
                (None, None) => None,
                _ => return Err(invalid(field("usersig_key"), "set at most one of usersig_key and usersig_key_env")),
            };
        let tencent = match (app.sdkappid, usersig_key) {
            (Some(sdkappid), Some(usersig_key)) => {
                let admin_identifiers = app.admin_identifiers.unwrap_or_else(|| vec!["administrator".to_owned()]);
                if admin_identifiers.is_empty() || admin_identifiers.iter().any(String::is_empty) {
                    return Err(invalid(field("admin_identifiers"), "name at least one account, none empty"));
                }
                if out.iter().any(|a| a.tencent.as_ref().is_some_and(|t| t.sdkappid == sdkappid)) {
                    return Err(invalid(field("sdkappid"), format!("{sdkappid} belongs to another app")));
                }
                Some(TencentIdentity { sdkappid, usersig_key, admin_identifiers })
            }
            (None, None) if app.admin_identifiers.is_none() => None,
            _ => {
                return Err(invalid(
                    field("sdkappid"),
                    "Tencent-style calls need sdkappid and usersig_key (or usersig_key_env) together",
                ));
            }
        };
        let callbacks = match app.callbacks {
            Some(callbacks) => Some(resolve_callbacks(callbacks, &|name| field(&format!("callbacks.{name}")), env)?),
            None => None,
        };
        let pusher = match app.pusher {
            Some(pusher) => Some(resolve_pusher(pusher, &out, &|name| field(&format!("pusher.{name}")), env)?),
            None => None,
        };
        out.push(AppConfig { id: app.id, admin_key, max_rooms, tencent, pusher, callbacks });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = Config::from_toml(&ServeArgs::default(), "", no_env).unwrap();
        assert_eq!(c.listen.viewer, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.listen.quic, "0.0.0.0:4433".parse().unwrap());
        assert_eq!(c.listen.admin, "127.0.0.1:8081".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert!(c.apps.is_empty());
    }

    #[test]
    fn flag_beats_file_beats_default() {
        let file =
            "admin_addr = \"127.0.0.1:9001\"\nviewer_addr = \"127.0.0.1:9002\"\n[fanout]\nqueue_max_messages = 7\n";
        let args = ServeArgs { viewer_addr: Some("127.0.0.1:9999".parse().unwrap()), ..Default::default() };
        let c = Config::from_toml(&args, file, no_env).unwrap();
        assert_eq!(c.listen.viewer.port(), 9999, "flag wins");
        assert_eq!(c.listen.admin.port(), 9001, "file beats default");
        assert_eq!(c.fanout.queue.max_messages, 7);
        assert_eq!(c.listen.quic.port(), 4433, "default fills the rest");
    }

    #[test]
    fn apps_resolve_keys_from_the_environment() {
        let file = "[[app]]\nid = \"acme\"\nadmin_key_env = \"ACME_KEY\"\nmax_rooms = 3\n";
        let env = |name: &str| (name == "ACME_KEY").then(|| "k".repeat(32));
        let c = Config::from_toml(&ServeArgs::default(), file, env).unwrap();
        assert_eq!(c.apps[0].id, "acme");
        assert_eq!(c.apps[0].admin_key, "k".repeat(32));
        assert_eq!(c.apps[0].max_rooms, 3);
    }

    #[test]
    fn pusher_identities_are_checked_and_their_secret_is_never_printed() {
        let app = |id: &str, app_id: &str, key: &str, secret: &str| {
            format!(
                "[[app]]\nid = \"{id}\"\nadmin_key = \"0123456789abcdef\"\n[app.pusher]\napp_id = \"{app_id}\"\nkey = \"{key}\"\n{secret}\n"
            )
        };
        let good = app("a", "1", "k1", "secret = \"s3cr3t-value\"");
        let config = Config::from_toml(&ServeArgs::default(), &good, no_env).unwrap();
        let pusher = config.apps[0].pusher.as_ref().unwrap();
        assert_eq!((pusher.app_id.as_str(), pusher.key.as_str(), pusher.secret.as_str()), ("1", "k1", "s3cr3t-value"));
        assert!(!format!("{config:?}").contains("s3cr3t-value"), "the secret is never printed");
        for (text, field) in [
            (app("a", "1", "k1", ""), "app[0].pusher.secret"),
            (app("a", "1", "k1", "secret_env = \"NOPE\""), "app[0].pusher.secret_env"),
            (app("a", "", "k1", "secret = \"s\""), "app[0].pusher.app_id"),
            (good.clone() + &app("b", "1", "k2", "secret = \"s\""), "app[1].pusher.app_id"),
            (good.clone() + &app("b", "2", "k1", "secret = \"s\""), "app[1].pusher.key"),
        ] {
            let err = Config::from_toml(&ServeArgs::default(), &text, no_env).unwrap_err().to_string();
            assert!(err.contains(field), "{text:?} gave {err:?}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("bogus = 1", "bogus"),
            ("[[app]]\nid = \"bad id\"\nadmin_key = \"0123456789abcdef\"", "app[0].id"),
            ("[[app]]\nid = \"a\"\nadmin_key_env = \"NOPE\"", "app[0].admin_key_env"),
            ("[[app]]\nid = \"a\"", "app[0].admin_key"),
            ("[fanout]\nqueue_max_messages = 0", "fanout.queue_max_messages"),
            ("[websocket]\ncompression = \"maybe\"", "websocket.compression"),
            (
                "[[app]]\nid = \"a\"\nadmin_key = \"0123456789abcdef\"\n[app.callbacks]\nurl = \"http://x/\"\nvacated_after_ms = 10",
                "app[0].callbacks.vacated_after_ms",
            ),
            ("[websocket]\nheartbeat_ms = 5000\nidle_timeout_ms = 1000", "websocket.idle_timeout_ms"),
            ("viewer_addr = \"nonsense\"", "viewer_addr"),
            ("[[app]]\nid = \"a\"\nadmin_key = \"0123456789abcdef\"\nsdkappid = 1400000000", "app[0].sdkappid"),
            ("tls_cert = \"a.pem\"", "tls_key"),
            (
                "[[app]]\nid = \"a\"\nadmin_key = \"0123456789abcdef\"\n[app.callbacks]\nurl = \"ftp://x\"",
                "app[0].callbacks.url",
            ),
            (
                "[[app]]\nid = \"a\"\nadmin_key = \"0123456789abcdef\"\n[app.callbacks]\nurl = \"http://x/\"\non_failure = \"maybe\"",
                "app[0].callbacks.on_failure",
            ),
            ("viewer_tls = true", "viewer_tls"),
            ("admin_tls_key = \"k.pem\"", "admin_tls_cert"),
        ];
        for (text, field) in cases {
            let err = Config::from_toml(&ServeArgs::default(), text, no_env).unwrap_err().to_string();
            assert!(err.contains(field), "{text:?} gave {err:?}");
        }
    }
}
