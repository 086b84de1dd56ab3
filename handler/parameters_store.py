"""SSM Parameter Store at the edge: write keys and the destination, cached by Powertools."""

from __future__ import annotations

from functools import lru_cache

from config import Destination, parse_destination
from errors import ConfigurationError
from settings import Settings


def _get(name: str, *, secure: bool) -> str:
    # Imported here: Parameters pulls in boto3, which a /health call never needs.
    from aws_lambda_powertools.utilities import parameters

    try:
        # max_age comes from POWERTOOLS_PARAMETERS_MAX_AGE (default 300 s).
        value = parameters.get_parameter(name, decrypt=secure)
    except parameters.exceptions.GetParameterError as error:
        raise ConfigurationError(
            f"SSM parameter {name} could not be read ({type(error.__cause__).__name__})"
        ) from error
    return str(value)


def write_keys(settings: Settings) -> frozenset[str]:
    """The accepted sender write keys (comma-separated in one SecureString)."""
    raw = _get(settings.write_keys_param, secure=True)
    keys = frozenset(key.strip() for key in raw.split(",") if key.strip())
    if not keys:
        raise ConfigurationError(f"SSM parameter {settings.write_keys_param} holds no write key")
    return keys


@lru_cache(maxsize=4)
def _destination(
    raw: str, access_key: str, shared_secret: str | None, allowed_hosts: frozenset[str], allow_loopback: bool
) -> Destination:
    return parse_destination(raw, access_key, shared_secret, allowed_hosts=allowed_hosts, allow_loopback=allow_loopback)


def destination(settings: Settings) -> Destination:
    """The validated destination; re-parsed only when a parameter's value changes.

    Raises:
        ConfigurationError: naming the parameter or config key that is wrong.
    """
    shared_secret = _get(settings.shared_secret_param, secure=True) if settings.shared_secret_param else None
    return _destination(
        _get(settings.destination_config_param, secure=False),
        _get(settings.access_key_param, secure=True),
        shared_secret,
        settings.gainsight_allowed_hosts,
        settings.allow_loopback_gainsight,
    )
