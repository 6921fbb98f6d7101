"""Packet injection: fingerprints, scapy frames, and sending from a namespace."""

from nettrace.inject.fingerprint import Fingerprint, FingerprintFactory
from nettrace.inject.injector import interface_mac, send_l2, send_l3

__all__ = ["Fingerprint", "FingerprintFactory", "send_l2", "send_l3", "interface_mac"]
