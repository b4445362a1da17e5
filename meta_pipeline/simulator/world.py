"""The simulated advertiser: accounts, objects and insights, all derived from a seed.

Nothing here is random at run time: every value is a hash of the seed and the
ids involved, so the same ``(seed, accounts, scale, anchor day)`` always gives
the same world, whatever the fault profile. Objects are generated per account on
first use; insights numbers are computed per (ad, day) on demand, never stored.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

JsonDict = dict[str, Any]

OBJECT_KINDS = ("campaigns", "adsets", "ads", "adcreatives", "activities")
LEVELS = ("account", "campaign", "adset", "ad")
STATUSES = ("ACTIVE", "PAUSED", "ARCHIVED", "DELETED")
# Edges leave these out unless effective_status / filtering asks for them (as Meta does).
HIDDEN_BY_DEFAULT = frozenset({"DELETED", "ARCHIVED"})
ATTRIBUTION_DAYS = 28
MAX_HISTORY_MONTHS = 37

TIMEZONES = (
    ("America/Los_Angeles", "USD"),
    ("Europe/London", "GBP"),
    ("Asia/Tokyo", "JPY"),
    ("Australia/Sydney", "AUD"),
    ("UTC", "EUR"),
    ("America/New_York", "USD"),
    ("Asia/Kolkata", "INR"),
    ("America/Sao_Paulo", "BRL"),
)

BREAKDOWN_VALUES: dict[str, tuple[str, ...]] = {
    "age": ("18-24", "25-34", "35-44", "45-54", "55-64", "65+"),
    "gender": ("female", "male", "unknown"),
    "country": ("US", "GB", "DE", "FR", "JP", "AU", "CA", "BR"),
    "publisher_platform": ("facebook", "instagram", "audience_network", "messenger"),
    "device_platform": ("mobile_app", "mobile_web", "desktop"),
}

# Metric vector layout: four base integers, then one slot per (action type, window).
BASE_METRICS = ("impressions", "clicks", "spend_cents", "reach")
ACTION_TYPES = (
    "link_click",
    "post_engagement",
    "landing_page_view",
    "offsite_conversion.fb_pixel_purchase",
)
CONVERSION_ACTIONS = frozenset({"offsite_conversion.fb_pixel_purchase", "landing_page_view"})
ACTION_WINDOWS = ("value", "1d_click", "7d_click", "28d_click", "1d_view")
VECTOR_SIZE = len(BASE_METRICS) + len(ACTION_TYPES) * len(ACTION_WINDOWS)

KIND_DIGIT = {"campaigns": 1, "adsets": 2, "ads": 3, "adcreatives": 4}
DIGIT_KIND = {v: k for k, v in KIND_DIGIT.items()}
NODE_TYPE = {
    "campaigns": "Campaign",
    "adsets": "AdSet",
    "ads": "Ad",
    "adcreatives": "AdCreative",
    "activities": "AdActivity",
}

INSIGHTS_FIELDS = (
    "account_id",
    "account_name",
    "account_currency",
    "campaign_id",
    "campaign_name",
    "adset_id",
    "adset_name",
    "ad_id",
    "ad_name",
    "objective",
    "impressions",
    "clicks",
    "spend",
    "reach",
    "frequency",
    "cpc",
    "cpm",
    "ctr",
    "actions",
    "date_start",
    "date_stop",
)
LEVEL_FIELDS = {
    "account": ("account_id", "account_name", "account_currency"),
    "campaign": (
        "account_id",
        "account_name",
        "account_currency",
        "campaign_id",
        "campaign_name",
        "objective",
    ),
    "adset": (
        "account_id",
        "account_name",
        "account_currency",
        "campaign_id",
        "campaign_name",
        "objective",
        "adset_id",
        "adset_name",
    ),
    "ad": (
        "account_id",
        "account_name",
        "account_currency",
        "campaign_id",
        "campaign_name",
        "objective",
        "adset_id",
        "adset_name",
        "ad_id",
        "ad_name",
    ),
}


def stable_hash(*parts: object) -> int:
    """A 64-bit hash of the parts, identical across processes and Python versions."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def months_before(day: dt.date, months: int) -> dt.date:
    month_index = day.year * 12 + day.month - 1 - months
    year, month = divmod(month_index, 12)
    last_day = calendar.monthrange(year, month + 1)[1]
    return dt.date(year, month + 1, min(day.day, last_day))


