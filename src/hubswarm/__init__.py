"""hubswarm: client-server or peer-to-peer? A file hub, a BitTorrent swarm, and a lab."""

__version__ = "0.1.0"
