"""A small, typed client for containerd's content service over its unix socket.

Only the calls pulltrace needs, made without the generated gRPC service stubs so that any
grpcio release works; the protobuf messages come from ``pulltrace/agent/_pb``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import grpc
from google.protobuf.empty_pb2 import Empty
from google.protobuf.timestamp_pb2 import Timestamp

from pulltrace.agent._pb import content_pb2, version_pb2
from pulltrace.agent.sockets import choose, unreachable
from pulltrace.errors import SourceError

DEFAULT_NAMESPACE = "k8s.io"
_CONTENT = "/containerd.services.content.v1.Content/"
_MAX_MANIFEST_BYTES = 4 << 20


class ContainerdError(SourceError):
    """Raised by the content clients when containerd cannot be reached or refuses a call; the
    message is one line for users, ``reason`` the same without the socket's path (for
    messages that name it already)."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


@dataclass(frozen=True, slots=True)
class Ingest:
    """One in-progress download (a ``ctr content active`` row)."""

    ref: str
    expected: str
    offset: int
    total: int
    started_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class BlobInfo:
    digest: str
    size: int
    created_at: datetime
    labels: dict[str, str] = field(default_factory=dict)


class ContentStore(Protocol):
    """What the tracker needs from containerd; the real client and test doubles both fit."""

    def list_statuses(self) -> list[Ingest]: ...

    def list(self, filters: Iterable[str]) -> list[BlobInfo]: ...

    def read(self, digest: str, limit: int = ...) -> bytes: ...


def socket_path(address: str) -> str:
    """Accepts both the plain path kubelet flags use and the ``unix://`` URL form."""
    return address.removeprefix("unix://")


def _time(ts: Timestamp) -> datetime:
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, UTC)


def _info(msg: Any) -> BlobInfo:
    return BlobInfo(
        digest=msg.digest, size=msg.size, created_at=_time(msg.created_at), labels=dict(msg.labels)
    )


