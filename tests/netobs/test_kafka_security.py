"""Kafka SASL/SCRAM over TLS against a real broker; GSSAPI and OAUTHBEARER options.

A real Kerberos KDC does not run here, so GSSAPI is checked as far as netobs's part goes: the
config is validated and mapped to kafka-python's options (service and domain names); the
handshake itself is kafka-python's. OAUTHBEARER: the file token provider is the real one.
"""

from __future__ import annotations

import ssl
import subprocess
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError as ClientError
from pydantic import ValidationError

from netobs.config import KafkaTransportConfig
from netobs.transport.kafka import FileTokenProvider, client_options
from tests.services import _require
from tests.services.kafka import KafkaError, SecureKafkaBroker

pytestmark = pytest.mark.integration
USERS = {"netobs": "scram-test-secret"}
#: TLS + SCRAM before the first request take seconds on a loaded 2-core machine (default probe: 2 s).
SLOW_HANDSHAKE_MS = 30_000


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory):
    broker = SecureKafkaBroker(tmp_path_factory.mktemp("kafka-sasl"), USERS)
    why = broker.check_installed()
    if why:
        _require.unavailable(why)
    try:
        broker.start()
    except (KafkaError, OSError, subprocess.SubprocessError) as exc:
        _require.unavailable(f"SASL_SSL Kafka broker failed to start: {exc}")
    yield broker
    broker.stop()


def cfg(broker, password: str = USERS["netobs"], **kw) -> KafkaTransportConfig:
    return KafkaTransportConfig(
        bootstrap_servers=(broker.secure_bootstrap,),
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="netobs",
        sasl_password=password,
        tls={"ca_file": broker.ca_file},
        request_timeout_ms=10_000,
        **kw,
    )


def test_scram_over_tls_round_trip(secure_broker):
    topic = f"sasl-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(
        **client_options(cfg(secure_broker)), api_version_auto_timeout_ms=SLOW_HANDSHAKE_MS
    )
    producer.send(topic, b"over SASL_SSL").get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(
        topic,
        auto_offset_reset="earliest",
        consumer_timeout_ms=15_000,
        api_version_auto_timeout_ms=SLOW_HANDSHAKE_MS,
        **client_options(cfg(secure_broker)),
    )
    assert [m.value for m in consumer] == [b"over SASL_SSL"]
    consumer.close()


def test_wrong_scram_password_and_untrusted_ca_refused(secure_broker, tmp_path):
    with pytest.raises(ClientError):
        KafkaProducer(**client_options(cfg(secure_broker, password="wrong")), max_block_ms=5000).send(
            "x", b"y"
        ).get(timeout=10)
    other_ca = tmp_path / "other.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=other",
         "-keyout", str(tmp_path / "k.pem"), "-out", str(other_ca)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    bad = cfg(secure_broker).model_copy(
        update={"tls": cfg(secure_broker).tls.model_copy(update={"ca_file": other_ca})}
    )
    with pytest.raises((ClientError, ssl.SSLError)):
        KafkaProducer(**client_options(bad), max_block_ms=5000).send("x", b"y").get(timeout=10)


@pytest.mark.fast
def test_gssapi_and_oauthbearer_options(tmp_path):
    g = KafkaTransportConfig(
        security_protocol="SASL_SSL", sasl_mechanism="GSSAPI", sasl_kerberos_domain_name="kafka.bank.example"
    )
    opts = client_options(g)
    assert opts["sasl_mechanism"] == "GSSAPI" and opts["sasl_kerberos_service_name"] == "kafka"
    assert opts["sasl_kerberos_domain_name"] == "kafka.bank.example" and "sasl_plain_password" not in opts
    token = tmp_path / "token"
    token.write_text("eyJ.first\n")
    o = client_options(
        KafkaTransportConfig(
            security_protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER", sasl_oauth_token_file=token
        )
    )
    provider = o["sasl_oauth_token_provider"]
    assert isinstance(provider, FileTokenProvider) and provider.token() == "eyJ.first"
    token.write_text("eyJ.refreshed")
    assert provider.token() == "eyJ.refreshed"  # re-read at each authentication
    for bad, why in [
        ({"security_protocol": "SASL_SSL"}, "needs sasl_mechanism"),
        ({"sasl_mechanism": "PLAIN", "sasl_username": "u", "sasl_password": "p"}, "needs security_protocol"),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256"}, "sasl_username"),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER"}, "sasl_oauth_token_file"),
    ]:
        with pytest.raises(ValidationError, match=why):
            KafkaTransportConfig(**bad)
