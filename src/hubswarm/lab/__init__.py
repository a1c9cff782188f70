"""The lab: client-server against peer-to-peer, measured on an emulated network.

``scenario`` (TOML -> plans), ``bounds`` (Kurose-Ross), ``netem`` (the only ip/tc code),
``runner`` (one runner per architecture), ``agent`` (a pre-started client process),
``metrics`` (raw records -> numbers), ``report`` (runs.json, report.md/.html, plots).
"""
