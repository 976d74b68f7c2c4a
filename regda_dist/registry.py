"""One registry shape for every named implementation (timm's register / create / list).

Backbones, proxies, dataset readers and keypoint sets each keep a `Registry`: a string in a
config picks an entry, an unknown string is one line that lists the registered names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one kind by name. `populate` imports the modules that register the built-in
    entries, on first use (so importing the registry itself stays cheap)."""

    def __init__(
        self,
        kind: str,
        error: type[Exception] = ValueError,
        populate: Callable[[], None] | None = None,
    ):
        self.kind, self.error, self._populate = kind, error, populate
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        """Add `entry` under `name`; a name is registered once."""
        if not name or name in self._entries:
            raise ValueError(f"{self.kind} name {name!r} is empty or registered twice")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        """The entry registered under `name`."""
        self._load()
        if name not in self._entries:
            raise self.error(f"unknown {self.kind} {name!r}; registered: {', '.join(self.list())}")
        return self._entries[name]

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the (factory) entry `name` with the arguments."""
        return self.get(name)(*args, **kwargs)

    def list(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def ordered(self) -> list[str]:
        """The names in the order they were registered."""
        self._load()
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def _load(self) -> None:
        if self._populate is not None:
            populate, self._populate = self._populate, None
            populate()
