"""Client security settings pass through to kafka-python under its own names."""

from __future__ import annotations

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient

from models.config import ConfigError, KafkaSecurityConfig, parse_config


def test_every_security_option_is_a_kafka_python_client_option() -> None:
    security = KafkaSecurityConfig(
        security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="warden",
        sasl_plain_password="secret", ssl_cafile="/etc/ca.pem", ssl_certfile="/etc/c.pem", ssl_keyfile="/etc/k.pem",
        ssl_password="p", ssl_crlfile="/etc/crl.pem", ssl_check_hostname=False,
    )
    options = security.client_options()
    assert set(KafkaSecurityConfig.model_fields) == set(options)
    for client in (KafkaConsumer, KafkaProducer, KafkaAdminClient):
        unknown = set(options) - set(client.DEFAULT_CONFIG)
        assert not unknown, f"{client.__name__} does not take {unknown}"


def test_unset_options_are_left_to_kafka_python_defaults() -> None:
    assert KafkaSecurityConfig().client_options() == {"security_protocol": "PLAINTEXT", "ssl_check_hostname": True}


def test_sasl_without_credentials_is_refused_naming_the_section() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"kafka": {"security": {"security_protocol": "SASL_PLAINTEXT"}}})
    assert "kafka.security" in str(info.value) and "sasl_mechanism" in str(info.value)


def test_unknown_security_option_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"kafka\.security\.sasl_password"):
        parse_config({"kafka": {"security": {"sasl_password": "x"}}})


def test_secrets_do_not_show_in_the_config_repr() -> None:
    security = KafkaSecurityConfig(security_protocol="SASL_SSL", sasl_mechanism="PLAIN",
                                   sasl_plain_username="u", sasl_plain_password="hunter2")
    assert "hunter2" not in repr(security)
