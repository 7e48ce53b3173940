"""What the HTTP indexers share: one `httpx.AsyncClient` each, and the translation of
every transport, status and decoding failure into `Brc20Unavailable`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from services.brc20.amounts import collect_holdings
from services.brc20.errors import Brc20ConfigError, Brc20Unavailable

ModelT = TypeVar("ModelT", bound=BaseModel)
Page = tuple[list[tuple[str, str]], int]  # ((ticker, overall balance) rows, total rows)

# A page loop ends on the indexer's `total`; this bound stops an indexer whose `total`
# keeps growing (or lies) from holding a request forever.
MAX_PAGES = 50


class HttpIndexer(ABC):
    """Base of the HTTP providers: walks an offset-paginated balance list to its `total`
    and turns it into holdings. `transport` replaces the network (tests pass none and
    talk to a real local server; an `httpx.MockTransport` also fits)."""

    name = "indexer"

    def __init__(
        self,
        base_url: str,
        *,
        headers: dict[str, str],
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise Brc20ConfigError(f"{self.name} URL must be http(s)://…, got {base_url!r}")
        if not timeout_s > 0:
            raise Brc20ConfigError(f"{self.name} timeout must be positive, got {timeout_s}")
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Accept": "application/json", **headers},
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
        )

    @property
    def base_url(self) -> str:
        return str(self._client.base_url).rstrip("/")

    async def balances(self, address: str) -> dict[str, int]:
        rows: list[tuple[str, str]] = []
        for _ in range(MAX_PAGES):
            page_rows, total = await self.page(quote(address, safe=""), len(rows))
            rows.extend(page_rows)
            if not page_rows or len(rows) >= total:
                break
        else:
            raise Brc20Unavailable(f"{self.name} listed more than {MAX_PAGES} pages")
        try:
            return collect_holdings(rows)
        except ValueError as exc:
            raise Brc20Unavailable(f"{self.name} answered a bad balance: {exc}") from exc

    @abstractmethod
    async def page(self, quoted_address: str, offset: int) -> Page:
        """One page of (ticker, overall balance) rows from `offset` on, and the total."""

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def get_model(self, path: str, params: dict[str, int], model: type[ModelT]) -> ModelT:
        """GET `path` and validate the JSON answer as `model`. Raises `Brc20Unavailable`
        on a transport error, a timeout, any status but 200, non-JSON or a wrong shape."""
        try:
            response = await self._client.get(path, params=params)
        except httpx.TimeoutException as exc:
            raise Brc20Unavailable(f"{self.name} timed out") from exc
        except httpx.HTTPError as exc:
            raise Brc20Unavailable(f"{self.name} unreachable: {type(exc).__name__}") from exc
        if response.status_code != httpx.codes.OK:
            raise Brc20Unavailable(f"{self.name} answered HTTP {response.status_code}")
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise Brc20Unavailable(
                f"{self.name} answered an unexpected shape ({where}: {first['msg']})"
            ) from exc
