"""The default configs (streams, alerts, ACLs, the demo's), shipped in the wheel as
``privmon.configs`` and read with importlib.resources (streams/config.py)."""
