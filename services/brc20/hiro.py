"""The Hiro Ordinals API (and self-hosted `hirosystems/ordinals-api`):
`GET {base}/ordinals/v1/brc-20/balances/{address}?limit=&offset=` answering
`{"limit", "offset", "total", "results": [{"ticker", "available_balance",
"transferrable_balance", "overall_balance"}]}` with balances as decimal strings.
"""

from __future__ import annotations

import httpx
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from services.brc20.errors import Brc20ConfigError
from services.brc20.http_indexer import HttpIndexer, Page

DEFAULT_URL = "https://api.hiro.so"
MAX_LIMIT = 60  # the API refuses larger pages


class _Balance(BaseModel):
    model_config = ConfigDict(frozen=True)
    ticker: StrictStr
    overall_balance: StrictStr  # available + transferrable: all the address holds


class _Page(BaseModel):
    model_config = ConfigDict(frozen=True)
    total: int = Field(strict=True, ge=0)
    results: list[_Balance]


class HiroIndexer(HttpIndexer):
    """Holdings from Hiro's BRC-20 balances endpoint, every page of it. `api_key` goes in
    the `x-api-key` header when given."""

    name = "Hiro indexer"

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout_s: float = 5.0,
        page_size: int = MAX_LIMIT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not 1 <= page_size <= MAX_LIMIT:
            raise Brc20ConfigError(f"Hiro page size must be 1..{MAX_LIMIT}, got {page_size}")
        headers = {"x-api-key": api_key} if api_key else {}
        super().__init__(base_url, headers=headers, timeout_s=timeout_s, transport=transport)
        self._page_size = page_size

    async def page(self, quoted_address: str, offset: int) -> Page:
        page = await self.get_model(
            f"/ordinals/v1/brc-20/balances/{quoted_address}",
            {"limit": self._page_size, "offset": offset},
            _Page,
        )
        return [(r.ticker, r.overall_balance) for r in page.results], page.total
