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
# libtorrent's bdecode stops at int64 (19 digits); Python's int() refuses more than 4300 digits
# with a bare ValueError and is quadratic in the digit count. 64 digits is far beyond any honest
# producer and keeps integer parsing cheap.
BENCODE_MAX_INT_DIGITS = 64

# --- metainfo --------------------------------------------------------------------------------
# BEP 3 suggests powers of two; libtorrent accepts 16 KiB .. 128 MiB.
PIECE_LENGTH_MIN = 16 * KIB
PIECE_LENGTH_MAX = 128 * MIB
# BEP 9: metadata is transferred in 16 KiB pieces; libtorrent caps metadata at 4 MiB by default
# (max_metadata_size), we allow 8 MiB.
METADATA_PIECE_SIZE = 16 * KIB
METADATA_MAX_SIZE = 8 * MIB
# Peers read from one ut_pex list (BEP 11: senders send at most 50 added and 50 dropped);
# the rest of an oversized list is ignored, not an error.
PEX_MAX_PEERS = 200
# A magnet link is typed or pasted by a user; browsers cap URLs near 64 KiB (Chromium: 2 MiB,
# but no honest magnet with a few trackers is longer than a few KiB).
MAGNET_MAX_LENGTH = 64 * KIB
# Files are hashed in reads of at most this size, so memory stays bounded whatever the piece size.
MAKETORRENT_READ_CHUNK = 1 * MIB

# --- peer wire (BEP 3) -----------------------------------------------------------------------
# Blocks are 16 KiB; common clients close a connection that requests more (libtorrent, aria2).
BLOCK_SIZE = 16 * KIB
# The largest legitimate message is a piece message: 9 bytes of header + one 16 KiB block;
# extended messages carry metadata pieces of 16 KiB plus a small dict. One block + 64 KiB of
# slack (~80 KiB) covers everything honest peers send except bitfields, which are capped
# separately: a 1 TiB torrent with 16 KiB pieces has an 8 MiB bitfield.
WIRE_MAX_MESSAGE = BLOCK_SIZE + 13 + 64 * KIB
WIRE_MAX_BITFIELD = 8 * MIB + 1
# A responder that learns the info_hash from the peer's handshake (one listener, many torrents)
# holds what the peer pipelines until the shell accepts: at most a bitfield and one message.
WIRE_MAX_PREACCEPT_BUFFER = WIRE_MAX_BITFIELD + 4 + WIRE_MAX_MESSAGE + 4
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
# mainline/libtorrent: new peers are 3x as likely to get the optimistic unchoke (they have
# nothing to reciprocate with yet); "new" = connected less than 3 optimistic intervals ago.
OPTIMISTIC_NEW_PEER_WEIGHT = 3

# --- piece picking (swarm/picker.py; BEP 3 "piece downloading strategy", libtorrent) ----------
# libtorrent initial_picker_threshold: pick the first pieces at random so we have something
# to trade quickly, then rarest first.
RANDOM_FIRST_PIECES = 4
# libtorrent request_queue_time = 3 s: keep rate x 3 s of requests outstanding per peer,
# never fewer than 4 (a slow start still keeps the pipe busy).
REQUEST_QUEUE_TIME = 3.0
REQUEST_QUEUE_MIN = 4
# libtorrent request_timeout default: a block not delivered in 60 s goes back to the pool.
REQUEST_TIMEOUT = 60.0

