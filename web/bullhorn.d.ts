// Type declarations for /sdk/bullhorn.js (and window.Bullhorn from /sdk/bullhorn.global.js).

/** Messages of contract §3, as the page receives them. */
export interface Broadcast {
  type: "broadcast";
  room: string;
  seq: number;
  /** The server's accept time, ms since the Unix epoch. */
  ts: number;
  /** The admin's JSON, as sent. */
  data: unknown;
}

export interface Lagged {
  type: "lagged";
  room: string;
  missed: number;
  /** "slow", "conflated" and "expired" come from the server; "gap" is a jump this client saw unannounced. */
  reason: "slow" | "conflated" | "expired" | "gap";
}

/** The room's pinned message (contract §9), sent right after `welcome` to every member that joins. */
export interface Sticky {
  type: "sticky";
  room: string;
  /** The pinned broadcast's seq (not a position in the stream). */
  seq: number;
  ts: number;
  data: unknown;
}

/** The room's online count (contract §9), when the room has `occupancy_interval_ms`. */
export interface Occupancy {
  type: "occupancy";
  room: string;
  online: number;
}

export interface Closing {
  type: "closing";
  reason: "room_destroyed" | "server_draining" | "slow_consumer";
  reconnect_after_ms?: number;
}

export interface ServerError {
  type: "error";
  code: string;
  message: string;
}

export type State =
  | "connecting"
  | "open"
  | "waiting"
  | "reconnecting"
  | "closed"
  | "room_destroyed"
  | "failed";

export interface ConnectOptions {
  /**
   * The socket API to use: "websocket", or a mini program's "wx" (WeChat), "uni" (uni-app) or "my" (Alipay).
   * By default WebSocket where it exists, else the first of wx, uni, my present. Mini programs need `url`.
   */
  socket?: "websocket" | "wx" | "uni" | "my";
  /** Viewer base URL, e.g. "wss://live.example.com"; defaults to this page's host. */
  url?: string;
  /**
   * "auto" (default): WebTransport where the browser has it, falling back to WebSocket when it
   * fails or is not answered within webtransportTimeoutMs, and to Server-Sent Events when
   * WebSocket closes before the server's first message (each fallback is remembered for the
   * browser session); or only "websocket", only "webtransport", or only "sse".
   */
  transport?: "auto" | "websocket" | "webtransport" | "sse";
  /** The QUIC listener as browsers reach it, e.g. "https://live.example.com:4433"; defaults to the viewer host at webtransportPort. */
  webtransportUrl?: string;
  /** Default 4433 (the contract's QUIC port). */
  webtransportPort?: number;
  /** Hex SHA-256 of a self-signed development certificate (the server's dev-cert.sha256), accepted by hash. */
  certificateHash?: string;
  /** How long WebTransport may take to get the server's first message before falling back; default 3000. */
  webtransportTimeoutMs?: number;
  /** App id; default "demo". */
  app?: string;
  /** Rooms to subscribe to. */
  rooms: string[];
  /** First backoff cap in ms (default 500), doubling up to maxBackoffMs (default 30000). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Ping after this long without a word from the server (default 10000): a restarted server answers with a reset. */
  pingAfterMs?: number;
  /** Reconnect after this long without a word, pongs included (default 30000). */
  silentTimeoutMs?: number;
  onMessage?: (message: Broadcast) => void;
  onLagged?: (lagged: Lagged) => void;
  onSticky?: (sticky: Sticky) => void;
  onOccupancy?: (occupancy: Occupancy) => void;
  onState?: (state: State) => void;
  onClosing?: (closing: Closing) => void;
  onReconnect?: (next: { delayMs: number; attempt: number }) => void;
  onError?: (error: ServerError) => void;
  /**
   * WebTransport failed or timed out: this connection uses WebSocket, and so do the session's next
   * ones unless WebTransport had worked on this page before (a server restarting, not UDP blocked);
   * or WebSocket closed before the server's first message on a page where it never worked: this
   * connection and the session's next ones use Server-Sent Events (`transport` says which).
   */
  onFallback?: (info: { reason: string; transport: "websocket" | "sse" }) => void;
}

export interface Connection {
  /** Closes for good: no reconnect. */
  close(): void;
  /** The last seq seen in a room (what a reconnect resumes after). */
  lastSeq(room: string): number | undefined;
  readonly state: State;
  /** The transport of the connection in use, or null between connections. */
  readonly transport: "webtransport" | "websocket" | "sse" | "wx" | "uni" | "my" | null;
}

export const VERSION: string;
export function connect(options: ConnectOptions): Connection;

declare global {
  interface Window {
    Bullhorn: { connect: typeof connect; VERSION: string };
  }
}
