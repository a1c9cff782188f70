"""The lab: client-server against peer-to-peer, measured on an emulated network.

What a run is made of:
``scenario`` (TOML -> plans), ``emulation`` (which network; ``netem`` is the only ip/tc code),
``campaign`` (every plan on every architecture; ``executors``: where the sim runs run),
``runners/`` (one per architecture behind one protocol), ``fleet`` (the clients: ready, go,
churn, faults, the result), ``processes`` and ``services`` (child processes: hub, DHT node,
seed), ``agent`` (a pre-started client process),
``probes`` (access control), ``events`` and ``accounting`` (what the swarm's logs and counters
say), ``payload``, ``timing`` (the peers' lab intervals), ``hostload``.

What a run gives: ``metrics`` (raw records -> numbers), ``bounds`` (Kurose-Ross), ``table``
(the comparison's row specs), ``render`` (one document -> Markdown, HTML, terminal), ``plots``,
``report`` (the results folder).
"""
