"""Named caps and defaults, each with its reason or source.

Subsystems keep their own constants here so that every limit on untrusted input can be
found in one place. Add new ones to the section of their subsystem.
"""

from __future__ import annotations

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

# --- bencode ---------------------------------------------------------------------------------
# Real .torrent files nest 4-6 levels (info -> files -> list -> dict -> path list).
# 64 leaves room for any honest producer and stops recursion bombs.
BENCODE_MAX_DEPTH = 64
# A 1 TiB torrent with 16 KiB pieces has ~1.3 GB of hashes; the largest real .torrent files
# are tens of MiB. 64 MiB is a generous ceiling for any single bencoded document we parse.
BENCODE_MAX_SIZE = 64 * MIB

# --- metainfo --------------------------------------------------------------------------------
# BEP 3 suggests powers of two; libtorrent accepts 16 KiB .. 128 MiB.
PIECE_LENGTH_MIN = 16 * KIB
PIECE_LENGTH_MAX = 128 * MIB
# BEP 9: metadata is transferred in 16 KiB pieces; libtorrent caps metadata at 4 MiB by default
# (max_metadata_size), we allow 8 MiB.
METADATA_PIECE_SIZE = 16 * KIB
METADATA_MAX_SIZE = 8 * MIB

# --- peer wire (BEP 3) -----------------------------------------------------------------------
# Blocks are 16 KiB; common clients close a connection that requests more (libtorrent, aria2).
BLOCK_SIZE = 16 * KIB
# The largest legitimate message is a piece message: 9 bytes of header + one block.
# A bitfield of a 1 TiB torrent with 16 KiB pieces is 8 MiB; extended messages carry
# metadata pieces of 16 KiB. 1 MiB + slack covers everything that honest peers send except
# gigantic bitfields, which we allow separately.
WIRE_MAX_MESSAGE = BLOCK_SIZE + 13 + 64 * KIB
WIRE_MAX_BITFIELD = 8 * MIB + 1
# libtorrent: request queue sized for 3 s of transfer, up to 500 outstanding; accepts 2000 in.
MAX_OUTSTANDING_REQUESTS_OUT = 500
MAX_INCOMING_REQUEST_QUEUE = 2000
HANDSHAKE_TIMEOUT = 10.0
# BEP 3: keep-alives are sent every two minutes; peers time out after ~2 minutes of silence.
KEEPALIVE_INTERVAL = 120.0
PEER_IDLE_TIMEOUT = 180.0

# --- choking (BEP 3 / libtorrent defaults) -----------------------------------------------------
UNCHOKE_SLOTS = 4
CHOKE_INTERVAL = 10.0
OPTIMISTIC_INTERVAL = 30.0
SNUB_TIMEOUT = 60.0

# --- tracker (BEP 3, BEP 23) -----------------------------------------------------------------
TRACKER_DEFAULT_INTERVAL = 1800
TRACKER_DEFAULT_NUMWANT = 50
TRACKER_MAX_NUMWANT = 200
# A compact response of 200 peers is 1.2 KB; 1 MiB is far beyond any honest tracker.
TRACKER_MAX_RESPONSE = 1 * MIB

# --- hub (client-server) ---------------------------------------------------------------------
# ext4 and most filesystems cap a file name at 255 bytes.
HUB_MAX_NAME_BYTES = 255
HUB_DEFAULT_MAX_UPLOAD = 64 * GIB
HUB_CHUNK = 256 * KIB
# Slow-loris: nginx's client_header_timeout and client_body_timeout default to 60 s.
HUB_READ_TIMEOUT = 60.0

# --- DHT (BEP 5) -----------------------------------------------------------------------------
DHT_K = 8
DHT_ALPHA = 3
# UDP datagrams larger than this are not KRPC (libtorrent uses 1500-byte buffers).
DHT_MAX_DATAGRAM = 1500
DHT_TOKEN_ROTATE = 300.0
