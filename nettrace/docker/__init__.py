"""Live Docker engines: run a private one, discover it into the CNM model, compare it with a lab.

`engine` starts dockerd + containerd inside a network namespace nettrace owns (so the root
namespace is never touched), `discover` maps any engine's networks, containers, namespaces and
interfaces into the same `Lab` model a nettrace lab uses, `mirror` recreates a lab's networks
and containers in an engine, and `diff` says how a lab differs from the real thing.
"""