# --- storage (swarm/storage.py) ---------------------------------------------------------------
# Bytes of pieces being assembled in memory at once (max pieces in flight = this / piece
# length, at least 4). libtorrent bounds the same thing with max_queued_disk_bytes.
# 32 MiB keeps a peer of a 1 GiB torrent within a 150 MiB RSS budget even when hashing
# falls behind and the buffer fills; a fast leech keeps about 8 MiB in flight (500 requests
# x 16 KiB, libtorrent's cap), so 32 MiB never throttles it.
STORAGE_MAX_BUFFER_BYTES = 32 * MIB
# Verified pieces kept in memory for upload: peers ask for a piece block by block, so one
# worker-thread read per piece instead of per 16 KiB block (a thread hand-off per block
# costs more than the block's transfer on a fast link). Fresh pieces go in too (relay).
# 16 MiB: 32 pieces of 512 KiB (1 GiB torrents), within the 150 MiB RSS budget.
STORAGE_READ_CACHE_BYTES = 16 * MIB
# Open file handles kept in the LRU cache (libtorrent file_pool_size defaults to 40).
STORAGE_FILE_HANDLES = 32
# Suffix of files still being downloaded; renamed away once every piece of the file verifies.
PARTIAL_SUFFIX = ".part"

# --- tracker (BEP 3, BEP 23) -----------------------------------------------------------------
TRACKER_DEFAULT_INTERVAL = 1800
TRACKER_DEFAULT_NUMWANT = 50
TRACKER_MAX_NUMWANT = 200
# A compact response of 200 peers is 1.2 KB; 1 MiB is far beyond any honest tracker.
TRACKER_MAX_RESPONSE = 1 * MIB
# An announce query is ~300 bytes (libtorrent, aria2); 4 KiB is ample and bounds parsing work.
TRACKER_MAX_QUERY = 4 * KIB
# Strings such as `key`, `trackerid`, `ip` (a host name per BEP 3) are short; 255 = a DNS name.
TRACKER_MAX_PARAM = 255
# BEP 48 scrapes name a few info-hashes; opentracker caps a multiscrape at 32 hashes.
TRACKER_MAX_SCRAPE = 32
# Memory bounds of our tracker: ~200 bytes per peer record -> 100k swarms x 1000 peers is the
# worst case of the product, so the total is capped separately.
TRACKER_MAX_SWARMS = 100_000
TRACKER_MAX_PEERS_PER_SWARM = 1_000
TRACKER_MAX_PEERS_TOTAL = 1_000_000
# Announces one address may make per re-announce interval (a token bucket of this burst
# refilled over one interval): a seedbox with a thousand torrents fits, and since a record
# lives two intervals, one address holds at most ~2,000 records whatever the interval (the
# lab's 2 s interval then allows 500 announces/s: 33 peers on 127.0.0.1 use 17). Over it:
# a failure reason (BEP 3) or a BEP 15 error, nothing stored.
TRACKER_ANNOUNCES_PER_ADDRESS = 1_000
# Addresses whose budgets are remembered (least recently seen forgotten; a forgotten one
# had usually refilled anyway): ~200 bytes each.
TRACKER_BUDGET_ADDRESSES = 65_536
# UDP connects (BEP 15) per source address: a client needs one a minute per tracker; a NAT
# of a few hundred clients fits. The excess is dropped unanswered (sources may be spoofed).
TRACKER_UDP_CONNECTS_PER_SECOND = 10.0
TRACKER_UDP_CONNECT_BURST = 100
# The lab wants quick re-announces; BEP 3 gives no floor, libtorrent honours min interval.
TRACKER_LAB_INTERVAL = 10
# libtorrent's tracker_completion_timeout is 30 s: a tracker slower than that is down.
TRACKER_REQUEST_TIMEOUT = 30.0

