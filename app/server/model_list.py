"""GET /v1/models from configuration: no upstream call per request."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from app.domain import Identity, ModelNotFound


class ModelCard(msgspec.Struct):
    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = "gandalf"


class _ModelPage(msgspec.Struct):
    data: list[ModelCard]
    object: str = "list"


_encode = msgspec.json.encode


class ModelList:
    """The models a caller may use, rendered once for callers without an allowlist."""

    def __init__(self, aliases: Iterable[str], created: int) -> None:
        self._cards = {a: ModelCard(id=a, created=created) for a in sorted(aliases)}
        self._all = _encode(_ModelPage(list(self._cards.values())))

    def render(self, identity: Identity, model: str | None = None) -> bytes:
        if model is not None:
            card = self._cards.get(model)
            if card is None or not identity.may_use(model):
                raise ModelNotFound(model)
            return _encode(card)
        if not identity.allowed_models:
            return self._all
        cards = [c for a, c in self._cards.items() if a in identity.allowed_models]
        return _encode(_ModelPage(cards))
