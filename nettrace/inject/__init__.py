"""Packet injection: fingerprints (nettrace.inject.fingerprint, pure), scapy frames
(nettrace.inject.frames) and sending from a namespace (nettrace.inject.injector).

Nothing is imported here, so the pure fingerprint module loads without the sender's
namespace code (offline assembly of trace bundles imports it)."""
