"""`make serve`: the HTTP API on 127.0.0.1:3000, like `sam local start-api`, backed by the
Gainsight sandbox and a local SSM, so an SDK can be pointed at it."""

from __future__ import annotations

import argparse
import base64
import json
import os
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from devtools.local import DEMO_WRITE_KEY, LambdaContext, invoke

_invoke_lock = threading.Lock()  # one Lambda container handles one request at a time


class ApiGatewayHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._proxy("GET")

    def do_POST(self) -> None:
        self._proxy("POST")

    def _proxy(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = urlsplit(self.path).path
        headers = dict(self.headers.items())
        event = {
            "resource": path,
            "path": path,
            "httpMethod": method,
            "headers": headers,
            "multiValueHeaders": {key: [value] for key, value in headers.items()},
            "queryStringParameters": None,
            "requestContext": {"requestId": str(uuid.uuid4()), "resourcePath": path, "httpMethod": method},
            # API Gateway passes binary (gzip) bodies base64-encoded.
            "body": base64.b64encode(raw).decode() if raw else None,
            "isBase64Encoded": bool(raw),
        }
        with _invoke_lock:
            response = invoke(event, LambdaContext())
        body = (response.get("body") or "").encode()
        self.send_response(response["statusCode"])
        for key, value in (response.get("headers") or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class LocalApi:
    """The local API in a background thread."""

    def __init__(self, port: int = 3000) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", port), ApiGatewayHandler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="local-api", daemon=True)

    def __enter__(self) -> LocalApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def ready_curl(url: str) -> str:
    """A request to paste once the API is ready."""
    body = '{"event": "Ticket Closed", "userId": "u1", "properties": {"ticketId": "T-1"}}'
    return f"curl -s -u {DEMO_WRITE_KEY}: {url}/v1/track -H 'Content-Type: application/json' -d '{body}'"


def _wait_until_answering(url: str, *, attempts: int = 50) -> None:
    """Return once GET /health answers through the handler: listening, and the handler imported."""
    for _ in range(attempts):
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the local API on {url} did not answer /health")


def main() -> None:
    from devtools.gainsight_sandbox import Sandbox
    from devtools.local import drain, moto_aws, quiet_powertools, seed_parameters

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args()
    if not os.environ.get("VERBOSE"):
        quiet_powertools()
    with Sandbox() as sandbox, moto_aws(), LocalApi(args.port) as api:
        seed_parameters(sandbox.url)
        _wait_until_answering(api.url)
        print(f"Local API on {api.url} (write key {DEMO_WRITE_KEY!r}); POST {api.url}/v1/batch")
        print(f"Gainsight sandbox state: {sandbox.url}/_sandbox/state")
        print(f"Ready. Try:\n  {ready_curl(api.url)}\nCtrl-C to stop.", flush=True)
        try:
            while True:  # the drain's schedule, compressed
                time.sleep(3)
                with _invoke_lock:
                    drain()
        except KeyboardInterrupt:
            print(json.dumps(sandbox.state.snapshot()["calls"]))


if __name__ == "__main__":
    main()