class ContentClient:
    """Synchronous client: the agent polls once a second, so a thread-free design is simplest."""

    def __init__(
        self, address: str, namespace: str = DEFAULT_NAMESPACE, timeout: float = 5.0
    ) -> None:
        self.path = socket_path(address)
        self.namespace = namespace
        self.timeout = timeout
        self._metadata = (("containerd-namespace", namespace),)
        # Short reconnect backoff: after a containerd restart the next poll should succeed,
        # not wait out gRPC's default two-minute backoff.
        self._channel = grpc.insecure_channel(
            f"unix://{self.path}",
            options=[
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 1000),
                ("grpc.max_receive_message_length", 16 << 20),
            ],
        )
        unary, stream = self._channel.unary_unary, self._channel.unary_stream
        self._list_statuses = unary(
            _CONTENT + "ListStatuses",
            **_codec(content_pb2.ListStatusesRequest, content_pb2.ListStatusesResponse),
        )
        self._info_call = unary(
            _CONTENT + "Info", **_codec(content_pb2.InfoRequest, content_pb2.InfoResponse)
        )
        self._list = stream(
            _CONTENT + "List",
            **_codec(content_pb2.ListContentRequest, content_pb2.ListContentResponse),
        )
        self._read = stream(
            _CONTENT + "Read",
            **_codec(content_pb2.ReadContentRequest, content_pb2.ReadContentResponse),
        )
        self._version = unary(
            "/containerd.services.version.v1.Version/Version",
            **_codec(Empty, version_pb2.VersionResponse),
        )

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> ContentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check(self) -> str:
        """Fails fast with a clear reason when the socket is missing or unreadable."""
        problem = socket_problem(self.path)
        if problem is not None:
            raise ContainerdError(unreachable(self.path, problem), problem)
        reply = self._call(self._version, Empty())
        return str(reply.version)

    def list_statuses(self) -> list[Ingest]:
        reply = self._call(self._list_statuses, content_pb2.ListStatusesRequest())
        return [
            Ingest(
                ref=s.ref,
                expected=s.expected,
                offset=s.offset,
                total=s.total,
                started_at=_time(s.started_at),
                updated_at=_time(s.updated_at),
            )
            for s in reply.statuses
        ]

    def info(self, digest: str) -> BlobInfo | None:
        try:
            reply = self._call(self._info_call, content_pb2.InfoRequest(digest=digest))
        except _NotFound:
            return None
        return _info(reply.info)

    def list(self, filters: Iterable[str]) -> list[BlobInfo]:
        """Filters are OR'ed, containerd's filter syntax within each."""
        request = content_pb2.ListContentRequest(filters=list(filters))
        return [_info(i) for reply in self._stream(self._list, request) for i in reply.info]

    def read(self, digest: str, limit: int = _MAX_MANIFEST_BYTES) -> bytes:
        request = content_pb2.ReadContentRequest(digest=digest, size=limit)
        chunks = [reply.data for reply in self._stream(self._read, request)]
        return b"".join(chunks)

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as err:
            raise _translate(err, self.path) from None

    def _stream(self, method: Any, request: Any) -> Iterator[Any]:
        try:
            yield from method(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as err:
            raise _translate(err, self.path) from None


class FollowingClient:
    """The agent's content store: a ``ContentClient`` on whichever candidate socket exists,
    replaced by ``reconnect`` when another candidate is the one now, or the socket at the same
    path is a new one (containerd deletes and recreates it when it restarts).

    gRPC reconnects a channel to the same path by itself, but never to another path, and not
    before its backoff has passed; a new channel is tried at once.
    """

    def __init__(
        self, candidates: Sequence[str], namespace: str = DEFAULT_NAMESPACE, timeout: float = 5.0
    ) -> None:
        self.candidates = tuple(candidates)
        self.namespace = namespace
        self.timeout = timeout
        self._client, self._identity = self._open()

    def _open(self) -> tuple[ContentClient, tuple[int, int] | None]:
        path = socket_path(choose(self.candidates))
        return ContentClient(path, self.namespace, self.timeout), _identity(path)

    @property
    def path(self) -> str:
        return self._client.path

    def list_statuses(self) -> list[Ingest]:
        return self._client.list_statuses()

    def list(self, filters: Iterable[str]) -> list[BlobInfo]:
        return self._client.list(filters)

    def read(self, digest: str, limit: int = _MAX_MANIFEST_BYTES) -> bytes:
        return self._client.read(digest, limit)

    def reconnect(self) -> bool:
        """After a failed call: a new channel when the socket to use is another one now.
        Whether it was replaced."""
        path = socket_path(choose(self.candidates))
        if path == self._client.path and _identity(path) == self._identity:
            return False
        self._client.close()
        self._client, self._identity = self._open()
        return True

    def diagnose(self, err: ContainerdError) -> str:
        """Why containerd could not be read, without the path: the socket's own problem when
        it has one, which says more than gRPC's connection error."""
        return socket_problem(self.path) or err.reason

    def close(self) -> None:
        self._client.close()


def socket_problem(path: str) -> str | None:
    """Only whether it exists: a permission problem comes back from the connection itself, in
    gRPC's words, and a second guess at it here could only disagree."""
    return None if os.path.exists(path) else "no such socket (is containerd running?)"


def _identity(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino)


_SOCKET_ERRORS = ("Connection refused", "Permission denied", "No such file or directory")
"""How gRPC's connection errors end (after the address, once or twice): said alone, they are
the reason."""


class _NotFound(ContainerdError):
    pass


def _translate(err: grpc.RpcError, path: str) -> ContainerdError:
    code = err.code() if isinstance(err, grpc.Call) else None
    details = ((err.details() if isinstance(err, grpc.Call) else None) or str(err)).splitlines()
    first = details[0] if details else "no details"
    if code == grpc.StatusCode.NOT_FOUND:
        return _NotFound(first)
    if code == grpc.StatusCode.UNAVAILABLE:
        reason = next((e.lower() for e in _SOCKET_ERRORS if first.endswith(e)), first)
        return ContainerdError(unreachable(path, reason), reason)
    name = code.name if code is not None else "error"
    return ContainerdError(f"containerd at {path}: {name}: {first}", f"{name}: {first}")


def _codec(request: Any, response: Any) -> dict[str, Any]:
    """A method's (de)serializers: the messages are generated, the calls are made by hand, so
    the client does not depend on the grpcio release that generated service stubs."""
    return {
        "request_serializer": request.SerializeToString,
        "response_deserializer": response.FromString,
    }
