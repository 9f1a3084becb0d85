"""Who may do what on Kafka: ACLs for the producer, the worker and analysts.

  producer  WRITE raw
  worker    READ raw; READ/WRITE partials, progress, ledger, participation; DELETE
            (records of) partials; WRITE dlq and aggregates.*; its consumer groups; its
            transactional ids
  analyst   READ aggregates.* (prefix) with groups analyst-*; nothing else
  alerter   READ aggregates.*; WRITE the alerts topic (privmon alerts)
Everything else is denied by the broker's StandardAuthorizer. Applying is
idempotent: Kafka ignores an ACL that already exists.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourceType,
)

from privmon.streams.config import CONFIG_DIR, ConfigError, PipelineConfig
from privmon.streams.kafka_client import KafkaOptions

DEFAULT_ACLS = CONFIG_DIR / "acls.toml"
LITERAL, PREFIXED = ACLResourcePatternType.LITERAL, ACLResourcePatternType.PREFIXED
R, W, D = ACLOperation.READ, ACLOperation.WRITE, ACLOperation.DESCRIBE


@dataclass(frozen=True, kw_only=True)
class Principals:
    producer: str
    worker: str
    analyst: str
    analyst_group_prefix: str
    alerter: str


def load_principals(path: Path = DEFAULT_ACLS) -> Principals:
    raw = tomllib.loads(Path(path).read_text())
    fields = {"producer", "worker", "analyst", "analyst_group_prefix", "alerter"}
    missing, unknown = sorted(fields - set(raw)), sorted(set(raw) - fields)
    if missing or unknown:
        raise ConfigError(
            f"{path}: missing {missing}, unknown {unknown}; expected {sorted(fields)}"
        )
    for name in fields:
        if not isinstance(raw[name], str) or not raw[name]:
            raise ConfigError(f"{path}: {name} = {raw[name]!r}: expected a non-empty string")
    return Principals(**raw)


def _allow(user: str, kind: ResourceType, name: str, pattern: ACLResourcePatternType,
           *operations: ACLOperation) -> list[ACL]:
    return [ACL(principal=f"User:{user}", host="*", operation=op,
                permission_type=ACLPermissionType.ALLOW,
                resource_pattern=ResourcePattern(kind, name, pattern)) for op in operations]


def acl_bindings(config: PipelineConfig, who: Principals) -> list[ACL]:
    t, app = config.topics, config.app_id
    T, G, X = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID
    acls = _allow(who.producer, T, t.raw, LITERAL, W, D)
    worker = who.worker
    acls += _allow(worker, T, t.raw, LITERAL, R, D)
    for topic in (t.partials, t.progress, t.ledger, t.participation):
        acls += _allow(worker, T, topic, LITERAL, R, W, D)
    # partials of released windows are deleted by the worker (storage limitation)
    acls += _allow(worker, T, t.partials, LITERAL, ACLOperation.DELETE)
    acls += _allow(worker, T, t.dlq, LITERAL, W, D)
    acls += _allow(worker, T, t.aggregate_prefix, PREFIXED, W, D)
    for group in (f"{app}-stage1", f"{app}-stage2"):
        acls += _allow(worker, G, group, LITERAL, R, D)
    acls += _allow(worker, X, f"{app}-", PREFIXED, W, D)
    acls += _allow(who.analyst, T, t.aggregate_prefix, PREFIXED, R, D)
    acls += _allow(who.analyst, G, who.analyst_group_prefix, PREFIXED, R, D)
    acls += _allow(who.alerter, T, t.aggregate_prefix, PREFIXED, R, D)
    acls += _allow(who.alerter, T, t.alerts, LITERAL, W, D)
    return acls


def apply_acls(bootstrap: str, config: PipelineConfig, who: Principals,
               options: KafkaOptions) -> int:
    """Create the ACLs (existing ones are left as they are); returns how many were sent."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="privmon-acl", **options)
    try:
        bindings = acl_bindings(config, who)
        result = admin.create_acls(bindings)
        failed = result.get("failed", []) if isinstance(result, dict) else []
        if failed:
            raise RuntimeError(f"the broker refused {len(failed)} ACL(s): {failed[:3]}")
        return len(bindings)
    finally:
        admin.close()
