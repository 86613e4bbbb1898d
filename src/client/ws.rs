//! One WebSocket subscription (contract §4): upgrade, then text frames.

use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{ClientError, Message};

/// An open subscription over WebSocket.
pub struct WsStream {
    ws: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
}

impl WsStream {
    /// Connects to `base` (`ws://host:port`) for `rooms` (each `room` or `room@seq`) of `app`.
    pub async fn connect(base: &str, app: &str, rooms: &[String]) -> Result<WsStream, ClientError> {
        let query: Vec<String> = rooms.iter().map(|r| format!("room={}", r.replace('@', "%40"))).collect();
        let url = format!("{}/v1/apps/{app}/ws?{}", base.trim_end_matches('/'), query.join("&"));
        let (ws, _) = tokio_tungstenite::connect_async(url).await.map_err(|e| ClientError::Connect(e.to_string()))?;
        Ok(WsStream { ws })
    }

    /// The next message; `None` once the server closed.
    pub async fn next(&mut self) -> Result<Option<Message>, ClientError> {
        loop {
            match self.ws.next().await {
                Some(Ok(Frame::Text(text))) => return Ok(Some(Message::parse(text.as_bytes())?)),
                Some(Ok(Frame::Close(_))) | None => return Ok(None),
                Some(Ok(_)) => continue, // pings are answered by the library
                Some(Err(e)) => return Err(ClientError::Io(e.to_string())),
            }
        }
    }

    /// Sends `{"type":"ping"}`; the answer arrives as [`Message::Pong`].
    pub async fn ping(&mut self) -> Result<(), ClientError> {
        self.ws.send(Frame::text(r#"{"type":"ping"}"#)).await.map_err(|e| ClientError::Io(e.to_string()))
    }
}
