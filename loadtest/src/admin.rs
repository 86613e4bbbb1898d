//! The admin API as the harness uses it: make sure the room exists, send
//! broadcasts (with the delivery options under test), read the room.

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::{Common, DeliveryArgs};

pub struct Admin {
    http: reqwest::Client,
    base: String,
    key: String,
    app: String,
    room: String,
}

/// What a 202 said.
#[derive(Debug, Clone, Copy)]
pub struct Accepted {
    pub seq: u64,
    pub online: u64,
}

impl Admin {
    pub fn new(common: &Common) -> Admin {
        Admin {
            http: reqwest::Client::new(),
            base: common.admin.trim_end_matches('/').to_owned(),
            key: common.key.clone(),
            app: common.app.clone(),
            room: common.room.clone(),
        }
    }

    pub async fn ensure_room(&self) -> anyhow::Result<()> {
        let resp = self
            .http
            .post(format!("{}/v1/apps/{}/rooms", self.base, self.app))
            .bearer_auth(&self.key)
            .json(&json!({"room": self.room}))
            .send()
            .await
            .context("cannot reach the admin API")?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() || body["error"]["code"] == "room_exists" {
            Ok(())
        } else {
            bail!("cannot create room {}: {status} {body}", self.room)
        }
    }

    /// Sets the room's `occupancy_interval_ms`.
    pub async fn set_occupancy_interval(&self, ms: u64) -> anyhow::Result<()> {
        let resp = self
            .http
            .patch(format!("{}/v1/apps/{}/rooms/{}", self.base, self.app, self.room))
            .bearer_auth(&self.key)
            .json(&json!({"occupancy_interval_ms": ms}))
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("cannot set the occupancy interval: {} {}", resp.status(), resp.text().await.unwrap_or_default());
        }
        Ok(())
    }

    /// The room's object now.
    pub async fn room(&self) -> anyhow::Result<Value> {
        let resp = self
            .http
            .get(format!("{}/v1/apps/{}/rooms/{}", self.base, self.app, self.room))
            .bearer_auth(&self.key)
            .send()
            .await?;
        Ok(resp.json().await?)
    }

    /// Broadcast `seq`'s reach (contract §9).
    pub async fn reach(&self, seq: u64) -> anyhow::Result<Value> {
        let resp = self
            .http
            .get(format!("{}/v1/apps/{}/rooms/{}/broadcasts/{seq}", self.base, self.app, self.room))
            .bearer_auth(&self.key)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("no reach for broadcast {seq}: {}", resp.status());
        }
        Ok(resp.json().await?)
    }

    /// The room's `online` count now.
    pub async fn online(&self) -> anyhow::Result<u64> {
        self.room().await?["online"].as_u64().context("no online count in the room object")
    }

    /// Sends broadcast number `n`.
    pub async fn broadcast(&self, data: Value, n: u64, options: &DeliveryArgs) -> anyhow::Result<Accepted> {
        let mut body = json!({"data": data});
        if let Some(priority) = &options.priority {
            body["priority"] = json!(priority);
        }
        if let Some(conflate) = &options.conflate {
            body["conflate"] = json!(conflate.replace("{n}", &n.to_string()));
        }
        if let Some(ttl_ms) = options.ttl_ms {
            body["ttl_ms"] = json!(ttl_ms);
        }
        if options.sticky {
            body["sticky"] = json!(true);
        }
        let mut request = self
            .http
            .post(format!("{}/v1/apps/{}/rooms/{}/broadcast", self.base, self.app, self.room))
            .bearer_auth(&self.key)
            .json(&body);
        if options.idempotency_keys {
            request = request.header("Idempotency-Key", format!("loadtest-{}-{n}", std::process::id()));
        }
        let resp = request.send().await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        if status.as_u16() != 202 {
            bail!("broadcast refused: {status} {body}");
        }
        Ok(Accepted { seq: body["seq"].as_u64().unwrap_or(0), online: body["online"].as_u64().unwrap_or(0) })
    }
}

/// `template` (a JSON object) with the send time in µs added as `"t"`.
pub fn templated(template: &serde_json::Map<String, Value>) -> Value {
    let mut data = template.clone();
    data.insert("t".into(), json!(crate::ws_client::now_us()));
    Value::Object(data)
}

/// The object in `--payload-json`'s file.
pub fn read_template(path: &std::path::Path) -> anyhow::Result<serde_json::Map<String, Value>> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    match serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))? {
        Value::Object(object) => Ok(object),
        _ => anyhow::bail!("{} must hold a JSON object", path.display()),
    }
}

/// `data` of exactly `size` bytes carrying the send time in µs (what the
/// subscribers' latency is measured from).
pub fn payload(size: usize) -> Value {
    let stamp = crate::ws_client::now_us();
    let bare = format!(r#"{{"t":{stamp},"p":""}}"#).len();
    json!({"t": stamp, "p": "x".repeat(size.saturating_sub(bare))})
}