# --- hub (client-server) ---------------------------------------------------------------------
# ext4 and most filesystems cap a file name at 255 bytes.
HUB_MAX_NAME_BYTES = 255
# A path in the hub (folders/name): Linux's PATH_MAX is 4096 bytes including the data folder,
# so a quarter is left for names and the rest for wherever the data folder lives; 32 levels of
# folders is deeper than people nest (and bounds the per-segment checks).
HUB_MAX_PATH_BYTES = 1024
HUB_MAX_PATH_DEPTH = 32
# Browser sessions (a token entered once becomes a cookie): 12 h, a working day, as many
# admin UIs do; the cap bounds memory when someone signs in in a loop.
HUB_SESSION_TTL = 12 * 3600.0
HUB_MAX_SESSIONS = 10_000
# Live stats over Server-Sent Events: one event a second; a stream ends after 10 minutes
# (EventSource reconnects by itself) so no connection is held for ever; at most 64 at once.
HUB_EVENTS_INTERVAL = 1.0
HUB_EVENTS_MAX_AGE = 600.0
HUB_EVENTS_MAX_STREAMS = 64
HUB_DEFAULT_MAX_UPLOAD = 64 * GIB
HUB_CHUNK = 256 * KIB
# Slow-loris: nginx's client_header_timeout and client_body_timeout default to 60 s.
HUB_READ_TIMEOUT = 60.0
# Minimum upload progress: at least this many body bytes in every interval, or 408. As
# Apache's mod_reqtimeout default (body=20,MinRate=500: 500 bytes/s); a per-read timeout alone
# restarts with every byte, so one byte a second would hold an upload open for ever.
HUB_MIN_UPLOAD_BYTES = 5000
HUB_PROGRESS_INTERVAL = 10.0
# The same 60 s bound the wait for a request's headers and between keep-alive requests
# (nginx: client_header_timeout 60 s, keepalive_timeout 75 s).
HUB_KEEPALIVE_TIMEOUT = 60.0
# Graceful shutdown: in-flight downloads get this long after SIGINT/SIGTERM (systemd's stop
# timeout is 90 s; aiohttp's default is 60 s).
HUB_SHUTDOWN_TIMEOUT = 10.0
# tokens.json is tiny (about 150 bytes a token); the caps stop a runaway file from being parsed.
HUB_MAX_TOKENS = 10_000
HUB_TOKENS_FILE_MAX = 4 * MIB
# Longest accepted Authorization / X-Content-SHA256 / Digest header value we parse ourselves;
# aiohttp already caps every header field at 8190 bytes.
HUB_MAX_DIGEST_HEADER = 1024
# After refusing a body (408/413/507) aiohttp keeps reading and discarding it so the client
# sees the reply before a reset (RFC 9112 §9.6 "lingering close"); its default is 10 s. 2 s is
# enough on any LAN and bounds what a slow-loris can hold after being refused.
HUB_LINGERING_TIME = 2.0
# Per-token rate limit (optional): the bucket holds one second of traffic but at least one
# chunk, so a single read or write never waits for more than it could ever get; throttled
# downloads go out in 64 KiB writes (instead of sendfile) to keep the rate smooth.
HUB_RATE_MIN_BURST = HUB_CHUNK
HUB_RATE_CHUNK = 64 * KIB
# Per-connection receive buffer of the server (aiohttp pauses the socket at 2x this); 1 MiB
# (4 store chunks) keeps upload bodies flowing while a chunk is written. aiohttp's default: 64 KiB.
HUB_READ_BUFSIZE = 4 * HUB_CHUNK
# Hub client: 1 MiB reads/writes keep per-chunk overhead (thread hops, syscalls) below 1 % at
# GB/s; the read buffer lets the socket keep filling while a block is hashed and written.
HUB_CLIENT_CHUNK = 1 * MIB
HUB_CLIENT_READ_BUFFER = 4 * MIB
# curl's --connect-timeout is unset by default; 10 s is wget's --connect-timeout.
HUB_CLIENT_CONNECT_TIMEOUT = 10.0
# JSON answers (file lists, errors): a list of 100k files is ~15 MB; anything bigger is not ours.
HUB_CLIENT_MAX_JSON = 32 * MIB
HUB_CLIENT_MAX_ERROR_BODY = 64 * KIB