def format_time(moment: dt.datetime) -> str:
    """Meta's timestamp format: ``2023-03-21T22:41:46-0700``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S%z")


def format_cents(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def format_ratio(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text or "0"


@dataclass(frozen=True)
class Account:
    id: str
    account_id: str
    name: str
    currency: str
    timezone_name: str
    account_status: int
    index: int
    created_time: str

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone_name)

    def fields(self) -> JsonDict:
        offset = dt.datetime.now(self.tz).utcoffset() or dt.timedelta(0)
        return {
            "id": self.id,
            "account_id": self.account_id,
            "name": self.name,
            "currency": self.currency,
            "timezone_name": self.timezone_name,
            "timezone_offset_hours_utc": offset.total_seconds() / 3600,
            "account_status": self.account_status,
            "business_name": f"Simulated Business {self.index + 1}",
            "created_time": self.created_time,
            "disable_reason": 0,
            "amount_spent": "0",
        }


@dataclass
class SimObject:
    """One generated object; ``fields`` is exactly what the API serves (all fields)."""

    id: str
    kind: str
    account: Account
    fields: JsonDict
    created_unix: int
    updated_unix: int
    campaign_id: str | None = None
    adset_id: str | None = None
    # Ads only: the local days during which the ad could deliver.
    delivery_start: dt.date | None = None
    delivery_stop: dt.date | None = None  # None: still delivering up to "today"
    profile: tuple[int, ...] = ()
    weights: dict[str, tuple[int, ...]] = field(default_factory=dict)


@dataclass
class AccountData:
    account: Account
    by_kind: dict[str, list[SimObject]]
    by_id: dict[str, SimObject]


class World:
    """Deterministic accounts, objects and insights for ``(seed, accounts, scale, today)``.

    ``today`` anchors object timestamps (they never move); insights take the
    current simulated day separately, so attribution drift follows the clock.
    """

    def __init__(
        self,
        seed: int = 7,
        accounts: int = 3,
        scale: float = 1.0,
        today: dt.date | None = None,
    ) -> None:
        if accounts < 1:
            raise ValueError("accounts must be at least 1")
        if scale <= 0:
            raise ValueError("scale must be positive")
        self.seed = seed
        self.scale = scale
        self.anchor_today = today or dt.date.today()
        self.id_prefix = f"23{stable_hash(seed, 'prefix') % 10000:04d}"
        self._lock = threading.Lock()
        self._data: dict[int, AccountData] = {}
        self.accounts: list[Account] = []
        seen: set[str] = set()
        for index in range(accounts):
            salt = 0
            while True:
                digits = str(10**14 + stable_hash(seed, "account", index, salt) % (9 * 10**14))
                if digits not in seen:
                    break
                salt += 1
            seen.add(digits)
            tz_name, currency = TIMEZONES[(stable_hash(seed, "tz") + index) % len(TIMEZONES)]
            tz = ZoneInfo(tz_name)
            created_day = self.anchor_today - dt.timedelta(days=800 + index)
            self.accounts.append(
                Account(
                    id=f"act_{digits}",
                    account_id=digits,
                    name=f"Sim Account {index + 1} ({tz_name})",
                    currency=currency,
                    timezone_name=tz_name,
                    account_status=1 if stable_hash(seed, "status", index) % 10 else 2,
                    index=index,
                    created_time=format_time(
                        dt.datetime.combine(created_day, dt.time(9, 30), tzinfo=tz)
                    ),
                )
            )
        self._by_act = {a.id: a for a in self.accounts}

    # ------------------------------------------------------------------ lookup

    def account(self, account_id: str) -> Account:
        key = account_id if account_id.startswith("act_") else f"act_{account_id}"
        try:
            return self._by_act[key]
        except KeyError:
            raise KeyError(f"unknown ad account {account_id!r}") from None

    def has_account(self, account_id: str) -> bool:
        return account_id in self._by_act

    def data(self, account_id: str) -> AccountData:
        account = self.account(account_id)
        with self._lock:
            cached = self._data.get(account.index)
            if cached is None:
                cached = self._generate(account)
                self._data[account.index] = cached
            return cached

    def find_object(self, object_id: str) -> SimObject | None:
        """Any campaign, ad set, ad or creative by id (ids encode their account)."""
        if not object_id.startswith(self.id_prefix) or len(object_id) != 17:
            return None
        index = int(object_id[6:9])
        if index >= len(self.accounts):
            return None
        return self.data(self.accounts[index].id).by_id.get(object_id)

    def objects(self, account_id: str, kind: str) -> list[JsonDict]:
        """Every object of that kind, all statuses and all fields (copies)."""
        if kind not in OBJECT_KINDS:
            raise ValueError(f"unknown object kind {kind!r}; expected one of {OBJECT_KINDS}")
        return [dict(o.fields) for o in self.data(account_id).by_kind[kind]]

    def visible_objects(
        self, account_id: str, kind: str, effective_status: Iterable[str] | None = None
    ) -> list[JsonDict]:
        """What an edge serves: DELETED/ARCHIVED hidden unless asked for explicitly."""
        wanted = set(effective_status) if effective_status is not None else None
        result = []
        for obj in self.objects(account_id, kind):
            status = obj.get("effective_status")
            if (
                status is None
                or (wanted is None and status not in HIDDEN_BY_DEFAULT)
                or (wanted is not None and status in wanted)
            ):
                result.append(obj)
        return result

    # -------------------------------------------------------------- generation

    def _object_id(self, account: Account, kind: str, seq: int) -> str:
        return f"{self.id_prefix}{account.index:03d}{KIND_DIGIT[kind]}{seq:07d}"

    def _moment(self, account: Account, day: dt.date, salt: object) -> dt.datetime:
        seconds = stable_hash(self.seed, "second", salt) % 86400
        local = dt.datetime.combine(day, dt.time(0), tzinfo=account.tz)
        return local + dt.timedelta(seconds=seconds)

    def _status(self, salt: object, active: int, paused: int, archived: int) -> str:
        roll = stable_hash(self.seed, "status", salt) % 100
        if roll < active:
            return "ACTIVE"
        if roll < active + paused:
            return "PAUSED"
        if roll < active + paused + archived:
            return "ARCHIVED"
        return "DELETED"

    def _timestamps(
        self, account: Account, salt: object, not_before: dt.date, spread_days: int = 60
    ) -> tuple[dt.datetime, dt.datetime]:
        today = self.anchor_today
        # Children follow their parent within ~2 months, so the history stays spread out.
        span = max(1, min((today - not_before).days, spread_days))
        created_day = not_before + dt.timedelta(days=stable_hash(self.seed, "c", salt) % span)
        created = self._moment(account, created_day, ("c", salt))
        roll = stable_hash(self.seed, "u", salt)
        if roll % 100 < 35:
            # Recently touched: gives incremental readers something to find every day.
            updated_day = today - dt.timedelta(days=(roll >> 8) % 14)
        else:
            age = max(0, (today - created_day).days)
            updated_day = created_day + dt.timedelta(days=(roll >> 8) % (age + 1))
        updated_day = max(updated_day, created_day)
        updated = self._moment(account, updated_day, ("u", salt))
        if updated < created:
            updated = created
        return created, updated

    def _generate(self, account: Account) -> AccountData:
        seed = self.seed
        by_kind: dict[str, list[SimObject]] = {k: [] for k in OBJECT_KINDS}
        by_id: dict[str, SimObject] = {}
        history_start = self.anchor_today - dt.timedelta(days=730)
        n_campaigns = max(1, round(8 * self.scale))
        adset_seq = ad_seq = 0
        objectives = ("OUTCOME_SALES", "OUTCOME_TRAFFIC", "OUTCOME_AWARENESS", "OUTCOME_LEADS")
        for c in range(n_campaigns):
            cid = self._object_id(account, "campaigns", c + 1)
            c_status = self._status(cid, 70, 15, 10)
            c_created, c_updated = self._timestamps(account, cid, history_start, 730)
            c_eff = c_status
            objective = objectives[stable_hash(seed, "obj", cid) % len(objectives)]
            budget = str(1000 * (1 + stable_hash(seed, "budget", cid) % 50))
            campaign_fields: JsonDict = {
                "id": cid,
                "account_id": account.account_id,
                "name": f"Campaign {c + 1} - {objective.split('_')[1].title()}",
                "status": c_status,
                "configured_status": c_status,
                "effective_status": c_eff,
                "objective": objective,
                "buying_type": "AUCTION",
                "bid_strategy": "LOWEST_COST_WITHOUT_CAP",
                "special_ad_categories": [],
                "start_time": format_time(c_created),
                "created_time": format_time(c_created),
                "updated_time": format_time(c_updated),
            }
            if stable_hash(seed, "bt", cid) % 2:
                campaign_fields["daily_budget"] = budget
                campaign_fields["budget_remaining"] = str(int(budget) // 2)
            else:
                campaign_fields["lifetime_budget"] = str(int(budget) * 30)
                campaign_fields["budget_remaining"] = str(int(budget) * 15)
            campaign = self._add(
                by_kind, by_id, cid, "campaigns", account, campaign_fields, c_created, c_updated
            )
            n_adsets = 2 + stable_hash(seed, "n_adsets", cid) % 3
            for _ in range(n_adsets):
                adset_seq += 1
                sid = self._object_id(account, "adsets", adset_seq)
                s_status = self._status(sid, 80, 10, 6)
                s_created, s_updated = self._timestamps(account, sid, c_created.date())
                s_eff = _effective(s_status, [("CAMPAIGN", c_status)], sid, seed)
                adset_fields: JsonDict = {
                    "id": sid,
                    "account_id": account.account_id,
                    "campaign_id": cid,
                    "name": f"Ad set {adset_seq}",
                    "status": s_status,
                    "configured_status": s_status,
                    "effective_status": s_eff,
                    "billing_event": "IMPRESSIONS",
                    "optimization_goal": "LINK_CLICKS",
                    "bid_amount": 100 + stable_hash(seed, "bid", sid) % 400,
                    "daily_budget": str(500 * (1 + stable_hash(seed, "sb", sid) % 40)),
                    "budget_remaining": str(250 * (1 + stable_hash(seed, "sb", sid) % 40)),
                    "targeting": {
                        "age_min": 18,
                        "age_max": 65,
                        "geo_locations": {"countries": ["US", "GB"]},
                    },
                    "start_time": format_time(s_created),
                    "created_time": format_time(s_created),
                    "updated_time": format_time(s_updated),
                }
                self._add(
                    by_kind, by_id, sid, "adsets", account, adset_fields, s_created, s_updated
                )
                by_id[sid].campaign_id = cid
                n_ads = 3 + stable_hash(seed, "n_ads", sid) % 3
                for _ in range(n_ads):
                    ad_seq += 1
                    aid = self._object_id(account, "ads", ad_seq)
                    crid = self._object_id(account, "adcreatives", ad_seq)
                    a_status = self._status(aid, 80, 10, 6)
                    a_created, a_updated = self._timestamps(account, aid, s_created.date())
                    a_eff = _effective(
                        a_status, [("CAMPAIGN", c_status), ("ADSET", s_status)], aid, seed
                    )
                    ad_fields: JsonDict = {
                        "id": aid,
                        "account_id": account.account_id,
                        "campaign_id": cid,
                        "adset_id": sid,
                        "name": f"Ad {ad_seq}",
                        "status": a_status,
                        "configured_status": a_status,
                        "effective_status": a_eff,
                        "creative": {"id": crid},
                        "bid_type": "ABSOLUTE_OCPM",
                        "created_time": format_time(a_created),
                        "updated_time": format_time(a_updated),
                    }
                    ad = self._add(
                        by_kind, by_id, aid, "ads", account, ad_fields, a_created, a_updated
                    )
                    ad.campaign_id, ad.adset_id = cid, sid
                    self._plan_delivery(ad, a_eff, a_created, a_updated, campaign, by_id[sid])
                    object_type = ("SHARE", "VIDEO", "PHOTO")[stable_hash(seed, "ot", crid) % 3]
                    creative_fields: JsonDict = {
                        "id": crid,
                        "account_id": account.account_id,
                        "name": f"Creative for Ad {ad_seq}",
                        "title": f"Offer {ad_seq}",
                        "body": f"Simulated creative body {stable_hash(seed, 'body', crid) % 1000}",
                        "object_type": object_type,
                        "status": "DELETED" if a_status == "DELETED" else "ACTIVE",
                        "call_to_action_type": "LEARN_MORE",
                        "thumbnail_url": f"https://scontent.simulator.invalid/t/{crid}.jpg",
                    }
                    # Creatives carry no created/updated time at Meta either.
                    self._add(by_kind, by_id, crid, "adcreatives", account, creative_fields, 0, 0)
        by_kind["activities"] = self._activities(account, by_kind)
        for kind in ("campaigns", "adsets", "ads"):
            # Newest first, as the edges serve them.
            by_kind[kind].sort(key=lambda o: (o.created_unix, o.id), reverse=True)
        by_kind["adcreatives"].sort(key=lambda o: o.id, reverse=True)
        return AccountData(account=account, by_kind=by_kind, by_id=by_id)

    def _add(
        self,
        by_kind: dict[str, list[SimObject]],
        by_id: dict[str, SimObject],
        object_id: str,
        kind: str,
        account: Account,
        fields: JsonDict,
        created: dt.datetime | int,
        updated: dt.datetime | int,
    ) -> SimObject:
        obj = SimObject(
            id=object_id,
            kind=kind,
            account=account,
            fields=fields,
            created_unix=int(created.timestamp()) if isinstance(created, dt.datetime) else created,
            updated_unix=int(updated.timestamp()) if isinstance(updated, dt.datetime) else updated,
        )
        by_kind[kind].append(obj)
        by_id[object_id] = obj
        return obj

    def _plan_delivery(
        self,
        ad: SimObject,
        effective: str,
        created: dt.datetime,
        updated: dt.datetime,
        campaign: SimObject,
        adset: SimObject,
    ) -> None:
        seed = self.seed
        roll = stable_hash(seed, "deliver", ad.id)
        if effective in ("PENDING_REVIEW", "DISAPPROVED", "IN_PROCESS") or roll % 10 == 0:
            return  # never delivered: no insights rows at all
        ad.delivery_start = created.date() + dt.timedelta(days=roll % 3)
        if effective in ("ACTIVE", "WITH_ISSUES"):
            ad.delivery_stop = None
        else:
            stopped = updated
            if effective == "CAMPAIGN_PAUSED":
                stopped = dt.datetime.fromtimestamp(campaign.updated_unix, tz=ad.account.tz)
            elif effective == "ADSET_PAUSED":
                stopped = dt.datetime.fromtimestamp(adset.updated_unix, tz=ad.account.tz)
            ad.delivery_stop = max(stopped.date(), ad.delivery_start)
        ad.profile = (
            30 + stable_hash(seed, "size", ad.id) % 270,  # impression scale, percent
            50 + stable_hash(seed, "ctr", ad.id) % 350,  # click-through rate, basis points
            200 + stable_hash(seed, "cpm", ad.id) % 1800,  # cost per mille, cents
            70 + stable_hash(seed, "reach", ad.id) % 26,  # reach as percent of impressions
            2 + stable_hash(seed, "conv", ad.id) % 9,  # purchases per 100 clicks
        )
        ad.weights = {
            dim: tuple(1 + stable_hash(seed, "w", ad.id, dim, v) % 20 for v in values)
            for dim, values in BREAKDOWN_VALUES.items()
        }

    def _activities(self, account: Account, by_kind: dict[str, list[SimObject]]) -> list[SimObject]:
        events: list[tuple[int, str, JsonDict]] = []
        object_types = {"campaigns": "CAMPAIGN_GROUP", "adsets": "CAMPAIGN", "ads": "ADGROUP"}
        labels = {"campaigns": "campaign", "adsets": "ad_set", "ads": "ad"}
        for kind in ("campaigns", "adsets", "ads"):
            for obj in by_kind[kind]:
                label = labels[kind]
                moments = [
                    (obj.created_unix, f"create_{label}", f"Created {label.replace('_', ' ')}")
                ]
                if obj.updated_unix != obj.created_unix:
                    moments.append(
                        (
                            obj.updated_unix,
                            f"update_{label}_run_status",
                            f"Updated {label.replace('_', ' ')} run status",
                        )
                    )
                for unix, event_type, translated in moments:
                    local = dt.datetime.fromtimestamp(unix, tz=account.tz)
                    actor = stable_hash(self.seed, "actor", obj.id) % 3
                    events.append(
                        (
                            unix,
                            obj.id,
                            {
                                "actor_id": str(100000000000000 + actor),
                                "actor_name": ("Alex Doe", "Sam Roe", "Automated Rules")[actor],
                                "application_id": "119211728144504",
                                "application_name": "Ads Manager",
                                "date_time_in_timezone": local.strftime("%m/%d/%Y at %I:%M %p"),
                                "event_time": format_time(local),
                                "event_type": event_type,
                                "extra_data": json.dumps(
                                    {"old_value": "PAUSED", "new_value": obj.fields["status"]}
                                    if event_type.endswith("run_status")
                                    else {"name": obj.fields["name"]},
                                    separators=(",", ":"),
                                ),
                                "object_id": obj.id,
                                "object_name": obj.fields["name"],
                                "object_type": object_types[kind],
                                "translated_event_type": translated,
                            },
                        )
                    )
        events.sort(key=lambda e: (e[0], e[1]), reverse=True)
        return [
            SimObject(
                id=f"{obj_id}:{unix}",
                kind="activities",
                account=account,
                fields=fields,
                created_unix=unix,
                updated_unix=unix,
            )
            for unix, obj_id, fields in events
        ]

    # ---------------------------------------------------------------- insights

    def ad_day(self, ad: SimObject, day: dt.date, today: dt.date) -> list[int] | None:
        """The metric vector of one ad on one local day as seen on ``today`` (None: no delivery)."""
        start = ad.delivery_start
        if start is None or day < start or day > today:
            return None
        stop = ad.delivery_stop
        if stop is not None and day > stop:
            return None
        roll = stable_hash(self.seed, "d", ad.id, day.toordinal())
        if roll % 100 >= 85:
            return None
        size, ctr_bp, cpm_cents, reach_pct, conv_pct = ad.profile
        impressions = (200 + (roll >> 8) % 1800) * size // 100
        if impressions <= 0:
            return None
        clicks = min(impressions, impressions * ctr_bp // 10000 + (roll >> 20) % 3)
        spend = impressions * cpm_cents // 1000
        reach = max(1, impressions * reach_pct // 100)
        age = (today - day).days
        # Conversions keep arriving for 28 days after the day (attribution), then freeze.
        maturity = 1000 if age >= ATTRIBUTION_DAYS else 550 + 450 * age // ATTRIBUTION_DAYS
        vector = [impressions, clicks, spend, reach]
        engagement = clicks + (roll >> 24) % (clicks + 1)
        for action in ACTION_TYPES:
            if action == "link_click":
                vector += [clicks, clicks, clicks, clicks, 0]
            elif action == "post_engagement":
                vector += [engagement, engagement, engagement, engagement, 0]
            else:
                base = (
                    clicks * 6 // 10 if action == "landing_page_view" else clicks * conv_pct // 100
                )
                base += (roll >> (30 + len(action) % 7)) % 2
                d28 = base * maturity // 1000
                d7 = base * 85 // 100 * maturity // 1000
                d1 = base * 60 // 100 * maturity // 1000
                view = (base * 20 // 100 + (roll >> 40) % 2) * maturity // 1000
                vector += [d7 + view, d1, d7, d28, view]
        return vector

    def ads_for(self, account_id: str) -> list[SimObject]:
        return self.data(account_id).by_kind["ads"]

    def aggregate(
        self,
        account_id: str,
        since: dt.date,
        until: dt.date,
        level: str,
        breakdowns: Sequence[str],
        today: dt.date,
        time_increment: str = "1",
        ads: Sequence[SimObject] | None = None,
    ) -> list[tuple[dt.date, dt.date, SimObject | Account, tuple[str, ...], list[int]]]:
        """Summed metric vectors keyed by (bucket, level object, breakdown values), sorted."""
        if level not in LEVELS:
            raise ValueError(f"unknown level {level!r}")
        for dim in breakdowns:
            if dim not in BREAKDOWN_VALUES:
                raise ValueError(f"unsupported breakdown {dim!r}")
        data = self.data(account_id)
        buckets = _buckets(since, until, time_increment)
        combos = _combos(breakdowns)
        sums: dict[tuple[int, str, tuple[str, ...]], list[int]] = {}
        owners: dict[str, SimObject | Account] = {}
        for ad in ads if ads is not None else data.by_kind["ads"]:
            if ad.delivery_start is None:
                continue
            if level == "ad":
                owner: SimObject | Account = ad
            elif level == "adset":
                owner = data.by_id[ad.adset_id or ""]
            elif level == "campaign":
                owner = data.by_id[ad.campaign_id or ""]
            else:
                owner = data.account
            owner_id = owner.id
            owners[owner_id] = owner
            for bucket_index, (b_start, b_stop) in enumerate(buckets):
                day = max(b_start, ad.delivery_start)
                while day <= b_stop:
                    vector = self.ad_day(ad, day, today)
                    day += dt.timedelta(days=1)
                    if vector is None:
                        continue
                    parts = (
                        [((), vector)] if not breakdowns else _split(vector, ad, breakdowns, combos)
                    )
                    for values, part in parts:
                        key = (bucket_index, owner_id, values)
                        total = sums.get(key)
                        if total is None:
                            sums[key] = list(part)
                        else:
                            for i, v in enumerate(part):
                                total[i] += v
        result = []
        for (bucket_index, owner_id, values), vector in sums.items():
            if not any(vector):
                continue
            b_start, b_stop = buckets[bucket_index]
            result.append((b_start, b_stop, owners[owner_id], values, vector))
        result.sort(key=lambda r: (r[0], r[2].id, r[3]))
        return result

    def insight_row(
        self,
        level: str,
        owner: SimObject | Account,
        date_start: dt.date,
        date_stop: dt.date,
        breakdowns: Sequence[str],
        values: Sequence[str],
        vector: Sequence[int],
    ) -> JsonDict:
        """One insights row with every field, numbers as strings (as the API serves it)."""
        data_account = owner if isinstance(owner, Account) else owner.account
        data = self.data(data_account.id)
        row: JsonDict = {
            "account_id": data_account.account_id,
            "account_name": data_account.name,
            "account_currency": data_account.currency,
        }
        if isinstance(owner, SimObject):
            campaign = data.by_id[
                owner.id if owner.kind == "campaigns" else owner.campaign_id or ""
            ]
            row["campaign_id"] = campaign.id
            row["campaign_name"] = campaign.fields["name"]
            row["objective"] = campaign.fields["objective"]
            if owner.kind in ("adsets", "ads"):
                adset = data.by_id[owner.id if owner.kind == "adsets" else owner.adset_id or ""]
                row["adset_id"] = adset.id
                row["adset_name"] = adset.fields["name"]
            if owner.kind == "ads":
                row["ad_id"] = owner.id
                row["ad_name"] = owner.fields["name"]
        impressions, clicks, spend, reach = vector[0], vector[1], vector[2], vector[3]
        row["impressions"] = str(impressions)
        row["clicks"] = str(clicks)
        row["spend"] = format_cents(spend)
        row["reach"] = str(reach)
        if reach:
            row["frequency"] = format_ratio(impressions / reach)
        if clicks:
            row["cpc"] = format_ratio(spend / 100 / clicks)
        if impressions:
            row["cpm"] = format_ratio(spend / 100 / impressions * 1000)
            row["ctr"] = format_ratio(clicks / impressions * 100)
        actions = []
        offset = len(BASE_METRICS)
        for i, action in enumerate(ACTION_TYPES):
            slots = vector[
                offset + i * len(ACTION_WINDOWS) : offset + (i + 1) * len(ACTION_WINDOWS)
            ]
            if not any(slots):
                continue
            entry = {"action_type": action}
            for window, amount in zip(ACTION_WINDOWS, slots, strict=True):
                if window == "value" or amount:
                    entry[window] = str(amount)
            actions.append(entry)
        if actions:
            row["actions"] = actions
        row["date_start"] = date_start.isoformat()
        row["date_stop"] = date_stop.isoformat()
        for dim, value in zip(breakdowns, values, strict=True):
            row[dim] = value
        return row

    def insights(
        self,
        account_id: str,
        since: dt.date,
        until: dt.date,
        level: str = "ad",
        breakdowns: Sequence[str] = (),
        today: dt.date | None = None,
    ) -> list[JsonDict]:
        """Rows as the API serves them with ``time_increment=1`` and every field."""
        today = today or self.anchor_today
        return [
            self.insight_row(level, owner, start, stop, breakdowns, values, vector)
            for start, stop, owner, values, vector in self.aggregate(
                account_id, since, until, level, tuple(breakdowns), today
            )
        ]


def _effective(own: str, parents: list[tuple[str, str]], salt: str, seed: int) -> str:
    if own in HIDDEN_BY_DEFAULT:
        return own
    for _, status in parents:
        if status in HIDDEN_BY_DEFAULT:
            return status
    for label, status in parents:
        if status == "PAUSED":
            return f"{label}_PAUSED"
    if own == "PAUSED":
        return "PAUSED"
    roll = stable_hash(seed, "eff", salt) % 100
    if roll < 3:
        return "WITH_ISSUES"
    if roll < 5:
        return "PENDING_REVIEW"
    if roll < 6:
        return "DISAPPROVED"
    if roll < 7:
        return "IN_PROCESS"
    return "ACTIVE"


def _buckets(since: dt.date, until: dt.date, increment: str) -> list[tuple[dt.date, dt.date]]:
    if increment == "all_days":
        return [(since, until)]
    buckets = []
    if increment == "monthly":
        start = since
        while start <= until:
            last = dt.date(start.year, start.month, calendar.monthrange(start.year, start.month)[1])
            buckets.append((start, min(last, until)))
            start = last + dt.timedelta(days=1)
        return buckets
    step = int(increment)
    start = since
    while start <= until:
        stop = min(until, start + dt.timedelta(days=step - 1))
        buckets.append((start, stop))
        start = stop + dt.timedelta(days=1)
    return buckets


def _combos(breakdowns: Sequence[str]) -> list[tuple[tuple[str, ...], tuple[int, ...]]]:
    """Every combination of breakdown values with the value indexes per dimension."""
    combos: list[tuple[tuple[str, ...], tuple[int, ...]]] = [((), ())]
    for dim in breakdowns:
        combos = [
            ((*values, value), (*indexes, i))
            for values, indexes in combos
            for i, value in enumerate(BREAKDOWN_VALUES[dim])
        ]
    return combos


def _split(
    vector: list[int],
    ad: SimObject,
    breakdowns: Sequence[str],
    combos: list[tuple[tuple[str, ...], tuple[int, ...]]],
) -> list[tuple[tuple[str, ...], list[int]]]:
    """Split every integer across breakdown segments so the segments sum back exactly."""
    weights = []
    for _, indexes in combos:
        weight = 1
        for dim, i in zip(breakdowns, indexes, strict=True):
            weight *= ad.weights[dim][i]
        weights.append(weight)
    total_weight = sum(weights)
    parts = [[0] * len(vector) for _ in combos]
    for slot, amount in enumerate(vector):
        if not amount:
            continue
        # Largest remainder: floors first, then one each to the biggest remainders.
        shares = [amount * w for w in weights]
        floors = [s // total_weight for s in shares]
        left = amount - sum(floors)
        if left:
            order = sorted(range(len(weights)), key=lambda i: (-(shares[i] % total_weight), i))
            for i in order[:left]:
                floors[i] += 1
        for i, value in enumerate(floors):
            parts[i][slot] = value
    return [(values, part) for (values, _), part in zip(combos, parts, strict=True) if any(part)]
