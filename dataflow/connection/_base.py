"""The shape every connection shares."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

from dataflow._core.exports import publish


class Connection(ABC):
    """A blocking connection: open with `connect()` or `with`, close with `disconnect()`."""

    @abstractmethod
    def connect(self) -> None: ...

    @abstractmethod
    def disconnect(self) -> None: ...

    @abstractmethod
    def ping(self) -> None:
        """Raise `DataflowConnectionError` unless the server answers."""

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.disconnect()


publish("dataflow.connection", Connection)
