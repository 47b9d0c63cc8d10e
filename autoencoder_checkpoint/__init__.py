"""A BL-AE checkpoint file, read by data and models alike: what it is (``reader.py``), its networks
(``recorded_networks.py``), its token spec and frozen token encoder (``tokens.py``). Readers only, no model classes."""
