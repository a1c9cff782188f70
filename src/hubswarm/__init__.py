"""hubswarm: client-server or peer-to-peer? A file hub, a BitTorrent swarm, and a lab that measures both."""

__version__ = "0.1.0"
