//! A load subscriber speaking the Pusher Channels protocol (`--transport
//! pusher`): the WebSocket upgrade to `/app/{key}`, then one subscribe to
//! the room's channel. Connected means subscribed: the server has joined
//! the room once `subscription_succeeded` is here. Its channel events are
//! then read like native broadcasts (`ws_client::on_text`).

use bytes::{Buf as _, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::ws_client::parse_header;

/// Subscribes to `channel` on a connection whose first frame
/// (`pusher:connection_established`) is in `buf` (skipped, as is anything
/// before the answer); returns once subscribed,
/// with what came after the answer left in `buf`.
pub async fn subscribe(stream: &mut TcpStream, buf: &mut BytesMut, channel: &str) -> std::io::Result<()> {
    let message = format!(r#"{{"event":"pusher:subscribe","data":{{"channel":{channel:?}}}}}"#);
    stream.write_all(&masked_text(message.as_bytes())).await?;
    loop {
        while let Some((opcode, header, len)) = parse_header(buf) {
            if buf.len() < header + len {
                break;
            }
            let payload = &buf[header..header + len];
            if opcode == 0x8 || payload.starts_with(br#"{"event":"pusher:subscription_error""#) {
                let text = String::from_utf8_lossy(payload).into_owned();
                return Err(std::io::Error::other(format!("subscribe refused: {text}")));
            }
            let subscribed = payload.starts_with(br#"{"event":"pusher_internal:subscription_succeeded""#);
            buf.advance(header + len);
            if subscribed {
                return Ok(());
            }
        }
        buf.reserve(1024);
        if stream.read_buf(buf).await? == 0 {
            return Err(std::io::Error::other("closed before the subscription's answer"));
        }
    }
}

/// A client text frame, masked (with a mask of zeros: the payload as it is).
fn masked_text(payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x81];
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
    }
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(payload);
    frame
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_client_frame_is_masked_and_sized() {
        let frame = super::masked_text(b"hi");
        assert_eq!(frame, [0x81, 0x82, 0, 0, 0, 0, b'h', b'i']);
        let long = super::masked_text(&[b'x'; 300]);
        assert_eq!((long[1], u16::from_be_bytes([long[2], long[3]])), (0x80 | 126, 300));
    }
}
