"""Pusher's official server library (PyPI `pusher`, unmodified) against a
bullhorn admin listener: tests/pusher_api.rs runs one command per call and
reads its JSON answer from stdout.

    server_lib.py HOST PORT APP_ID KEY SECRET trigger CHANNELS EVENT DATA
    server_lib.py HOST PORT APP_ID KEY SECRET batch JSON_LIST
    server_lib.py HOST PORT APP_ID KEY SECRET channels [PREFIX]
    server_lib.py HOST PORT APP_ID KEY SECRET channel CHANNEL

An error the library raises is printed as {"error": class name, "message": text}.
"""
import json
import sys

import pusher


def main():
    host, port, app_id, key, secret, command, *args = sys.argv[1:]
    client = pusher.Pusher(app_id=app_id, key=key, secret=secret, host=host, port=int(port), ssl=False)
    try:
        if command == "trigger":
            channels, event, data = args
            out = client.trigger(channels.split(","), event, data)
        elif command == "batch":
            out = client.trigger_batch(json.loads(args[0]))
        elif command == "channels":
            prefix = args[0] if args else None
            out = client.channels_info(prefix_filter=prefix, attributes=["subscription_count"])
        elif command == "channel":
            out = client.channel_info(args[0], attributes=["subscription_count"])
        else:
            raise SystemExit(f"unknown command {command}")
    except Exception as error:  # the library's own error classes
        out = {"error": type(error).__name__, "message": str(error)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
