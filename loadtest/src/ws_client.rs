//! Load subscribers: a minimal WebSocket client (the handshake, unmasked
//! server frames in, masked pongs out) and QUIC through `bullhorn::client`,
//! both with a byte scan instead of a JSON parse so the client spends as
//! little of the shared cores as possible.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bullhorn::client::ClientError;
use bytes::{Buf as _, Bytes, BytesMut};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

/// What one worker's subscribers received, shared by its tasks on one thread.
pub struct Stats {
    pub deliveries: u64,
    /// Bytes of the broadcasts as they arrived: WebSocket frames with their
    /// header (compressed where they came compressed), or the messages of the
    /// other transports.
    pub broadcast_bytes: u64,
    pub gaps: u64,
    pub lagged: u64,
    pub first_us: u64,
    pub last_us: u64,
    pub latency: Histogram<u64>,
    /// Per broadcast seq: receivers and the slowest one's latency (`burst`).
    pub per_seq: Option<HashMap<u64, (u64, u64)>>,
    /// Deliveries per second since the epoch, in time order.
    pub timeline: Vec<(u64, u64)>,
}

impl Stats {
    pub fn new(per_seq: bool) -> Stats {
        Stats {
            deliveries: 0,
            broadcast_bytes: 0,
            gaps: 0,
            lagged: 0,
            first_us: u64::MAX,
            last_us: 0,
            latency: Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds"),
            per_seq: per_seq.then(HashMap::new),
            timeline: Vec::new(),
        }
    }
}

pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// Each failure says at which step, to tell a refused connect from a reset upgrade.
pub fn step(step: &'static str) -> impl Fn(std::io::Error) -> std::io::Error {
    move |error: std::io::Error| std::io::Error::new(error.kind(), format!("{step}: {error}"))
}

/// A TCP connection to `addr`, from `source` when given.
pub async fn open_socket(addr: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let stream = match source {
        Some(ip) => {
            let socket = if ip.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
            socket.bind(SocketAddr::new(ip, 0)).map_err(step("bind"))?;
            socket.connect(addr).await.map_err(step("connect"))?
        }
        None => TcpStream::connect(addr).await.map_err(step("connect"))?,
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Connects (from `source`, when given, to spread clients over loopback
/// addresses past one address's 64k ports) and completes the upgrade;
/// returns the stream and any bytes read past it.
pub async fn connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
    host: &str,
    path: &str,
    deflate: bool,
) -> std::io::Result<(TcpStream, BytesMut)> {
    let mut stream = open_socket(addr, source).await?;
    let offer = if deflate { "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" } else { "" };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
    );
    stream.write_all(request.as_bytes()).await.map_err(step("sending the upgrade"))?;
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if stream.read_buf(&mut buf).await.map_err(step("reading the upgrade's answer"))? == 0 {
            return Err(std::io::Error::other("closed during the handshake"));
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if !buf.starts_with(b"HTTP/1.1 101") {
                let line =
                    String::from_utf8_lossy(&buf[..buf.iter().position(|b| *b == b'\r').unwrap_or(0)]).into_owned();
                return Err(std::io::Error::other(format!("upgrade refused: {line}")));
            }
            buf.advance(end + 4);
            // Connected means welcomed: the server has joined us to the room
            // once its first frame (the `welcome`) is here.
            while parse_header(&buf).is_none_or(|(_, header, len)| buf.len() < header + len) {
                if stream.read_buf(&mut buf).await.map_err(step("reading the welcome"))? == 0 {
                    return Err(std::io::Error::other("closed before the welcome"));
                }
            }
            return Ok((stream, buf));
        }
        if buf.len() > 16 * 1024 {
            return Err(std::io::Error::other("handshake response too long"));
        }
    }
}

/// Reads frames until the connection ends, recording into `stats`.
/// What a subscriber saw, kept beyond one connection: the last seq (a
/// reconnect resumes after it) and the delay a `closing` asked for.
#[derive(Debug, Default)]
pub struct Seen {
    pub last_seq: Cell<Option<u64>>,
    pub reconnect_after_ms: Cell<Option<u64>>,
    /// A stall still to come (`--stall-ms`): after the first broadcast, stop reading this long.
    stall: Cell<Option<Duration>>,
}

