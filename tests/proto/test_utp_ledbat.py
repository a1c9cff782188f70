"""LEDBAT (BEP 29 congestion control), the base delay history and the retransmission timer."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from hubswarm.proto.ledbat import (
    BASE_DELAY_WINDOW,
    GAIN_BYTES_PER_RTT,
    INITIAL_RTO,
    MAX_RTO,
    MIN_RTO,
    TARGET_DELAY_US,
    DelayHistory,
    Ledbat,
    RttEstimator,
)
from hubswarm.proto.utp import MAX_PACKET_SIZE, MAX_PAYLOAD, State
from tests.proto.test_utp_sim import Link, Pipe

MSS = 1000


def one_rtt(ledbat: Ledbat, delay_us: int, *, peer_window: int = 10**9) -> None:
    """A whole window acked in ten ACKs, each seeing ``delay_us`` of queueing."""
    in_flight = ledbat.window
    for _ in range(10):
        ledbat.on_ack(in_flight // 10, delay_us, in_flight, saturated=True, peer_window=peer_window)


def test_below_target_the_window_grows_above_it_shrinks() -> None:
    ledbat = Ledbat(MSS)
    ledbat.slow_start = False
    ledbat.cwnd = 20 * MSS
    before = ledbat.cwnd
    one_rtt(ledbat, TARGET_DELAY_US // 2)
    assert ledbat.cwnd > before
    # Half the target off: half the gain per round trip (window_factor sums to one).
    assert abs(ledbat.cwnd - before - GAIN_BYTES_PER_RTT / 2) < 1
    before = ledbat.cwnd
    one_rtt(ledbat, TARGET_DELAY_US * 2)
    assert ledbat.cwnd < before
    assert abs(before - ledbat.cwnd - GAIN_BYTES_PER_RTT) < 1


def test_at_target_the_window_holds() -> None:
    ledbat = Ledbat(MSS)
    ledbat.slow_start = False
    ledbat.cwnd = 20 * MSS
    one_rtt(ledbat, TARGET_DELAY_US)
    assert ledbat.cwnd == 20 * MSS


def test_the_window_never_drops_below_one_packet() -> None:
    ledbat = Ledbat(MSS)
    for _ in range(100):
        one_rtt(ledbat, 10 * TARGET_DELAY_US)
    assert ledbat.window == MSS
    ledbat.on_loss()
    assert ledbat.window == MSS


def test_slow_start_doubles_until_the_delay_reaches_the_target() -> None:
    ledbat = Ledbat(MSS)
    for _ in range(5):
        one_rtt(ledbat, 0)
    assert ledbat.slow_start
    assert ledbat.window >= 30 * MSS
    one_rtt(ledbat, TARGET_DELAY_US + 1)
    assert not ledbat.slow_start


def test_an_idle_sender_does_not_grow_its_window() -> None:
    ledbat = Ledbat(MSS)
    ledbat.on_ack(MSS, 0, MSS, saturated=False, peer_window=10**9)
    assert ledbat.window == MSS


@given(
    st.lists(
        st.tuples(st.integers(1, 20_000), st.integers(0, 400_000), st.integers(1, 10**6)),
        max_size=60,
    ),
    st.integers(MSS, 10**6),
)
def test_growth_never_passes_the_peers_window(
    acks: list[tuple[int, int, int]], peer_window: int
) -> None:
    ledbat = Ledbat(MSS)
    for acked, delay, in_flight in acks:
        before = ledbat.cwnd
        ledbat.on_ack(acked, delay, in_flight, saturated=True, peer_window=peer_window)
        assert ledbat.cwnd <= max(before, peer_window)
        assert ledbat.cwnd >= MSS


def test_loss_halves_and_timeout_resets_to_one_packet() -> None:
    ledbat = Ledbat(MSS)
    ledbat.cwnd = 40 * MSS
    ledbat.on_loss()
    assert ledbat.window == 20 * MSS
    assert not ledbat.slow_start
    ledbat.on_timeout()
    assert ledbat.window == MSS
    assert ledbat.slow_start
    assert ledbat.ssthresh == 10 * MSS


# --- base delay -------------------------------------------------------------------------------


def test_base_delay_is_the_minimum_of_the_last_two_minutes() -> None:
    history = DelayHistory()
    assert history.base is None
    assert history.add_sample(50_000, 0.0) == 0
    assert history.add_sample(80_000, 10.0) == 30_000
    assert history.add_sample(40_000, 30.0) == 0
    # Later, the path got slower for good: the old minimum is forgotten within two minutes
    # (plus the bucket the minimum was in).
    t = 30.0
    while t < 30.0 + BASE_DELAY_WINDOW + 60.0:
        t += 5.0
        queueing = history.add_sample(90_000, t)
    assert queueing == 0
    assert history.base == 90_000


def test_base_delay_survives_clock_wrap() -> None:
    # Samples are differences of unrelated 32-bit clocks; they wrap.
    history = DelayHistory()
    history.add_sample(0xFFFF_FF00, 0.0)
    assert history.add_sample(0x0000_0100, 1.0) == 0x200
    assert history.base == 0xFFFF_FF00
    assert history.add_sample(0xFFFF_FE00, 2.0) == 0
    assert history.base == 0xFFFF_FE00


# --- retransmission timer ------------------------------------------------------------------


def test_rto_per_bep29() -> None:
    rtt = RttEstimator()
    assert rtt.timeout() == INITIAL_RTO
    rtt.add_sample(0.010)
    assert rtt.timeout() == MIN_RTO  # 10 ms + 4 * 5 ms is under the 500 ms floor
    for i in range(50):
        rtt.add_sample(0.300 if i % 2 else 0.500)
    assert rtt.rtt is not None
    assert abs(rtt.rtt - 0.4) < 0.05
    assert rtt.timeout() == rtt.rtt + 4 * rtt.rtt_var > MIN_RTO
    assert rtt.timeout(1) == 2 * rtt.timeout()
    assert rtt.timeout(3) == 8 * rtt.timeout()
    assert rtt.timeout(30) == MAX_RTO


# --- LEDBAT inside a connection -------------------------------------------------------------


def phased_queue(now: float) -> float:
    """Queueing delay on the a->b path: none, then 250 ms (above target), then 40 ms (below)."""
    if now < 2.0:
        return 0.0
    if now < 10.0:
        return 0.250
    return 0.040


def test_ledbat_steps_aside_for_a_queue_and_grows_again_below_the_target() -> None:
    pipe = Pipe(random.Random(5), Link(delay=0.02, queueing=phased_queue), Link(delay=0.02))
    pipe.accept_kwargs = {"recv_window": 128 * 1024}
    pipe.a.to_send = bytes(20_000_000)
    pipe.connect()
    pipe.run(lambda: pipe.now >= 2.0)
    assert pipe.a.conn is not None
    grown = pipe.a.conn.cwnd
    assert grown > 40 * MAX_PAYLOAD  # slow start up to the peer's window
    # 250 ms of queueing, above the 100 ms target: the window shrinks to a few packets.
    pipe.run(lambda: pipe.now >= 10.0)
    assert pipe.a.conn.state is State.CONNECTED
    shrunk = pipe.a.conn.cwnd
    assert shrunk < grown / 4
    # 40 ms, below the target: it grows again (linearly, 60 % of the gain per round trip).
    pipe.run(lambda: pipe.now >= 11.0)
    after_drain = pipe.a.conn.cwnd
    pipe.run(lambda: pipe.now >= 14.0)
    assert pipe.a.conn.cwnd > after_drain
    assert pipe.a.conn.cwnd <= 128 * 1024
    assert pipe.a.max_peer_excess <= MAX_PACKET_SIZE


def test_in_flight_never_exceeds_the_peers_window() -> None:
    pipe = Pipe(random.Random(6), Link(delay=0.02, jitter=0.01), Link(delay=0.02))
    pipe.accept_kwargs = {"recv_window": 16 * 1024}
    data = random.Random(7).randbytes(400_000)
    pipe.a.to_send = data
    pipe.b.auto_read = False
    pipe.connect()
    # b's application does not read for 5 s: the window closes; a may only probe.
    pipe.run(lambda: pipe.now >= 5.0)
    assert pipe.b.conn is not None
    assert pipe.a.conn is not None
    assert pipe.a.conn.state is State.CONNECTED
    assert pipe.b.conn.receive_window < MAX_PAYLOAD
    assert len(pipe.b.received) <= 16 * 1024 + MAX_PAYLOAD
    # Then it reads everything, and keeps reading.
    pipe.b.conn.acknowledge_received_data(len(pipe.b.received))
    pipe.b.auto_read = True
    pipe.run(lambda: len(pipe.b.received) == 400_000, max_time=200.0)
    assert bytes(pipe.b.received) == data
    assert pipe.a.max_peer_excess <= MAX_PACKET_SIZE
    assert pipe.a.max_in_flight <= 16 * 1024 + MAX_PACKET_SIZE
