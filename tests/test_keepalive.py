"""KeepAliveService on a deterministic clock (api.md §1.4: ping every 30 s, drop after 60 s)."""

from __future__ import annotations

from twisted.internet.task import Clock

from camera_service.rpc.websocket import ApiServerProtocol, KeepAliveService


class _Tracker:
    def __init__(self) -> None:
        self.open: set = set()


class _Peer:
    """Just the parts of ApiServerProtocol the keep-alive loop touches."""

    state = ApiServerProtocol.STATE_OPEN
    session = None

    def __init__(self, now: float) -> None:
        self.last_heard = self.last_ping = now
        self.awaiting_since = None
        self.pings = 0
        self.dropped = False

    def sendPing(self) -> None:
        self.pings += 1

    def dropConnection(self, abort: bool = False) -> None:
        self.dropped = True


def _service(clock: Clock, *peers: _Peer) -> KeepAliveService:
    tracker = _Tracker()
    tracker.open.update(peers)
    service = KeepAliveService(tracker, clock, interval=30.0, timeout=60.0)  # type: ignore[arg-type]
    service.startService()
    return service


def test_pings_every_interval_and_keeps_a_peer_that_answers():
    clock = Clock()
    peer = _Peer(clock.seconds())
    service = _service(clock, peer)
    for _ in range(40):  # 300 s
        clock.advance(7.5)
        if peer.pings and peer.awaiting_since is not None:
            peer.last_heard = clock.seconds()  # the pong
    assert 9 <= peer.pings <= 11
    assert not peer.dropped
    service.stopService()
    assert not clock.getDelayedCalls()


def test_drops_a_silent_peer_about_60_s_after_the_ping():
    clock = Clock()
    peer = _Peer(clock.seconds())
    service = _service(clock, peer)
    while not peer.pings:
        clock.advance(7.5)
    pinged_at = clock.seconds()
    while not peer.dropped:
        clock.advance(7.5)
        assert clock.seconds() - pinged_at <= 67.5
    assert clock.seconds() - pinged_at >= 60.0
    service.stopService()


def test_any_frame_counts_as_a_sign_of_life():
    clock = Clock()
    peer = _Peer(clock.seconds())
    service = _service(clock, peer)
    for _ in range(40):
        clock.advance(7.5)
        peer.last_heard = clock.seconds()  # the client keeps sending requests, never pongs
    assert not peer.dropped
    service.stopService()


def test_a_failing_peer_does_not_stop_the_loop():
    clock = Clock()
    broken = _Peer(clock.seconds())
    broken.sendPing = None  # type: ignore[assignment]  # calling it raises TypeError
    healthy = _Peer(clock.seconds())
    service = _service(clock, broken, healthy)
    for _ in range(12):
        clock.advance(7.5)
        healthy.last_heard = clock.seconds()
    assert healthy.pings >= 2
    service.stopService()