# --- DHT (BEP 5) -----------------------------------------------------------------------------
DHT_K = 8
DHT_ALPHA = 3
# UDP datagrams larger than this are not KRPC (libtorrent uses 1500-byte buffers).
DHT_MAX_DATAGRAM = 1500
DHT_TOKEN_ROTATE = 300.0
# Transaction ids: BEP 5 suggests 2 bytes; we accept up to 32 from others (never echoed bigger).
DHT_MAX_TRANSACTION_ID_LEN = 32
# Tokens: BitTorrent uses a 20-byte SHA-1, libtorrent 4 bytes; 64 bounds what we store/echo.
DHT_MAX_TOKEN_LEN = 64
DHT_TOKEN_LEN = 8
# Outstanding queries per node: alpha=3 lookups, a few at a time, plus pings; 4096 is a ceiling.
DHT_MAX_PENDING_TRANSACTIONS = 4096
# BEP 5: a node is good if it answered within 15 minutes; buckets untouched 15 min are refreshed.
DHT_GOOD_FOR = 15 * 60.0
DHT_BUCKET_REFRESH = 15 * 60.0
# BEP 5 leaves "several" failures to the implementation; 2 consecutive timeouts mark a node bad.
DHT_MAX_FAILURES = 2
# Replacement candidates remembered per full bucket (libtorrent keeps a replacement cache too).
DHT_REPLACEMENTS_PER_BUCKET = 8
DHT_QUERY_TIMEOUT = 2.0
# Iterative lookups: each round fixes at least one more prefix bit, so 160 + final rounds would
# be the theoretical worst; 32 is far above log2(any real DHT) + k/alpha and stops loops.
DHT_LOOKUP_MAX_ROUNDS = 32
# Peer store: libtorrent's dht_max_peers=500 per torrent, dht_max_torrents=2000; we cap peers
# per info-hash at 500 and all stored peers at 50,000 (~10 MB).
DHT_MAX_PEERS_PER_HASH = 500
DHT_MAX_PEERS_TOTAL = 50_000
# Announces stored from one IP (its oldest dropped first). A node holds only the info-hashes
# near its id, so on a real DHT one address rarely announces more than a few to it; a lab
# with every peer on 127.0.0.1 stores 33 per swarm. 100 keeps one address flooding
# announces for many info-hashes to a fifth of a percent of the store (~30 KiB; tokens bind
# announces to addresses that really receive our replies).
DHT_MAX_PEERS_PER_IP = 100
# Peers returned in one get_peers response: 100 would not fit in 1500 bytes with the rest;
# libtorrent's dht_max_peers_reply is 100, 50 peers = 400 bytes.
DHT_MAX_PEERS_REPLY = 50
# BEP 5: announced peers are forgotten after 30 minutes unless re-announced.
DHT_PEER_TTL = 30 * 60.0
# The periodic get_peers-and-announce re-sends an announce to a node that accepted one only
# after half that time (libtorrent re-announces every 15 minutes): a swarm's DHT ramp (lookups
# 0.25, 0.5, 1, 2 ... s apart) would otherwise re-announce to the same k nodes every time.
DHT_REANNOUNCE_AFTER = DHT_PEER_TTL / 2
# Per-IP query rate limit (token bucket); libtorrent blocks IPs above 5 queries/s
# (dht_block_ratelimit), where one address is one node. We allow 20/s with a burst of 500:
# the lab's app mode starts 33 nodes on 127.0.0.1 at once, each joining with about ten
# queries to the one bootstrap node (measured: 277 queries in a 23 s run of N = 32; a
# burst of 100 dropped 24 of them, each a 2 s query time-out for some peer).
DHT_RATE_PER_IP = 20.0
DHT_RATE_BURST = 500.0
DHT_RATE_MAX_IPS = 10_000
# Amplification: a response to an unverified address is at most this many times its query.
# A full find_node response (8 nodes) is ~2.7x its query, so honest lookups fit.
DHT_AMPLIFICATION_FACTOR = 3
# New nodes seen in incoming queries are pinged before being trusted; queue bounded.
DHT_PING_QUEUE = 256
