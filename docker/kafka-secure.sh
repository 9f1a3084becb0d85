#!/bin/sh
# Entry point of the kafka service of docker/compose.yaml: one KRaft node
# (broker + controller) with SASL/SCRAM-SHA-256 for clients, the standard
# authorizer (deny unless an ACL allows; "admin" is the only super user) and
# privmon's principals (configs/acls.toml). The same broker security as the
# tested local secure broker (streams/localkafka/security.py); this script is
# itself run against a real broker by tests/integration/test_docker_broker.py.
#
# SCRAM users are created when the storage is formatted (KRaft: kafka-storage
# format --add-scram), so passwords must be set on the first start; later
# starts reuse the formatted volume. Passwords come from the environment:
#   KAFKA_ADMIN_PASSWORD         admin (super user: topics, ACLs)
#   PRIVMON_PRODUCER_PASSWORD    telemetry-producer (writes raw telemetry)
#   PRIVMON_WORKER_PASSWORD      privmon-worker
#   PRIVMON_ANALYST_PASSWORD     analyst (reads aggregates only)
#   PRIVMON_ALERTS_PASSWORD      privmon-alerts (the alert agent)
# SASL_PLAINTEXT authenticates without sending passwords (SCRAM) but does not
# encrypt data: keep the listener on a private network, or add TLS (SASL_SSL).
set -eu

: "${KAFKA_HOME:=/opt/kafka}"
: "${KAFKA_LISTEN_HOST:=0.0.0.0}"
: "${KAFKA_ADVERTISED_HOST:=kafka}"
: "${KAFKA_PORT:=9092}"
: "${KAFKA_CONTROLLER_PORT:=9093}"
: "${KAFKA_DATA_DIR:=/var/lib/kafka/data}"
: "${KAFKA_CONFIG_DIR:=/tmp/privmon-kafka}"
: "${KAFKA_NUM_PARTITIONS:=4}"

fail() { echo "kafka-secure.sh: $*" >&2; exit 2; }

password() {  # password VAR USER: the value of $VAR, checked
    eval "value=\${$1:-}"
    [ -n "$value" ] || fail "set $1 (the password of Kafka user $2)"
    case "$value" in
        *[!A-Za-z0-9._~+-]*) fail "$1: use only letters, digits and . _ ~ + - (it goes into a SCRAM format argument and a JAAS line)" ;;
    esac
    [ "${#value}" -ge 12 ] || fail "$1: at least 12 characters, got ${#value}"
    printf '%s' "$value"
}

ADMIN=$(password KAFKA_ADMIN_PASSWORD admin)
PRODUCER=$(password PRIVMON_PRODUCER_PASSWORD telemetry-producer)
WORKER=$(password PRIVMON_WORKER_PASSWORD privmon-worker)
ANALYST=$(password PRIVMON_ANALYST_PASSWORD analyst)
ALERTS=$(password PRIVMON_ALERTS_PASSWORD privmon-alerts)

mkdir -p "$KAFKA_CONFIG_DIR" "$KAFKA_DATA_DIR"
umask 077
PROPS="$KAFKA_CONFIG_DIR/server.properties"
cat > "$PROPS" <<EOF
# Written by docker/kafka-secure.sh at every start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@localhost:${KAFKA_CONTROLLER_PORT}
listeners=SASL_PLAINTEXT://${KAFKA_LISTEN_HOST}:${KAFKA_PORT},CONTROLLER://localhost:${KAFKA_CONTROLLER_PORT}
advertised.listeners=SASL_PLAINTEXT://${KAFKA_ADVERTISED_HOST}:${KAFKA_PORT}
listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-256
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-256
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="${ADMIN}" user_admin="${ADMIN}";
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${ADMIN}";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin
allow.everyone.if.no.acl.found=false
log.dirs=${KAFKA_DATA_DIR}
num.partitions=${KAFKA_NUM_PARTITIONS}
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
EOF

# For the healthcheck and for operators: an admin client config.
cat > "$KAFKA_CONFIG_DIR/admin.properties" <<EOF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-256
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${ADMIN}";
EOF

if [ ! -f "$KAFKA_DATA_DIR/meta.properties" ]; then
    CLUSTER_ID=${KAFKA_CLUSTER_ID:-$("$KAFKA_HOME/bin/kafka-storage.sh" random-uuid)}
    "$KAFKA_HOME/bin/kafka-storage.sh" format --ignore-formatted -t "$CLUSTER_ID" -c "$PROPS" \
        --add-scram "SCRAM-SHA-256=[name=admin,password=${ADMIN}]" \
        --add-scram "SCRAM-SHA-256=[name=telemetry-producer,password=${PRODUCER}]" \
        --add-scram "SCRAM-SHA-256=[name=privmon-worker,password=${WORKER}]" \
        --add-scram "SCRAM-SHA-256=[name=analyst,password=${ANALYST}]" \
        --add-scram "SCRAM-SHA-256=[name=privmon-alerts,password=${ALERTS}]"
fi
exec "$KAFKA_HOME/bin/kafka-server-start.sh" "$PROPS"
