//! A real HTTP server that records the callbacks a node posts (room events).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use serde_json::{Value, json};

pub const TOKEN: &str = "events-token";

/// An app `demo` whose callbacks are room events only, posted to `url`.
pub fn events_config(url: &str, vacated_after_ms: u64) -> String {
    format!(
        "[[app]]\nid = \"demo\"\nadmin_key = \"{}\"\n[app.callbacks]\nurl = \"{url}\"\ntoken = \"{TOKEN}\"\n\
         before_broadcast = false\nafter_broadcast = false\nevents = [\"room.occupied\", \"room.vacated\"]\n\
         vacated_after_ms = {vacated_after_ms}\n",
        super::KEY
    )
}

pub fn occupied(online: u64) -> (String, u64) {
    ("room.occupied".to_owned(), online)
}

pub fn vacated() -> (String, u64) {
    ("room.vacated".to_owned(), 0)
}

/// What the receiver got: each request's query and body, in order.
#[derive(Default)]
pub struct Receiver {
    pub requests: Mutex<Vec<(HashMap<String, String>, Value)>>,
}

impl Receiver {
    pub async fn start() -> (Arc<Receiver>, String) {
        let receiver = Arc::new(Receiver::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        let router = axum::Router::new().route("/events", axum::routing::post(record)).with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        (receiver, url)
    }

    /// The events received, as `(event, online)`.
    pub fn events(&self) -> Vec<(String, u64)> {
        let requests = self.requests.lock().unwrap();
        requests
            .iter()
            .map(|(_, body)| (body["event"].as_str().unwrap().to_owned(), body["online"].as_u64().unwrap()))
            .collect()
    }

    /// Waits until `n` events arrived; returns them.
    pub async fn until(&self, n: usize) -> Vec<(String, u64)> {
        for _ in 0..1_000 {
            if self.events().len() >= n {
                return self.events();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{n} events never arrived: {:?}", self.events());
    }
}

async fn record(
    State(receiver): State<Arc<Receiver>>,
    Query(query): Query<HashMap<String, String>>,
    Json(body): Json<Value>,
) -> Json<Value> {
    receiver.requests.lock().unwrap().push((query, body));
    Json(json!({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""}))
}
