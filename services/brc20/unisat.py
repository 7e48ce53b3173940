"""The UniSat Open API:
`GET {base}/v1/indexer/address/{address}/brc20/summary?start=&limit=` with
`Authorization: Bearer <key>`, answering `{"code": 0, "msg", "data": {"height", "total",
"start", "detail": [{"ticker", "overallBalance", "transferableBalance",
"availableBalance"}]}}`; a non-zero `code` is an error.
"""

from __future__ import annotations

import httpx
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from services.brc20.errors import Brc20ConfigError, Brc20Unavailable
from services.brc20.http_indexer import HttpIndexer, Page

DEFAULT_URL = "https://open-api.unisat.io"
DEFAULT_PAGE_SIZE = 100


class _Detail(BaseModel):
    model_config = ConfigDict(frozen=True)
    ticker: StrictStr
    overall_balance: StrictStr = Field(alias="overallBalance")  # transferable + available


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True)
    total: int = Field(strict=True, ge=0)
    detail: list[_Detail]


class _Answer(BaseModel):
    model_config = ConfigDict(frozen=True)
    code: StrictInt
    msg: str | None = None
    data: _Data | None = None


class UniSatIndexer(HttpIndexer):
    """Holdings from UniSat's BRC-20 summary endpoint, every page of it. `api_key` goes
    in `Authorization: Bearer` when given (the public API refuses calls without one)."""

    name = "UniSat indexer"

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout_s: float = 5.0,
        page_size: int = DEFAULT_PAGE_SIZE,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if page_size < 1:
            raise Brc20ConfigError(f"UniSat page size must be positive, got {page_size}")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        super().__init__(base_url, headers=headers, timeout_s=timeout_s, transport=transport)
        self._page_size = page_size

    async def page(self, quoted_address: str, offset: int) -> Page:
        answer = await self.get_model(
            f"/v1/indexer/address/{quoted_address}/brc20/summary",
            {"start": offset, "limit": self._page_size},
            _Answer,
        )
        if answer.code != 0:
            msg = (answer.msg or "")[:200]
            raise Brc20Unavailable(f"{self.name} answered code {answer.code}: {msg!r}")
        if answer.data is None:
            raise Brc20Unavailable(f"{self.name} answered code 0 without data")
        return [(d.ticker, d.overall_balance) for d in answer.data.detail], answer.data.total
