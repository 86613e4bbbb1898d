//! One WebTransport subscription, as a browser opens it: an HTTP/3 session
//! to `/v1/apps/{app}/wt?room=…`, the server's unidirectional stream of
//! frames, and a stream of our own for pings.

use std::net::SocketAddr;

use bytes::Bytes;
use web_transport_quinn::{RecvStream, SendStream, Session};

use super::frames::FrameBuffer;
use super::{ClientError, Message};
use crate::protocol::quic;

/// An open WebTransport subscription.
pub struct WtStream {
    session: Session,
    recv: RecvStream,
    pings: Option<SendStream>,
    frames: FrameBuffer,
}

impl WtStream {
    /// Connects through `endpoint` (whose client configuration speaks ALPN
    /// `h3`) to `addr`, TLS name `server_name`, for `rooms` (each `room` or
    /// `room@seq`) of `app`.
    pub async fn connect(
        endpoint: &quinn::Endpoint,
        addr: SocketAddr,
        server_name: &str,
        app: &str,
        rooms: &[String],
    ) -> Result<WtStream, ClientError> {
        let url = subscribe_url(server_name, addr.port(), app, rooms)?;
        let conn = endpoint.connect(addr, server_name).map_err(|e| ClientError::Connect(e.to_string()))?.await?;
        let session = Session::connect(conn, url).await.map_err(|e| ClientError::Connect(e.to_string()))?;
        let recv = session.accept_uni().await.map_err(|e| ClientError::Io(e.to_string()))?;
        Ok(WtStream { session, recv, pings: None, frames: FrameBuffer::new() })
    }

    /// The next message; `None` once the server ended its stream.
    pub async fn next(&mut self) -> Result<Option<Message>, ClientError> {
        Ok(match self.next_frame().await? {
            Some(frame) => Some(Message::parse(&frame)?),
            None => None,
        })
    }

    /// The next raw JSON frame (what the load harness reads without parsing).
    pub async fn next_frame(&mut self) -> Result<Option<Bytes>, ClientError> {
        loop {
            if let Some(frame) = self.frames.pop() {
                return Ok(Some(frame));
            }
            let Some(chunk) =
                self.recv.read_chunk(64 * 1024, true).await.map_err(|e| ClientError::Io(e.to_string()))?
            else {
                return Ok(None);
            };
            self.frames.push(&chunk.bytes)?;
        }
    }

    /// Sends `{"type":"ping"}` on our own stream, opened at the first ping;
    /// the answer arrives as [`Message::Pong`].
    pub async fn ping(&mut self) -> Result<(), ClientError> {
        let pings = match &mut self.pings {
            Some(pings) => pings,
            None => self.pings.insert(self.session.open_uni().await.map_err(|e| ClientError::Io(e.to_string()))?),
        };
        pings.write_all(&quic::frame(br#"{"type":"ping"}"#)).await.map_err(|e| ClientError::Io(e.to_string()))
    }

    /// The session (close reason, the underlying connection).
    pub fn session(&self) -> &Session {
        &self.session
    }
}

/// `https://{server_name}:{port}/v1/apps/{app}/wt?room=…`.
pub fn subscribe_url(server_name: &str, port: u16, app: &str, rooms: &[String]) -> Result<url::Url, ClientError> {
    let mut url = url::Url::parse(&format!("https://{server_name}:{port}/"))
        .map_err(|e| ClientError::Connect(format!("bad server name {server_name:?}: {e}")))?;
    url.path_segments_mut().expect("https URLs have a path").extend(["v1", "apps", app, "wt"]);
    url.query_pairs_mut().extend_pairs(rooms.iter().map(|room| ("room", room)));
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_names_the_app_and_each_room() {
        let url = subscribe_url("localhost", 4433, "demo", &["gifts@4".into(), "b".into()]).unwrap();
        assert_eq!(url.as_str(), "https://localhost:4433/v1/apps/demo/wt?room=gifts%404&room=b");
    }
}
