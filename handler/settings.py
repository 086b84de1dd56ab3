"""Process settings read once from the environment into one typed object."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class Settings:
    destination_config_param: str
    access_key_param: str
    write_keys_param: str
    shared_secret_param: str | None
    delivery_budget_seconds: float
    concurrency: int
    max_retries: int
    connect_timeout: float
    read_timeout: float
    company_cache_seconds: float
    event_table: str
    dedup_window_seconds: int
    rejected_retention_days: int
    drain_budget_seconds: float
    max_attempts: int
    max_backoff_seconds: float
    retry_base_seconds: float
    quota_per_minute: int
    quota_per_day: int
    quota_window_seconds: float
    drain_settle_seconds: float
    aws_read_timeout: float
    # Share of the day's budget only identify and group events spend (shrinking to 0 at midnight UTC).
    state_reserve_percent: float = 20.0
    telemetry_max_age_hours: float = 72.0  # 0: parked telemetry never expires
    # Hosts outside *.gainsightcloud.com that may receive the secrets. From the stack's own
    # environment, never from the destination config that anyone with ssm:PutParameter can edit.
    gainsight_allowed_hosts: frozenset[str] = frozenset()
    allow_loopback_gainsight: bool = False  # local runs only: the sandbox listens on 127.0.0.1


_ALLOWED_HOST = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?$")


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float, maximum: float = math.inf) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum:g}, got {raw!r}")
    if value > maximum:
        raise ConfigurationError(f"{name} must be at most {maximum:g}, got {raw!r}")
    return value


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"{name} is not set")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "false", "0", "no"):
        return False
    if raw in ("true", "1", "yes"):
        return True
    raise ConfigurationError(f"{name} must be true or false, got {raw!r}")


def _allowed_hosts(env: Mapping[str, str], name: str) -> frozenset[str]:
    hosts = set()
    for entry in env.get(name, "").split(","):
        host = entry.strip().lower()
        if not host:
            continue
        if not _ALLOWED_HOST.match(host):
            raise ConfigurationError(f"{name} entry {entry.strip()!r} is not a host name with an optional :port")
        hosts.add(host.removesuffix(":443"))  # https' own port: the same host as without it
    return frozenset(hosts)


def parse_settings(env: Mapping[str, str]) -> Settings:
    """Validate the environment.

    Raises:
        ConfigurationError: naming the first missing or invalid variable.
    """
    return Settings(
        destination_config_param=_required(env, "DESTINATION_CONFIG_PARAM"),
        access_key_param=_required(env, "ACCESS_KEY_PARAM"),
        write_keys_param=_required(env, "WRITE_KEYS_PARAM"),
        shared_secret_param=env.get("SHARED_SECRET_PARAM", "").strip() or None,
        delivery_budget_seconds=_number(env, "DELIVERY_BUDGET_SECONDS", 8.0, minimum=1),
        concurrency=int(_number(env, "GAINSIGHT_CONCURRENCY", 8, minimum=1)),
        max_retries=int(_number(env, "GAINSIGHT_MAX_RETRIES", 3, minimum=0)),
        connect_timeout=_number(env, "GAINSIGHT_CONNECT_TIMEOUT", 2.0, minimum=0.1),
        read_timeout=_number(env, "GAINSIGHT_READ_TIMEOUT", 5.0, minimum=0.1),
        company_cache_seconds=_number(env, "COMPANY_CACHE_SECONDS", 300.0, minimum=0),
        event_table=_required(env, "EVENT_TABLE"),
        dedup_window_seconds=int(_number(env, "DEDUP_WINDOW_SECONDS", 86400, minimum=60)),
        rejected_retention_days=int(_number(env, "REJECTED_RETENTION_DAYS", 14, minimum=1)),
        drain_budget_seconds=_number(env, "DRAIN_BUDGET_SECONDS", 50.0, minimum=5),
        max_attempts=int(_number(env, "MAX_ATTEMPTS", 20, minimum=1)),
        max_backoff_seconds=_number(env, "MAX_BACKOFF_SECONDS", 3600.0, minimum=0.1),
        # One drain interval; both scale down together for a time-compressed load test.
        retry_base_seconds=_number(env, "RETRY_BASE_SECONDS", 60.0, minimum=0.01),
        drain_settle_seconds=_number(env, "DRAIN_SETTLE_SECONDS", 20.0, minimum=0),
        # The tenant's Gainsight budget, shared by every instance (handler/quota.py).
        quota_per_minute=int(_number(env, "QUOTA_PER_MINUTE", 100, minimum=1)),
        quota_per_day=int(_number(env, "QUOTA_PER_DAY", 50000, minimum=1)),
        quota_window_seconds=_number(env, "QUOTA_WINDOW_SECONDS", 60.0, minimum=0.1),
        state_reserve_percent=_number(env, "STATE_RESERVE_PERCENT", 20.0, minimum=0, maximum=100),
        telemetry_max_age_hours=_number(env, "TELEMETRY_MAX_AGE_HOURS", 72.0, minimum=0),
        # DynamoDB answers in milliseconds; a local moto server, copying its tables, can take seconds.
        aws_read_timeout=_number(env, "AWS_READ_TIMEOUT_SECONDS", 2.0, minimum=0.1),
        gainsight_allowed_hosts=_allowed_hosts(env, "GAINSIGHT_ALLOWED_HOSTS"),
        allow_loopback_gainsight=_flag(env, "ALLOW_LOOPBACK_GAINSIGHT"),
    )


@cache
def settings() -> Settings:
    """The settings of this container, parsed on first use."""
    return parse_settings(os.environ)
