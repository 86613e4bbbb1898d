//! Room events (contract §9): `room.occupied` and `room.vacated` posted to
//! a real HTTP receiver on a real socket, for join and leave sequences over
//! real WebSocket connections, flapping faster than the debounce included,
//! and across a node killed with members on it and started again.

mod common;

use std::time::Duration;

use bullhorn::cli::ServeArgs;
use common::receiver::{Receiver, occupied, vacated};
use common::{ChildServer, Subscriber, TestServer, metric};

const VACATED_AFTER_MS: u64 = 400;

fn config(url: &str) -> String {
    common::receiver::events_config(url, VACATED_AFTER_MS)
}

/// Longer than the debounce and a few of the server's looks (100 ms each).
async fn past_the_debounce() {
    tokio::time::sleep(Duration::from_millis(VACATED_AFTER_MS * 3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_and_leaves_give_alternating_events_once_each() {
    let (receiver, url) = Receiver::start().await;
    let server = TestServer::start_with_file(ServeArgs::default(), &config(&url)).await;
    server.admin.create_room("gifts").await;
    past_the_debounce().await;
    assert_eq!(receiver.events(), [], "creating a room adds no one: nothing to tell");

    let mut first = server.subscribe(&["gifts"]).await;
    first.next_json().await;
    assert_eq!(receiver.until(1).await, [occupied(1)]);
    {
        let requests = receiver.requests.lock().unwrap();
        let (query, body) = &requests[0];
        assert_eq!(query["CallbackCommand"], "room.occupied");
        assert!(
            query.contains_key("Sign") && query.contains_key("RequestTime"),
            "signed like the other callbacks: {query:?}"
        );
        assert_eq!((body["app"].as_str(), body["room"].as_str()), (Some("demo"), Some("gifts")));
        assert!(body["at"].as_str().is_some_and(|at| at.ends_with('Z')), "{body}");
    }

    // Flapping faster than the debounce: the room never stays empty long enough.
    for _ in 0..5 {
        drop(first);
        first = server.subscribe(&["gifts"]).await;
        first.next_json().await;
    }
    past_the_debounce().await;
    assert_eq!(receiver.events(), [occupied(1)], "still occupied: nothing new");

    // Everyone leaves: vacated once, after the debounce.
    drop(first);
    assert_eq!(receiver.until(2).await, [occupied(1), vacated()]);
    past_the_debounce().await;
    assert_eq!(receiver.events().len(), 2, "vacated once");

    // A member that comes and goes between two looks still made the room occupied.
    let mut brief = server.subscribe(&["gifts"]).await;
    brief.next_json().await;
    drop(brief);
    let events = receiver.until(4).await;
    assert_eq!(events, [occupied(1), vacated(), occupied(1), vacated()]);
    past_the_debounce().await;
    assert_eq!(receiver.events().len(), 4);
    let metrics = server.admin.metrics().await;
    assert_eq!(metric(&metrics, r#"bullhorn_callbacks_total{app="demo",kind="event",result="ok"}"#), Some(4.0));
    server.finish().await;
}

#[tokio::test]
async fn a_node_killed_with_members_on_it_does_not_tell_occupied_twice() {
    let (receiver, url) = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("bullhorn.toml");
    std::fs::write(&config_file, config(&url)).unwrap();
    let data = dir.path().join("data");
    let config_arg = config_file.to_str().unwrap();
    let mut first = ChildServer::start(&data, &["--config", config_arg]).await;
    first.admin.create_room("gifts").await;
    let mut viewer = Subscriber::connect(&format!("ws://{}/v1/apps/demo/ws?room=gifts", first.viewer)).await;
    viewer.next_json().await;
    assert_eq!(receiver.until(1).await, [occupied(1)]);
    first.signal(9); // no drain: the members are cut off
    first.wait().await;

    // The members come back to the restarted node: the room never stopped being occupied.
    let second = ChildServer::start(&data, &["--config", config_arg]).await;
    let mut back = Subscriber::connect(&format!("ws://{}/v1/apps/demo/ws?room=gifts", second.viewer)).await;
    back.next_json().await;
    past_the_debounce().await;
    assert_eq!(receiver.events(), [occupied(1)], "nothing new while members are back");
    drop(back);
    assert_eq!(receiver.until(2).await, [occupied(1), vacated()]);
    past_the_debounce().await;
    assert_eq!(receiver.events().len(), 2);
}

#[tokio::test]
async fn an_unknown_event_name_is_a_config_error() {
    let file = config("http://127.0.0.1:9/x").replace("\"room.vacated\"]", "\"room.emptied\"]");
    let data = tempfile::tempdir().unwrap();
    let path = data.path().join("bullhorn.toml");
    std::fs::write(&path, file).unwrap();
    let output = ChildServer::command(data.path(), &["--config", path.to_str().unwrap()]).output().await.unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("app[0].callbacks.events") && stderr.contains("room.emptied"), "{stderr}");
}
