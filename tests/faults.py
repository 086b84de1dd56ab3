"""Faults where AWS really fails, injected at the boto3 client layer (botocore's event hooks) of the
client the handler itself uses: calls failing or throttled after the SDK's own retries, batch calls
that leave part of their work unprocessed, and the function dying before or after any call."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

ERROR_CODES = ("ProvisionedThroughputExceededException", "ThrottlingException", "InternalServerError")


class FunctionDied(BaseException):
    """The Lambda was killed here: no answer, no further call. A BaseException, like the runtime
    stopping the process: nothing of ours may catch it."""


@dataclass
class AwsFaults:
    """Seeded faults for one DynamoDB client. `only` limits them to some operations."""

    rng: random.Random
    error_rate: float = 0.0  # the call fails after the SDK's retries (throttled, 5xx)
    partial_rate: float = 0.0  # a batch call processes only part of its items
    die_before_rate: float = 0.0  # the function dies just before the call
    die_after_rate: float = 0.0  # the function dies just after the call succeeded
    only: frozenset[str] | None = None
    log: list[str] = field(default_factory=list)
    on_death: Callable[[str], None] | None = None

    def install(self, client: Any) -> None:
        events = client.meta.events
        if getattr(client, "_faults_installed", None) is self:
            return
        client._faults_dead = False  # a client belongs to one function: dead with it, for good

        def before_call(**kwargs: Any) -> None:
            self._before_call(client=client, **kwargs)

        def after_call(**kwargs: Any) -> None:
            self._after_call(client=client, **kwargs)

        events.register("before-parameter-build.dynamodb.*", self._before_build, unique_id="faults-build")
        events.register("before-call.dynamodb.*", before_call, unique_id="faults-before")
        events.register("after-call.dynamodb.*", after_call, unique_id="faults-after")
        client._faults_installed = self

    def _applies(self, operation: str) -> bool:
        return self.only is None or operation in self.only

    def _die(self, where: str, client: Any) -> None:
        self.log.append(where)
        client._faults_dead = True
        if self.on_death is not None:
            self.on_death(where)
        raise FunctionDied(where)

    def revive(self) -> None:
        """A new container (a new Lambda) takes over: its new client is alive; the dead one stays dead."""

    def _before_build(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        # A partial batch: some items are held back from the real call and reported unprocessed.
        if not self._applies(model.name) or model.name not in ("BatchGetItem", "BatchWriteItem"):
            return
        if self.rng.random() >= self.partial_rate:
            return
        [(table, request)] = params["RequestItems"].items()
        items = request["Keys"] if model.name == "BatchGetItem" else request
        if len(items) < 2:
            return
        keep = self.rng.randrange(1, len(items))
        held = items[keep:]
        # A new request for this call only: the caller's own (which it may send again) is untouched.
        rest = {k: v for k, v in request.items() if k != "Keys"} if model.name == "BatchGetItem" else {}
        kept = {**rest, "Keys": items[:keep]} if model.name == "BatchGetItem" else items[:keep]
        params["RequestItems"] = {table: kept}
        self.log.append(f"partial {model.name}")
        context["held_back"] = (table, held, rest)

    def _before_call(self, model: Any, context: dict[str, Any], client: Any, **_: Any) -> None:
        if client._faults_dead:
            # A dead function makes no more calls: its other threads stop at their next one.
            raise FunctionDied(f"already dead before {model.name}")
        if not self._applies(model.name):
            return
        draw = self.rng.random()
        if draw < self.die_before_rate:
            self._die(f"died before {model.name}", client)
        if draw < self.die_before_rate + self.error_rate:
            code = self.rng.choice(ERROR_CODES)
            self.log.append(f"{code} on {model.name}")
            raise ClientError({"Error": {"Code": code, "Message": "injected"}}, model.name)

    def _after_call(self, parsed: dict[str, Any], model: Any, context: dict[str, Any], client: Any, **_: Any) -> None:
        held = context.pop("held_back", None)
        if held is not None and "Error" not in parsed:
            table, items, rest = held
            if model.name == "BatchGetItem":
                parsed.setdefault("UnprocessedKeys", {})[table] = {"Keys": items, **rest}
            else:
                parsed.setdefault("UnprocessedItems", {})[table] = items
        if self._applies(model.name) and "Error" not in parsed and self.rng.random() < self.die_after_rate:
            self._die(f"died after {model.name}", client)


class DeadThreads:
    """A dead function's worker threads: like a real Lambda's, whose process is gone, none of them
    reaches Gainsight again (each dies at its next HTTP call). `bury` waits for them to end."""

    def __init__(self) -> None:
        self._dead: set[threading.Thread] = set()

    def install(self, monkeypatch: Any) -> None:
        import urllib3

        original = urllib3.PoolManager.urlopen
        dead = self._dead

        def urlopen(manager: Any, *args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() in dead:
                raise FunctionDied("the function died: its threads make no more calls")
            return original(manager, *args, **kwargs)

        monkeypatch.setattr(urllib3.PoolManager, "urlopen", urlopen)

    def kill(self, executor: Any) -> None:
        """The function died: its workers make no more calls."""
        self._dead.update(executor._threads)

    def bury(self, executor: Any) -> None:
        """Wait until the dead function's workers have ended: what they had in flight has landed.
        Called once the dead invocation's own thread is gone (nothing submits work any more)."""
        self.kill(executor)
        executor.shutdown(wait=True, cancel_futures=True)
