"""The Cloud Storage JSON API routes google-cloud-storage uses: buckets, objects, uploads.

Buckets exist implicitly (any name answers); objects live in memory. Uploads work in both
``multipart`` and ``resumable`` form, downloads carry ``x-goog-hash`` so the client's checksum
check passes.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.parser import BytesParser
from typing import Any
from urllib.parse import quote, unquote

import google_crc32c
import orjson

from cloudserve_vertex.testing._http import ApiError, Reply, json_reply

_BUCKET = re.compile(r"^/storage/v1/b/([^/]+)$")
_OBJECTS = re.compile(r"^/storage/v1/b/([^/]+)/o$")
_OBJECT = re.compile(r"^/storage/v1/b/([^/]+)/o/(.+)$")
_UPLOAD = re.compile(r"^/upload/storage/v1/b/([^/]+)/o$")
_DOWNLOAD = re.compile(r"^/download/storage/v1/b/([^/]+)/o/(.+)$")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class StoredObject:
    """One object: its bytes and the metadata GCS reports."""

    bucket: str
    name: str
    data: bytes
    content_type: str
    generation: int
    created: str = field(default_factory=_now)

    def resource(self) -> dict[str, Any]:
        crc = google_crc32c.Checksum(self.data).digest()
        return {
            "kind": "storage#object",
            "id": f"{self.bucket}/{self.name}/{self.generation}",
            "name": self.name,
            "bucket": self.bucket,
            "generation": str(self.generation),
            "metageneration": "1",
            "contentType": self.content_type,
            "size": str(len(self.data)),
            "md5Hash": base64.b64encode(hashlib.md5(self.data).digest()).decode(),
            "crc32c": base64.b64encode(crc).decode(),
            "timeCreated": self.created,
            "updated": self.created,
            "storageClass": "STANDARD",
        }

    def hash_header(self) -> str:
        r = self.resource()
        return f"crc32c={r['crc32c']},md5={r['md5Hash']}"


class FakeGCS:
    """In-memory buckets and objects behind the GCS JSON API."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], StoredObject] = {}
        self._generation = itertools.count(1)
        self._sessions: dict[str, dict[str, Any]] = {}
        self._lock = threading.RLock()

    # -- direct access (used by the Vertex routes and by tests) ---------------------------------

    def put(self, bucket: str, name: str, data: bytes, content_type: str = "") -> StoredObject:
        with self._lock:
            obj = StoredObject(
                bucket,
                name,
                data,
                content_type or "application/octet-stream",
                next(self._generation),
            )
            self.objects[(bucket, name)] = obj
            return obj

    def get(self, bucket: str, name: str) -> StoredObject | None:
        with self._lock:
            return self.objects.get((bucket, name))

    def list_objects(self, bucket: str, prefix: str = "") -> list[StoredObject]:
        with self._lock:
            return sorted(
                (o for (b, n), o in self.objects.items() if b == bucket and n.startswith(prefix)),
                key=lambda o: o.name,
            )

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        with self._lock:
            doomed = [k for k in self.objects if k[0] == bucket and k[1].startswith(prefix)]
            for k in doomed:
                del self.objects[k]
            return len(doomed)

    def read_uri(self, uri: str) -> list[StoredObject]:
        """Objects named by ``gs://bucket/path`` (a prefix, or a ``*`` wildcard at the end)."""
        bucket, _, path = uri.removeprefix("gs://").partition("/")
        exact = self.get(bucket, path)
        if exact is not None:
            return [exact]
        return self.list_objects(bucket, path.rstrip("*"))

    # -- HTTP --------------------------------------------------------------------------------

    def handles(self, path: str) -> bool:
        return path.startswith(("/storage/v1/", "/upload/storage/v1/", "/download/storage/v1/"))

    def handle(
        self, method: str, path: str, query: dict[str, str], headers: Any, body: bytes
    ) -> Reply:
        if m := _BUCKET.match(path):
            return json_reply(
                {"kind": "storage#bucket", "id": m[1], "name": m[1], "location": "US"}
            )
        if method == "GET" and (m := _OBJECTS.match(path)):
            return self._list(m[1], query)
        if m := _DOWNLOAD.match(path):
            return self._download(m[1], unquote(m[2]))
        if m := _OBJECT.match(path):
            return self._object(method, m[1], unquote(m[2]), query)
        if m := _UPLOAD.match(path):
            return self._upload(method, m[1], query, headers, body)
        raise ApiError(404, f"no storage route for {method} {path}")

    def _list(self, bucket: str, query: dict[str, str]) -> Reply:
        prefix, delimiter = query.get("prefix", ""), query.get("delimiter")
        items, prefixes = [], set()
        for obj in self.list_objects(bucket, prefix):
            rest = obj.name[len(prefix) :]
            if delimiter and delimiter in rest:
                prefixes.add(prefix + rest.split(delimiter, 1)[0] + delimiter)
            else:
                items.append(obj.resource())
        out: dict[str, Any] = {"kind": "storage#objects", "items": items}
        if prefixes:
            out["prefixes"] = sorted(prefixes)
        return json_reply(out)

    def _object(self, method: str, bucket: str, name: str, query: dict[str, str]) -> Reply:
        obj = self.get(bucket, name)
        if obj is None:
            raise ApiError(404, f"No such object: {bucket}/{name}")
        if method == "DELETE":
            with self._lock:
                self.objects.pop((bucket, name), None)
            return Reply(204)
        if query.get("alt") == "media":
            return self._download(bucket, name)
        return json_reply(obj.resource())

    def _download(self, bucket: str, name: str) -> Reply:
        obj = self.get(bucket, name)
        if obj is None:
            raise ApiError(404, f"No such object: {bucket}/{name}")
        return Reply(
            200,
            obj.data,
            {
                "Content-Type": obj.content_type,
                "x-goog-hash": obj.hash_header(),
                "x-goog-generation": str(obj.generation),
                "x-goog-stored-content-length": str(len(obj.data)),
            },
        )

    def _upload(
        self, method: str, bucket: str, query: dict[str, str], headers: Any, body: bytes
    ) -> Reply:
        kind = query.get("uploadType")
        if kind == "multipart":
            meta, data, ctype = _parse_multipart(headers.get("content-type", ""), body)
            return json_reply(self.put(bucket, meta["name"], data, ctype).resource())
        if kind == "resumable" and method == "POST":
            upload_id = f"up{next(self._generation)}"
            meta = orjson.loads(body or b"{}")
            name = meta.get("name") or query.get("name")
            self._sessions[upload_id] = {
                "name": name,
                "data": b"",
                "ctype": headers.get("x-upload-content-type", ""),
            }
            location = (
                f"/upload/storage/v1/b/{quote(bucket)}/o?uploadType=resumable&upload_id={upload_id}"
            )
            return Reply(200, b"", {"Location": location})
        if kind == "resumable":
            return self._resumable_chunk(bucket, query["upload_id"], headers, body)
        raise ApiError(400, f"unsupported uploadType {kind!r}")

    def _resumable_chunk(self, bucket: str, upload_id: str, headers: Any, body: bytes) -> Reply:
        session = self._sessions.get(upload_id)
        if session is None:
            raise ApiError(404, f"no upload session {upload_id}")
        session["data"] += body
        total = (headers.get("content-range") or "").rpartition("/")[2]
        if total != "*" and total and int(total) == len(session["data"]):
            del self._sessions[upload_id]
            obj = self.put(bucket, session["name"], session["data"], session["ctype"])
            return json_reply(obj.resource())
        return Reply(308, b"", {"Range": f"bytes=0-{len(session['data']) - 1}"})


def _parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, Any], bytes, str]:
    """The JSON metadata part and the media part of a ``multipart/related`` upload."""
    msg = BytesParser().parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    parts: Any = msg.get_payload()
    if not isinstance(parts, list) or len(parts) != 2:
        raise ApiError(400, "multipart upload needs a metadata part and a media part")
    meta = orjson.loads(parts[0].get_payload(decode=True))
    media: bytes = parts[1].get_payload(decode=True) or b""
    return meta, media, str(parts[1].get_content_type())
