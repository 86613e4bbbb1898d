"""A bullhorn QUIC subscriber written with aioquic, a QUIC stack independent of quinn.

Connects with ALPN bullhorn/1, checks the server certificate's SHA-256 against
the fingerprint given, sends the hello, and prints each frame it receives as
one line of JSON on stdout, until it has printed --count frames.
"""

import argparse
import asyncio
import hashlib
import json
import ssl
import struct

from aioquic.asyncio import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, StreamDataReceived
from cryptography.hazmat.primitives.serialization import Encoding


class Subscriber(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.buffer = b""
        self.frames = asyncio.Queue()

    def quic_event_received(self, event):
        if isinstance(event, StreamDataReceived):
            self.buffer += event.data
            while len(self.buffer) >= 4:
                (length,) = struct.unpack(">I", self.buffer[:4])
                if len(self.buffer) < 4 + length:
                    break
                self.frames.put_nowait(self.buffer[4 : 4 + length])
                self.buffer = self.buffer[4 + length :]
            if event.end_stream:
                self.frames.put_nowait(None)
        elif isinstance(event, ConnectionTerminated):
            self.frames.put_nowait(None)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--fingerprint", required=True)
    parser.add_argument("--room", default="gifts")
    parser.add_argument("--count", type=int, default=2)
    args = parser.parse_args()

    config = QuicConfiguration(is_client=True, alpn_protocols=["bullhorn/1"], server_name="localhost")
    config.verify_mode = ssl.CERT_NONE  # pinned by fingerprint below instead
    async with connect("127.0.0.1", args.port, configuration=config, create_protocol=Subscriber) as client:
        der = client._quic.tls._peer_certificate.public_bytes(Encoding.DER)
        if hashlib.sha256(der).hexdigest() != args.fingerprint.strip().lower():
            raise SystemExit("certificate does not match the pinned fingerprint")
        stream = client._quic.get_next_available_stream_id()
        hello = json.dumps({"type": "hello", "app": "demo", "rooms": [args.room]}).encode()
        client._quic.send_stream_data(stream, struct.pack(">I", len(hello)) + hello)
        client.transmit()
        for _ in range(args.count):
            frame = await asyncio.wait_for(client.frames.get(), timeout=30)
            if frame is None:
                raise SystemExit("stream ended early")
            print(frame.decode(), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
