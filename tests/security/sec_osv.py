"""A local OSV-compatible vulnerability service: `POST /v1/query` as https://api.osv.dev answers it,
from the records in fixtures/security/osv/ (matched by package name and ECOSYSTEM version ranges).

`mode` makes it misbehave the way a real service does: "error" answers HTTP 500.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version


def _affected(record: dict[str, Any], name: str, version: str) -> bool:
    try:
        wanted = Version(version)
    except InvalidVersion:
        return False
    for affected in record.get("affected", []):
        package = affected.get("package", {})
        if package.get("ecosystem") != "PyPI" or package.get("name", "").lower() != name.lower():
            continue
        if version in affected.get("versions", []):
            return True
        for rng in affected.get("ranges", []):
            if rng.get("type") != "ECOSYSTEM":
                continue
            inside = False
            for event in rng.get("events", []):
                if "introduced" in event:
                    inside = event["introduced"] == "0" or wanted >= Version(event["introduced"])
                elif "fixed" in event and inside and wanted >= Version(event["fixed"]):
                    inside = False
            if inside:
                return True
    return False


class OsvFixtureServer:
    def __init__(self, records: Path) -> None:
        self.records = [json.loads(p.read_text()) for p in sorted(records.glob("*.json"))]
        self.mode = "ok"
        self.queries: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                server.queries.append(body)
                if self.path != "/v1/query":
                    return self._reply(404, {"code": 5, "message": "Not Found"})
                if server.mode == "error":
                    return self._reply(500, {"code": 13, "message": "internal error"})
                name, version = body.get("package", {}).get("name", ""), body.get("version", "")
                vulns = [r for r in server.records if _affected(r, name, version)]
                self._reply(200, {"vulns": vulns} if vulns else {})

            def _reply(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1/query"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