impl Seen {
    /// A subscriber that stalls for `ms` after its first broadcast (0: never).
    pub fn stalling(ms: u64) -> Seen {
        Seen { stall: Cell::new((ms > 0).then(|| Duration::from_millis(ms))), ..Seen::default() }
    }

    /// Called after a broadcast was read: the one stall, if it is still to come.
    async fn stall_once(&self) {
        if let Some(pause) = self.stall.take() {
            tokio::time::sleep(pause).await;
        }
    }
}

thread_local! {
    /// One inflater (and its buffer) for all of a worker thread's `--deflate` subscribers.
    static INFLATER: RefCell<bullhorn::protocol::deflate::Inflater> = RefCell::default();
}

/// The largest message a subscriber inflates: a 64 KiB `data` and its envelope, with room to spare.
const MAX_MESSAGE: usize = bullhorn::client::MAX_SERVER_FRAME;

/// Reads frames until the connection ends, recording into `stats` and `seen`.
pub async fn receive(mut stream: TcpStream, mut buf: BytesMut, stats: Rc<RefCell<Stats>>, seen: Rc<Seen>) {
    loop {
        let mut broadcast = false;
        while let Some((opcode, header, len)) = parse_header(&buf) {
            if buf.len() < header + len {
                break;
            }
            let payload = &buf[header..header + len];
            match opcode {
                // RSV1: compressed (`--deflate`): inflated, then read like any text.
                0x1 if buf[0] & 0x40 != 0 => {
                    let read = INFLATER.with_borrow_mut(|inflater| {
                        inflater.inflate(payload, MAX_MESSAGE).map(|text| on_text(text, &seen, &stats))
                    });
                    match read {
                        Ok(was_broadcast) => {
                            count_bytes(&stats, was_broadcast, header + len);
                            broadcast |= was_broadcast;
                        }
                        Err(_) => return,
                    }
                }
                0x1 => {
                    let was_broadcast = on_text(payload, &seen, &stats);
                    count_bytes(&stats, was_broadcast, header + len);
                    broadcast |= was_broadcast;
                }
                0x8 => return,
                0x9 => {
                    let mut pong = vec![0x8A, 0x80 | len as u8, 0, 0, 0, 0];
                    pong.extend_from_slice(payload); // mask of zeros: masked, unchanged
                    if stream.write_all(&pong).await.is_err() {
                        return;
                    }
                }
                _ => {}
            }
            buf.advance(header + len);
        }
        if broadcast {
            seen.stall_once().await;
        }
        buf.reserve(4096);
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Reads and discards until the connection ends, counting bytes as
/// `deliveries` (the `ceiling` scenario divides by the frame size).
pub async fn sink(mut stream: TcpStream, stats: Rc<RefCell<Stats>>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => stats.borrow_mut().deliveries += n as u64,
        }
    }
}

/// A subscription that yields length-prefixed frames: native QUIC or WebTransport.
pub trait FrameStream {
    fn next_frame(&mut self) -> impl Future<Output = Result<Option<Bytes>, ClientError>>;
}

impl FrameStream for bullhorn::client::QuicStream {
    fn next_frame(&mut self) -> impl Future<Output = Result<Option<Bytes>, ClientError>> {
        bullhorn::client::QuicStream::next_frame(self)
    }
}

impl FrameStream for bullhorn::client::WtStream {
    fn next_frame(&mut self) -> impl Future<Output = Result<Option<Bytes>, ClientError>> {
        bullhorn::client::WtStream::next_frame(self)
    }
}

/// Reads frames until the stream ends, recording into `stats`.
/// (The caller has read and observed the welcome.)
pub async fn receive_frames(mut stream: impl FrameStream, stats: Rc<RefCell<Stats>>, seen: Rc<Seen>) {
    while let Ok(Some(frame)) = stream.next_frame().await {
        if on_text(&frame, &seen, &stats) {
            count_bytes(&stats, true, frame.len());
            seen.stall_once().await;
        }
    }
}

