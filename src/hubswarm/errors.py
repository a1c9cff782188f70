"""The one exception tree of hubswarm.

Every error that crosses a layer boundary is a ``HubswarmError``; aiohttp, OSError and
fastbencode exceptions are translated with ``raise ... from exc`` where they are caught.
The CLI turns any ``HubswarmError`` into one line on stderr and exit code 1.

    HubswarmError
    ├── ConfigError                  bad command-line value, config or scenario file
    │   └── ScenarioError            a lab scenario file (names the field)
    ├── ProtocolError                bytes that break a protocol
    │   ├── BencodeError             malformed or non-canonical bencode
    │   ├── MetainfoError            bad .torrent or magnet link
    │   ├── RemoteProtocolError      the other side broke the protocol (connection -> ERROR)
    │   ├── LocalProtocolError       we misused a protocol object (a bug of ours)
    │   ├── TrackerError             tracker failure reason or bad announce response
    │   └── KRPCError                DHT message error (BEP 5 codes 201-204)
    ├── StorageError                 files on our disk
    │   ├── UnsafePathError          a name or path that would escape its folder
    │   ├── DiskFullError            ENOSPC / EDQUOT
    │   ├── UploadTooLargeError      an upload exceeds the hub's --max-upload (413)
    │   ├── DigestMismatchError      an upload does not match its announced SHA-256 (400)
    │   └── PieceHashError           a piece failed its SHA-1 check
    ├── HubError                     the client-server hub, seen from a client
    │   ├── ServerUnreachableError
    │   ├── AuthError                401 / 403
    │   ├── NotFoundError            404
    │   ├── ChecksumMismatchError    downloaded bytes do not match the server's SHA-256
    │   └── ServerError              any other unexpected status
    ├── SwarmError                   the peer-to-peer side
    │   ├── NoPeersError             nobody to download from before the deadline
    │   └── PeerBannedError
    ├── DHTError
    └── LabError                     the emulated network and the runs
        └── NetnsError               ip / tc failed
"""

from __future__ import annotations


class HubswarmError(Exception):
    """Root of every error hubswarm raises on purpose."""


# --- configuration -------------------------------------------------------------------------


class ConfigError(HubswarmError):
    """A command-line value, configuration or input file is invalid."""


class ScenarioError(ConfigError):
    """A lab scenario file is invalid; ``field`` names the offending key."""

    def __init__(self, message: str, *, field: str | None = None, path: str | None = None) -> None:
        self.field = field
        self.path = path
        where = f"{path}: " if path else ""
        what = f"[{field}] " if field else ""
        super().__init__(f"{where}{what}{message}")


# --- protocols ------------------------------------------------------------------------------


class ProtocolError(HubswarmError):
    """Bytes that break a protocol (ours or the peer's)."""


class BencodeError(ProtocolError):
    """Malformed or non-canonical bencode."""


class MetainfoError(ProtocolError):
    """A .torrent file or magnet link is invalid."""


class RemoteProtocolError(ProtocolError):
    """The remote side violated the protocol; the connection must be closed."""

    def __init__(self, message: str, *, peer: str | None = None) -> None:
        self.peer = peer
        super().__init__(message)


class LocalProtocolError(ProtocolError):
    """We used a protocol object in a way its state does not allow (a bug of ours)."""


class TrackerError(ProtocolError):
    """A tracker answered with a failure reason or an invalid response."""


class KRPCError(ProtocolError):
    """A DHT KRPC message is invalid, or a node answered with a KRPC error."""

    def __init__(self, message: str, *, code: int = 203) -> None:
        self.code = code
        super().__init__(message)


# --- storage --------------------------------------------------------------------------------


class StorageError(HubswarmError):
    """Something went wrong with files on our own disk."""


class UnsafePathError(StorageError):
    """A file name or path would escape its folder or is not allowed."""


class NameConflictError(StorageError):
    """A path is taken by the other kind (a file where a folder is needed, or the reverse),
    or a folder to delete is not empty."""


class DiskFullError(StorageError):
    """The disk (or quota) is full; the raiser says whether partial data was kept."""


class UploadTooLargeError(StorageError):
    """An upload exceeds the configured maximum size; partial data was removed."""


class DigestMismatchError(StorageError):
    """Uploaded bytes do not match the SHA-256 the sender announced; nothing was stored."""


class PieceHashError(StorageError):
    """A piece failed its SHA-1 check."""

    def __init__(self, piece_index: int, message: str | None = None) -> None:
        self.piece_index = piece_index
        super().__init__(message or f"piece {piece_index} failed its hash check")


# --- hub (client-server) --------------------------------------------------------------------


class HubError(HubswarmError):
    """An error talking to the hub, as a client sees it."""

    def __init__(self, message: str, *, status: int | None = None, url: str | None = None) -> None:
        self.status = status
        self.url = url
        super().__init__(message)


class ServerUnreachableError(HubError):
    """The server could not be reached."""


class AuthError(HubError):
    """The server refused the request: 401 (no/invalid token) or 403 (role too low)."""


class NotFoundError(HubError):
    """The server has no such file (404)."""


class ChecksumMismatchError(HubError):
    """The downloaded bytes do not match the server's SHA-256."""


class ServerError(HubError):
    """The server answered with an unexpected status."""


# --- swarm (peer-to-peer) -------------------------------------------------------------------


class SwarmError(HubswarmError):
    """An error of the peer-to-peer side."""


class NoPeersError(SwarmError):
    """No peer could supply data before the deadline."""


class PeerBannedError(SwarmError):
    """A peer was banned (for example after sending corrupt pieces)."""


class DHTError(HubswarmError):
    """The DHT node failed (bind, bootstrap, routing-table file)."""


# --- lab ------------------------------------------------------------------------------------


class LabError(HubswarmError):
    """The lab could not run a scenario."""


class NetnsError(LabError):
    """Creating or shaping the emulated network failed."""
