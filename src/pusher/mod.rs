//! Pusher Channels compatibility (contract §12): [`signature`], the HTTP
//! API's request signature; [`api`], the HTTP API's routes on the admin
//! listener. The WebSocket protocol for Pusher's client libraries comes next
//! (docs/architecture.md, "Pusher Channels compatibility").

pub mod api;
pub mod signature;