fn count_bytes(stats: &Rc<RefCell<Stats>>, broadcast: bool, bytes: usize) {
    if broadcast {
        stats.borrow_mut().broadcast_bytes += bytes as u64;
    }
}

/// A frame's opcode, header length and payload length, once the header is in `buf`.
pub fn parse_header(buf: &[u8]) -> Option<(u8, usize, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0F;
    match buf[1] & 0x7F {
        126 if buf.len() >= 4 => Some((opcode, 4, u16::from_be_bytes([buf[2], buf[3]]) as usize)),
        127 if buf.len() >= 10 => Some((opcode, 10, u64::from_be_bytes(buf[2..10].try_into().ok()?) as usize)),
        126 | 127 => None,
        n => Some((opcode, 2, n as usize)),
    }
}

/// Records one text message; true when it was a broadcast. A Pusher
/// client's channel event is one too (`--transport pusher`): it has no seq
/// to check, and its data is a JSON string, so its `t` is escaped.
pub fn on_text(text: &[u8], seen: &Seen, stats: &Rc<RefCell<Stats>>) -> bool {
    let last_seq = &seen.last_seq;
    let now = now_us();
    let mut stats = stats.borrow_mut();
    if text.starts_with(br#"{"event":""#) {
        if text.starts_with(br#"{"event":"bullhorn:lagged""#) {
            stats.lagged += number_after(text, br#"\"missed\":"#).unwrap_or(0);
            return false;
        }
        if text.starts_with(br#"{"event":"pusher:"#)
            || text.starts_with(br#"{"event":"pusher_internal:"#)
            || text.starts_with(br#"{"event":"bullhorn:"#)
        {
            return false;
        }
        count_delivery(&mut stats, now);
        if let Some(sent) = number_after(text, br#"\"t\":"#) {
            let _ = stats.latency.record(now.saturating_sub(sent).max(1));
        }
        return true;
    }
    if text.starts_with(br#"{"type":"broadcast""#) {
        let seq = number_after(text, br#""seq":"#).unwrap_or(0);
        if let Some(last) = last_seq.get()
            && seq != last + 1
        {
            stats.gaps += 1;
        }
        last_seq.set(Some(seq));
        count_delivery(&mut stats, now);
        if let Some(sent) = number_after(text, br#""t":"#) {
            let latency = now.saturating_sub(sent).max(1);
            let _ = stats.latency.record(latency);
            if let Some(per_seq) = &mut stats.per_seq {
                let entry = per_seq.entry(seq).or_insert((0, 0));
                entry.0 += 1;
                entry.1 = entry.1.max(latency);
            }
        }
        return true;
    }
    if text.starts_with(br#"{"type":"welcome""#) {
        last_seq.set(number_after(text, br#""seq":"#));
    } else if text.starts_with(br#"{"type":"lagged""#) {
        // A `lagged` stands exactly where the messages it counts would have been.
        let missed = number_after(text, br#""missed":"#).unwrap_or(0);
        stats.lagged += missed;
        last_seq.set(last_seq.get().map(|last| last + missed));
    } else if text.starts_with(br#"{"type":"closing""#) {
        seen.reconnect_after_ms.set(number_after(text, br#""reconnect_after_ms":"#));
    }
    false
}

/// One delivery at `now` (µs): counted, and placed in its second of the timeline.
fn count_delivery(stats: &mut Stats, now: u64) {
    stats.deliveries += 1;
    let second = now / 1_000_000;
    match stats.timeline.last_mut() {
        Some((at, n)) if *at == second => *n += 1,
        _ => stats.timeline.push((second, 1)),
    }
    stats.first_us = stats.first_us.min(now);
    stats.last_us = stats.last_us.max(now);
}

/// The unsigned integer right after `key` in `text`.
fn number_after(text: &[u8], key: &[u8]) -> Option<u64> {
    let start = text.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = text[start..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&text[start..start + digits]).ok()?.parse().ok()
}
