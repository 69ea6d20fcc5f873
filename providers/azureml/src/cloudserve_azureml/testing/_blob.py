"""The blob-storage half of the fake: enough of the Blob REST API for azure-storage-blob.

Covers what the Azure ML SDK and cloudserve do with the workspace's default datastore: upload a
file (single PUT or staged blocks), set metadata, read properties, download (ranged), list by
prefix and delete.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

Response = tuple[int, dict[str, str], bytes | str]

BLOB_HOST = re.compile(r"https://([a-z0-9]+)\.blob\.core\.windows\.net/.*")


@dataclass
class Blob:
    """One stored blob."""

    data: bytes
    metadata: dict[str, str] = field(default_factory=dict)
    modified: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def etag(self) -> str:
        return '"0x' + hashlib.md5(self.data).hexdigest()[:16].upper() + '"'

    def headers(self) -> dict[str, str]:
        out = {
            "ETag": self.etag,
            "Last-Modified": format_datetime(self.modified, usegmt=True),
            "x-ms-blob-type": "BlockBlob",
            "x-ms-creation-time": format_datetime(self.modified, usegmt=True),
            "Content-MD5": base64.b64encode(hashlib.md5(self.data).digest()).decode(),
            "Content-Type": "application/octet-stream",
        }
        out.update({f"x-ms-meta-{k}": v for k, v in self.metadata.items()})
        return out


class BlobStore:
    """Blobs keyed by (account, container, name); staged blocks until a block list commits."""

    def __init__(self) -> None:
        self.blobs: dict[tuple[str, str, str], Blob] = {}
        self._blocks: dict[tuple[str, str, str], dict[str, bytes]] = {}

    # -- helpers for the fake and for tests ------------------------------------------------

    def put(self, account: str, container: str, name: str, data: bytes) -> None:
        """Store a blob directly (used by the fake's data capture)."""
        self.blobs[(account, container, name)] = Blob(data)

    def under(self, account: str, container: str, prefix: str) -> dict[str, bytes]:
        """Blob name → content for every blob whose name starts with ``prefix``."""
        return {
            n: b.data
            for (a, c, n), b in sorted(self.blobs.items())
            if a == account and c == container and n.startswith(prefix)
        }

    # -- the REST surface ------------------------------------------------------------------

    def handle(self, method: str, url: str, headers: Any, body: bytes) -> Response:
        status, out, content = self._handle(method, url, headers, body)
        return status, out, (b"" if method == "HEAD" else content)

    def _handle(self, method: str, url: str, headers: Any, body: bytes) -> Response:
        parts = urlsplit(url)
        account = parts.netloc.split(".")[0]
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        path = unquote(parts.path).lstrip("/")
        container, _, name = path.partition("/")
        base = {"x-ms-request-id": "fake", "x-ms-version": "2021-08-06"}
        if not name:
            return self._container(method, account, container, query, base)
        key = (account, container, name)
        comp = query.get("comp")
        if method == "PUT":
            return self._put(key, comp, query, headers, body, base)
        blob = self.blobs.get(key)
        if blob is None:
            return 404, {**base, "x-ms-error-code": "BlobNotFound"}, _error_xml("BlobNotFound")
        if method == "HEAD":
            return 200, {**base, **blob.headers(), "Content-Length": str(len(blob.data))}, b""
        if method == "GET":
            return self._download(blob, headers, base)
        if method == "DELETE":
            del self.blobs[key]
            return 202, base, b""
        return 405, base, b""

    def _container(
        self, method: str, account: str, container: str, query: dict[str, str], base: dict
    ) -> Response:
        if method in ("GET", "HEAD") and query.get("comp") != "list":
            return 200, {**base, "ETag": '"0x1"', "Last-Modified": _now_http()}, b""
        if method == "PUT":
            return 201, base, b""
        prefix = query.get("prefix", "")
        items = "".join(
            f"<Blob><Name>{escape(n)}</Name><Properties>"
            f"<Last-Modified>{format_datetime(b.modified, usegmt=True)}</Last-Modified>"
            f"<Etag>{b.etag}</Etag><Content-Length>{len(b.data)}</Content-Length>"
            f"<Content-Type>application/octet-stream</Content-Type><BlobType>BlockBlob</BlobType>"
            f"</Properties><Metadata>"
            + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in b.metadata.items())
            + "</Metadata></Blob>"
            for (a, c, n), b in sorted(self.blobs.items())
            if a == account and c == container and n.startswith(prefix)
        )
        xml = (
            '<?xml version="1.0" encoding="utf-8"?>'
            f'<EnumerationResults ServiceEndpoint="https://{account}.blob.core.windows.net/" '
            f'ContainerName="{container}"><Prefix>{escape(prefix)}</Prefix>'
            f"<Blobs>{items}</Blobs><NextMarker /></EnumerationResults>"
        )
        return 200, {**base, "Content-Type": "application/xml"}, xml

    def _put(
        self,
        key: tuple[str, str, str],
        comp: str | None,
        query: dict[str, str],
        headers: Any,
        body: bytes,
        base: dict,
    ) -> Response:
        meta = {
            k[len("x-ms-meta-") :]: v
            for k, v in headers.items()
            if k.lower().startswith("x-ms-meta-")
        }
        if comp == "block":
            self._blocks.setdefault(key, {})[query["blockid"]] = body
            return 201, base, b""
        if comp == "blocklist":
            staged = self._blocks.pop(key, {})
            ids = re.findall(r"<(?:Latest|Uncommitted|Committed)>([^<]+)</", body.decode())
            self.blobs[key] = Blob(b"".join(staged[i] for i in ids), meta)
        elif comp == "metadata":
            blob = self.blobs.get(key)
            if blob is None:
                return 404, {**base, "x-ms-error-code": "BlobNotFound"}, _error_xml("BlobNotFound")
            blob.metadata = meta
            return 200, {**base, "ETag": blob.etag, "Last-Modified": _now_http()}, b""
        else:
            self.blobs[key] = Blob(body, meta)
        blob = self.blobs[key]
        return (
            201,
            {
                **base,
                "ETag": blob.etag,
                "Last-Modified": _now_http(),
                "x-ms-request-server-encrypted": "true",
            },
            b"",
        )

    def _download(self, blob: Blob, headers: Any, base: dict) -> Response:
        rng = headers.get("x-ms-range") or headers.get("Range")
        total = len(blob.data)
        out = {**base, **blob.headers()}
        if not rng:
            return 200, {**out, "Content-Length": str(total)}, blob.data
        m = re.match(r"bytes=(\d+)-(\d*)", rng)
        start = int(m.group(1)) if m else 0
        end = min(int(m.group(2)) if m and m.group(2) else total - 1, total - 1)
        if total == 0:
            return 200, {**out, "Content-Length": "0"}, b""
        if start >= total:
            return 416, {**base, "x-ms-error-code": "InvalidRange"}, _error_xml("InvalidRange")
        chunk = blob.data[start : end + 1]
        out.update(
            {"Content-Range": f"bytes {start}-{end}/{total}", "Content-Length": str(len(chunk))}
        )
        return 206, out, chunk


def _now_http() -> str:
    return format_datetime(datetime.now(timezone.utc), usegmt=True)


def _error_xml(code: str) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f"<Error><Code>{code}</Code><Message>{code}</Message></Error>"
    )
