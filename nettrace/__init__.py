"""nettrace: rebuild Docker-style container networks, inject a packet, see every hop.

Data flows one way: topology -> inject -> trace events -> hops -> paths -> views.
Heavy libraries (pyroute2, scapy, bcc, textual) are imported lazily by the modules
that need them, so `import nettrace` works without root or eBPF.
"""

__version__ = "0.1.0"
