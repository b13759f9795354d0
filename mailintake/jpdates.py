"""Japan time, fiscal years (April to March) and Japanese era dates, as
clerks write them (令和8年11月21日). The API speaks ISO 8601."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

JST = ZoneInfo("Asia/Tokyo")

# (first day, name); newest first.
ERAS = (
    (dt.date(2019, 5, 1), "令和"),
    (dt.date(1989, 1, 8), "平成"),
    (dt.date(1926, 12, 25), "昭和"),
)
WEEKDAYS = "月火水木金土日"


def to_jst(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(JST)


def jst_date(moment: dt.datetime) -> dt.date:
    return to_jst(moment).date()


def fiscal_year(day: dt.date) -> int:
    """The 年度 a day belongs to: 2026-03-31 → 2025, 2026-04-01 → 2026."""
    return day.year if day.month >= 4 else day.year - 1


def era_year(year: int, day: dt.date | None = None) -> str:
    """令和8 for 2026. ``day`` decides in a year two eras share."""
    probe = day or dt.date(year, 12, 31)
    for start, name in ERAS:
        if probe >= start:
            number = year - start.year + 1
            return f"{name}{'元' if number == 1 else number}"
    return str(year)


def wareki(day: dt.date) -> str:
    return f"{era_year(day.year, day)}年{day.month}月{day.day}日"


def wareki_fiscal_year(year: int) -> str:
    """2026 → 令和8年度 (named after the era on its first day, 4 月 1 日)."""
    return f"{era_year(year, dt.date(year, 4, 1))}年度"


def wareki_datetime(moment: dt.datetime) -> str:
    local = to_jst(moment)
    return f"{wareki(local.date())}（{WEEKDAYS[local.weekday()]}）{local:%H:%M}"


def list_datetime(moment: dt.datetime) -> str:
    """For lists, in full as people write it: 2026年12月1日(火) 9:05."""
    local = to_jst(moment)
    return f"{local.year}年{local.month}月{local.day}日({WEEKDAYS[local.weekday()]}) {local.hour}:{local:%M}"
