//! What every node of a cluster must hold alike, agreed through NATS: today
//! the QUIC reset secret (`transport::quic::reset`), so that any node answers
//! the packets of another node's lost connections with a reset their clients
//! believe.
//!
//! The first node to start offers its own secret with a KV `create`, which
//! succeeds for exactly one writer; every other node, and that one after a
//! restart, reads the value that won. Nothing here changes once written.

use async_nats::jetstream::kv;
use bytes::Bytes;

use super::{Cluster, names};
use crate::transport::quic::reset::ResetSecret;

impl Cluster {
    /// The cluster's QUIC reset secret: `offer` if no node has set one yet,
    /// else the one already agreed.
    pub async fn agree_reset_secret(&self, offer: &ResetSecret) -> anyhow::Result<ResetSecret> {
        let bucket = super::open_kv(&self.jetstream, names::SECRETS_BUCKET, "bullhorn: secrets every node shares")
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the {} bucket in NATS: {e}", names::SECRETS_BUCKET))?;
        match bucket.create(names::QUIC_RESET_KEY, Bytes::from(offer.to_text())).await {
            Ok(_) => return Ok(offer.clone()),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(e) => anyhow::bail!("cannot store the QUIC reset secret in NATS: {e}"),
        }
        let value = bucket
            .get(names::QUIC_RESET_KEY)
            .await
            .map_err(|e| anyhow::anyhow!("cannot read the QUIC reset secret from NATS: {e}"))?
            .ok_or_else(|| anyhow::anyhow!("the QUIC reset secret vanished from NATS"))?;
        let text =
            std::str::from_utf8(&value).map_err(|_| anyhow::anyhow!("the cluster's QUIC reset secret is not text"))?;
        ResetSecret::from_text(text.trim())
    }
}
