"""The strategy file's schema. Validated once, at load; unknown keys are errors."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alpha.config.types import (
    Amount,
    Apr,
    Asset,
    BindAddress,
    Count,
    Duration,
    Exact,
    Fee,
    FilePath,
    Flag,
    Leverage,
    Market,
    NonNegative,
    Notional,
    Positive,
    Share,
    Url,
    Venue,
    unique,
    within,
)
from alpha.config.whitelist import Destination, whitelist_problems
from alpha.domain.redact import looks_secret

Assets = Annotated[tuple[Asset, ...], unique("assets")]
Markets = Annotated[tuple[Market, ...], unique("markets")]


class Model(BaseModel):
    """Base for every config section: frozen, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class SecretRef(Model):
    """Where a secret lives: an environment variable or a file. Never the secret itself."""

    env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    file: FilePath | None = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_inline(cls, data: Any) -> Any:
        if isinstance(data, str):
            raise ValueError(
                "secrets are never written inline: give {env: VARIABLE_NAME} or {file: /path/to/secret}"
            )
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' or 'file'")
        if looks_secret(str(self.env or self.file)):
            raise ValueError("this looks like a secret itself: give the name of the variable or file that holds it")
        return self

    def describe(self) -> str:
        """Say where the secret comes from, without revealing it."""
        return f"env:{self.env}" if self.env else f"file:{self.file}"


class Credentials(Model):
    """Secret references for one fuse. Which ones are needed depends on the fuse kind."""

    api_key: SecretRef | None = None
    secret: SecretRef | None = None
    password: SecretRef | None = None
    wallet_key: SecretRef | None = None  # Hyperliquid agent/wallet key, or an EVM account key
    wallet_address: str | None = Field(default=None, pattern=r"^0x[0-9a-fA-F]{40}$")


class FuseKind(StrEnum):
    SIM = "sim"  # in-process simulated venue (demo, paper, backtest)
    CEX = "cex"  # centralised exchange through ccxt
    PERP_DEX = "perp_dex"  # perp DEX through ccxt (Hyperliquid)
    LENDING = "lending"  # on-chain lending market through web3 (Aave v3)


class SimVenue(Model):
    """How a simulated venue behaves: fees, book depth, funding interval and margin tiers."""

    funding_interval: Duration = timedelta(hours=8)
    maker_fee: Fee = Decimal("0.0002")
    taker_fee: Fee = Decimal("0.0005")
    spread_bps: NonNegative = Decimal("1")
    depth_notional: Positive = Decimal("2000000")  # quote notional per side within ``depth_bps`` of mid
    depth_bps: Positive = Decimal("50")
    levels: Count = Field(default=20, ge=1, le=500)
    basis_bps: Exact = Decimal("0")  # mean perp premium over the index
    funding_bias_bps: Exact = Decimal("0")  # venue-specific funding offset (thin books fund higher)


class FuseConfig(Model):
    """One connector of the vault to a venue or market, with its caps."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,30}$")  # short: a metric label, never a pasted secret
    kind: FuseKind
    venue: Venue
    enabled: Flag = True
    markets: Markets = ()  # allowed markets (perps and spot), unified ccxt symbols
    assets: Assets = ()  # allowed assets (lending fuses)
    max_share: Share  # maximum share of NAV this fuse may hold
    max_leverage: Leverage = Decimal("3")
    rebalance_every: Duration = timedelta(hours=8)
    credentials: Credentials | None = None
    api_url: Url | None = None  # override for testnets, proxies and local emulators
    rate_limit_share: Share = Decimal("1")
    sim: SimVenue | None = None  # for kind: sim
    # lending (web3) fuses
    rpc_url: Url | None = None
    chain_id: Count | None = Field(default=None, ge=1, le=2**53)
    pool_addresses_provider: str | None = Field(default=None, pattern=r"^0x[0-9a-fA-F]{40}$")
    # an IPOR Fusion PlasmaVault whose Alpha this lending fuse is (credentials.wallet_key: the ALPHA key);
    # positions are the vault's, supply and withdraw go through the vault's own fuses (fuses.ipor)
    plasma_vault: str | None = Field(default=None, pattern=r"^0x[0-9a-fA-F]{40}$")
    max_fee_gwei: Annotated[Positive, within(0, 100_000, above=True)] | None = None
    gas_budget_native_per_day: NonNegative | None = None
    options: dict[str, str | int | bool] = Field(default_factory=dict)
    withdrawals: tuple[Destination, ...] = ()  # the only places this fuse may send money to (alpha.config.whitelist); none: moves are an operator's

    @model_validator(mode="after")
    def _kind_fields(self) -> FuseConfig:
        if self.kind is FuseKind.LENDING:
            if not self.assets:
                raise ValueError("a lending fuse needs 'assets' (the reserves it may use)")
            if self.venue != "sim" and (self.rpc_url is None or self.pool_addresses_provider is None):
                raise ValueError("an on-chain lending fuse needs 'rpc_url' and 'pool_addresses_provider'")
            if self.venue != "sim" and (self.credentials is None or self.credentials.wallet_key is None):
                raise ValueError("an on-chain lending fuse needs credentials.wallet_key ({env: ...} or {file: ...})")
            if self.plasma_vault is not None and self.venue == "sim":
                raise ValueError("'plasma_vault' names an on-chain vault: it needs an on-chain lending fuse, not venue sim")
        elif self.plasma_vault is not None:
            raise ValueError("'plasma_vault' belongs on a lending fuse (the vault's Aave market)")
        elif not self.markets:
            raise ValueError("a trading fuse needs 'markets' (the markets it may trade)")
        if self.kind in (FuseKind.CEX, FuseKind.PERP_DEX):
            creds = self.credentials
            if creds is None:
                raise ValueError(
                    "a live venue fuse needs 'credentials' (api_key/secret or wallet_key as {env: ...} or {file: ...})"
                )
            if self.kind is FuseKind.CEX and (creds.api_key is None or creds.secret is None):
                raise ValueError("a CEX fuse needs credentials.api_key and credentials.secret")
            if self.kind is FuseKind.PERP_DEX and creds.wallet_key is None:
                raise ValueError("a perp-DEX fuse needs credentials.wallet_key")
        return self


class RateMarketConfig(Model):
    """One Boros market of a rate fuse: the funding of ``underlying`` (``<fuse>:<perp market>``) traded to ``maturity``.

    The payment period is the underlying's funding interval (its fuse's ``sim.funding_interval``
    when simulated); amounts, sizes and margin are in ``asset``, the perp's base asset.
    """

    market: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,60}$")  # the venue's id, e.g. SIM-BTC-31MAR2024
    underlying: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,30}:.+$")
    maturity: datetime
    tick_apr: Positive = Decimal("0.0001")
    size_step: Positive = Decimal("0.001")
    min_size: Positive = Decimal("0.01")
    taker_fee_apr: Fee = Decimal("0.001")
    im_factor: Positive = Decimal("0.5")
    im_floor: Positive = Decimal("0.05")
    mm_factor: Positive = Decimal("0.25")
    mm_floor: Positive = Decimal("0.025")

    @field_validator("maturity")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("a maturity needs a timezone (e.g. 2024-03-29T08:00:00Z)")
        return v


class RateSim(Model):
    """How a simulated Boros market quotes: its implied APR is the underlying's forecast funding plus a premium and seeded noise.

    The forecast is an exponential average of the underlying's annualised funding (``smoothing``:
    the weight of each new settlement); the book has ``levels`` levels of ``level_size`` a side,
    ``spread_ticks`` ticks apart around the mark. ``implied_apr_file``: a CSV of ``ts, market,
    implied_apr`` (a backtest's recorded marks) used instead of the model where it has a row.
    """

    seed: Count = 11
    premium_apr: Exact = Decimal("0.01")
    noise_apr: NonNegative = Decimal("0.005")
    smoothing: Share = Decimal("0.2")
    spread_ticks: Count = Field(default=4, ge=1, le=1000)
    levels: Count = Field(default=10, ge=1, le=200)
    level_size: Positive = Decimal("20")
    implied_apr_file: FilePath | None = None


RATE_VENUES = ("sim", "boros")


class RateFuseConfig(Model):
    """A rate-swap fuse (Pendle Boros): short YU on a perp's funding to lock it at the implied APR.

    Kept apart from ``fuses`` (it holds no perp or spot market; the carry's fuse logic does not
    apply): its capital counts in NAV, its ``max_share`` with the fuses' in the 100% cap.
    ``cushion``: collateral posted is the initial margin x (1 + cushion).
    """

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,30}$")
    kind: Literal["boros"] = "boros"
    venue: Venue = "sim"
    enabled: Flag = True
    max_share: Share = Decimal("0.05")  # most of NAV its zone may hold (collateral and positions at mark)
    max_leverage: Leverage = Decimal("10")  # most rate exposure (|size| x years left x |mark APR|) per unit of collateral
    cushion: NonNegative = Decimal("0.5")  # collateral posted: initial margin x (1 + cushion)
    markets: tuple[RateMarketConfig, ...] = Field(min_length=1)
    sim: RateSim = RateSim()
    api_url: Url | None = None  # the Boros API (or a local emulator) for a venue other than sim
    credentials: Credentials | None = None  # venue boros: the root account (wallet_address) and the agent key approved for it (wallet_key)

    @model_validator(mode="after")
    def _venue(self) -> RateFuseConfig:
        if self.venue not in RATE_VENUES:
            raise ValueError(f"rate fuse {self.name}: venue {self.venue!r} is not a rate venue; known: {', '.join(RATE_VENUES)}")
        if self.venue != "sim" and self.api_url is None:
            raise ValueError(f"rate fuse {self.name} on {self.venue} needs api_url (the venue's API, or a local emulator's)")
        return self

    @field_validator("markets")
    @classmethod
    def _unique(cls, markets: tuple[RateMarketConfig, ...]) -> tuple[RateMarketConfig, ...]:
        ids = [m.market for m in markets]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"rate market ids must be unique; repeated: {', '.join(dupes)}")
        return markets


class Vault(Model):
    name: str = Field(default="vault", pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,30}$")
    base_asset: Asset = "USDC"
    nav: Amount  # starting capital in demo/backtest; live NAV is read from the venues


class Thresholds(Model):
    """When a carry is worth entering and when it should be left; every cost is amortised over the expected holding.

    The expected holding of a hedge is how long what it earns has stayed of that sign
    (``strategy.decide.expected_holding``): the time its smoothed funding spent of that sign in
    the trailing window, plus ``holding_period`` as a prior worth one run, divided by the runs
    that ended plus one; bounded to ``[min_holding, max_holding]``. A fresh history gives
    ``holding_period``.

    * Entry: the expected net APR, the round trip (entry and exit) amortised over the holding,
      at least ``entry_min_net_apr``.
    * Exit: an open hedge is kept while its expected carry over the holding loses less than
      closing it costs: gross APR + exit cost / holding >= ``exit_min_net_apr``.
    * A hedge is displaced (a venue switch) only when the challenger's gain over the holding
      pays closing the open hedge and opening the challenger (``carry.ranking_score``).
    """

    entry_min_net_apr: Apr = Decimal("0.05")
    exit_min_net_apr: Apr = Decimal("0.00")
    holding_period: Duration = timedelta(days=7)  # prior expected holding, before the history shows persistence
    min_holding: Duration = timedelta(days=1)
    max_holding: Duration = timedelta(days=90)
    lock_min_edge_apr: Apr | None = None  # lock a short perp leg on a rate fuse when fixed APR - fee beats the forecast by this; unset: never

    @model_validator(mode="after")
    def _hysteresis(self) -> Thresholds:
        if self.exit_min_net_apr > self.entry_min_net_apr:
            raise ValueError("exit_min_net_apr must not exceed entry_min_net_apr")
        if not timedelta(0) < self.min_holding <= self.holding_period <= self.max_holding:
            raise ValueError("holdings must satisfy 0 < min_holding <= holding_period <= max_holding")
        return self


class MarginPolicy(Model):
    """Margin management (DOMAIN.md: top up every 10% drawdown of margin)."""

    target_ratio: Share = Decimal("0.25")  # maintenance / equity the top-up restores
    top_up_drawdown: Share = Decimal("0.10")  # top up after equity falls this much
    deleverage_ratio: Share = Decimal("0.70")  # deleverage both legs when margin ratio passes this
    check_every: Duration = timedelta(seconds=10)
    min_health_factor: Annotated[Positive, within(1, 100, above=True)] = Decimal("1.5")  # lending accounts: repay/deleverage below this
    initial_cushion: Share = Decimal("0")  # margin posted above initial margin (share of it) when a perp leg is funded
    # How long a venue short of margin may wait for collateral moved from another venue: a move
    # whose route takes longer (fuses[].withdrawals[].arrives_within) is preceded by
    # deleveraging that venue back to target_ratio (alpha.core.pipeline.margin_step).
    move_deadline: Duration = timedelta(minutes=30)  # the longest a venue short of margin waits for collateral from another venue; a slower move is preceded by a deleverage to target_ratio

    @model_validator(mode="after")
    def _ordered(self) -> MarginPolicy:
        if self.target_ratio >= self.deleverage_ratio:
            raise ValueError("target_ratio must be below deleverage_ratio")
        return self


class StablecoinPricing(StrEnum):
    """What a stablecoin other than the base asset is worth: in NAV, margin and conversions between them."""

    PAR = "par"  # one base asset each (1:1)
    MARKET = "market"  # its price in the portfolio view (depeg-aware), 1 where no market prices it


class PnlPolicyKind(StrEnum):
    CONSTANT_NOTIONAL = "constant_notional"
    SENTIMENT_HYBRID = "sentiment_hybrid"


class PnlPolicy(Model):
    policy: PnlPolicyKind = PnlPolicyKind.CONSTANT_NOTIONAL
    rebalance_every: Duration = timedelta(hours=8)
    drift_tolerance: Share = Decimal("0.05")  # resize when notional drifts this far from target


class RebalancePolicy(Model):
    """Smallest changes worth making: below these the book is left as it is (no dust trades or transfers).

    A leg is resized only past ``pnl.drift_tolerance``; a transfer, supply or withdrawal only when it
    moves at least ``min_transfer`` and ``min_capital_share`` of the fuse's capital, unless an order
    of the plan needs the money or the idle buffer does.
    """

    min_transfer: NonNegative = Decimal("100")  # smallest transfer, supply or withdrawal, in the base asset
    min_capital_share: Share = Decimal("0.02")  # and at least this share of the fuse's capital
    min_hedge_share: Share = Decimal("0.01")  # smallest new hedge: one leg's notional as a share of NAV


class ForeignPositions(StrEnum):
    """What a venue fuse does about positions on its account in markets the strategy does not trade."""

    FLAG = "flag"  # left out of the book, warned about once per change, never traded; the fuse's own markets trade on
    HALT = "halt"  # the fuse's account is refused while one is held: nothing trades on that fuse until it is gone


class RiskLimits(Model):
    foreign_positions: ForeignPositions = ForeignPositions.FLAG
    max_order_notional: Notional = Decimal("250000")
    max_book_share: Share = Decimal("0.10")  # of visible depth per order; larger orders are sliced
    max_venue_exposure: Share = Decimal("0.50")  # gross notional on one venue / NAV
    max_asset_share: Share = Decimal("1")  # hedged notional of one asset (one leg) / NAV: diversifies across assets
    depeg_threshold: Share = Decimal("0.02")  # stablecoin off its peg by more than this
    max_data_age: Duration = timedelta(seconds=60)
    max_unhedged_notional: Notional = Decimal("50000")
    max_unhedged_time: Duration = timedelta(seconds=30)
    # Price sanity (alpha/risk/prices.py): a market whose data fails one of these is refused for new exposure.
    max_mark_index_gap: Share = Decimal("0.10")  # |mark - index| / index (and mark vs the book's mid)
    max_venue_gap: Positive = Decimal("0.25")  # mark vs the median of the other venues' marks of the asset
    max_price_jump: Positive = Decimal("0.50")  # move from the last good mark per hour elapsed, unless the other venues moved too
    max_funding_rate: Share = Decimal("0.01")  # |funding rate| per hour, normalised by the rate's interval


class Execution(Model):
    leg_retries: Count = Field(default=3, ge=0, le=20)
    order_timeout: Duration = timedelta(seconds=10)
    budget_wait: Duration = timedelta(seconds=10)  # longest an order waits for our own rate limiter; then it is not sent
    shutdown_bound: Duration = timedelta(seconds=20)
    rebalance_lead: Duration = timedelta(minutes=10)  # before a funding settlement


class Journal(Model):
    path: FilePath = Path("var/alpha.db")


class Metrics(Model):
    address: BindAddress = "127.0.0.1:9464"


class Control(Model):
    address: BindAddress = "127.0.0.1:9465"
    token: SecretRef = SecretRef(env="ALPHA_CONTROL_TOKEN")


class NoticeEvent(StrEnum):
    """Daemon events that can be sent as notices."""

    HEDGE_OPENED = "hedge_opened"
    HEDGE_CLOSED = "hedge_closed"
    TOP_UP = "top_up"
    DELEVERAGE = "deleverage"
    PAUSED = "paused"
    RESUMED = "resumed"
    KILL_SWITCH = "kill_switch"
    UNHEDGED_LEG = "unhedged_leg"


class NoticeSeverity(StrEnum):
    """How much a notice matters, lowest first."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Notify(Model):
    """The daemon's own notices (alpha.daemon.notices), sent through apprise as events happen.

    Each reference names a secret holding one or more apprise URLs (whitespace-separated), e.g.
    `tgram://BOT_TOKEN/CHAT_ID`, `slack://...`, `json://host/path`: URLs carry tokens, so they
    are never written in the strategy file. No URLs: no notices.
    """

    urls: tuple[SecretRef, ...] = ()  # secrets holding apprise URLs, e.g. [{env: ALPHA_NOTIFY_URLS}]
    events: Annotated[tuple[NoticeEvent, ...], unique("events")] = tuple(NoticeEvent)  # which events to send
    min_severity: NoticeSeverity = NoticeSeverity.INFO  # info: hedges and resumes too; warning: top-ups, deleverages, pauses; critical: kill switch, unhedged leg
    queue_size: Count = Field(default=100, ge=1, le=10_000)  # notices waiting beyond this are dropped (alpha_notices_dropped_total)
    timeout: Duration = timedelta(seconds=10)  # one send's bound; a slower one is dropped


class ClockConfig(Model):
    """Demo mode's accelerated clock."""

    start: datetime | None = None
    speed: Annotated[Positive, within(0, 10_000_000, above=True)] = Decimal("3600")  # simulated seconds per real second

    @field_validator("start")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("start must carry a time zone, e.g. 2024-01-01T00:00:00Z")
        return v


class AssetMarket(Model):
    """One asset of the synthetic market: starting price and its random walk."""

    price: Amount
    volatility: Annotated[NonNegative, within(0, 20)] = Decimal("0.6")  # annualised
    drift: Exact = Decimal("0")
    jump_intensity: NonNegative = Decimal("4")  # jumps per year
    jump_size: NonNegative = Decimal("0.08")  # standard deviation of log jump
    correlation: Share = Decimal("0.8")  # with the market factor


class FundingProcess(Model):
    """Funding as a mean-reverting (Ornstein-Uhlenbeck) process per regime, annualised."""

    bull_mean_apr: Exact = Decimal("0.15")
    bear_mean_apr: Exact = Decimal("-0.08")
    reversion_per_day: Positive = Decimal("2")
    volatility_apr: NonNegative = Decimal("0.25")
    regime_switch_per_year: NonNegative = Decimal("6")
    cap_per_interval: Positive = Decimal("0.0075")


class ScriptedShock(Model):
    """A price gap applied at ``at`` (demo and tests)."""

    at: Duration  # after the start
    asset: Asset
    move: Annotated[Exact, within(-1, 100)]  # e.g. "0.30" for +30%, "-0.30" for -30%


class SyntheticMarket(Model):
    seed: Count = 7
    step: Duration = timedelta(minutes=5)
    assets: dict[Asset, AssetMarket]
    funding: FundingProcess = FundingProcess()
    shocks: tuple[ScriptedShock, ...] = ()


class StrategyConfig(Model):
    """A whole strategy: the vault, its fuses and every policy."""

    version: Literal[1] = 1
    mode: Literal["demo", "paper", "live", "backtest"] = "demo"
    vault: Vault
    fuses: tuple[FuseConfig, ...] = Field(min_length=1)
    assets: Assets = Field(min_length=1)  # assets to farm
    stablecoins: Assets = ("USDC", "USDT")
    stablecoin_pricing: StablecoinPricing = StablecoinPricing.PAR  # 1:1 with the base asset, or at its price (depeg-aware)
    idle_buffer: Share = Decimal("0.10")
    delta_tolerance: Share = Decimal("0.02")  # |net delta| <= tolerance x gross
    thresholds: Thresholds = Thresholds()
    margin: MarginPolicy = MarginPolicy()
    pnl: PnlPolicy = PnlPolicy()
    rebalance: RebalancePolicy = RebalancePolicy()
    risk: RiskLimits = RiskLimits()
    execution: Execution = Execution()
    journal: Journal = Journal()
    metrics: Metrics = Metrics()
    control: Control = Control()
    notify: Notify = Notify()
    clock: ClockConfig = ClockConfig()
    market: SyntheticMarket | None = None  # demo mode's synthetic market
    rates: tuple[RateFuseConfig, ...] = ()  # rate-swap fuses (Boros) that lock the funding of short perp legs

    @field_validator("fuses")
    @classmethod
    def _fuses_consistent(cls, fuses: tuple[FuseConfig, ...]) -> tuple[FuseConfig, ...]:
        names = [f.name for f in fuses]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"fuse names must be unique; repeated: {', '.join(dupes)}")
        total = sum((f.max_share for f in fuses if f.enabled), Decimal(0))
        if total > 1:
            raise ValueError(f"enabled fuses' max_share caps sum to {total * 100}% of NAV, over 100%")
        return fuses

    @model_validator(mode="after")
    def _cross_checks(self) -> StrategyConfig:
        if self.mode == "demo" and self.market is None:
            raise ValueError("the 'market' section is missing: demo mode needs its synthetic market")
        if self.market is not None:
            missing = [a for a in self.assets if a not in self.market.assets]
            if missing:
                raise ValueError(f"synthetic market has no parameters for assets: {', '.join(missing)}")
        for f in self.enabled_fuses:
            for market in f.markets:
                base, _, settle = market.partition(":")
                if settle and settle != base.split("/")[0] and settle not in self.cash_assets:
                    raise ValueError(
                        f"fuse {f.name}: {market} settles in {settle}, which the vault does not count as cash:"
                        f" add {settle} to stablecoins (the vault's base asset is {self.vault.base_asset})"
                    )
        self._check_rates()
        wrong = [p for f in self.fuses for p in whitelist_problems(f.name, f.withdrawals, {g.name: g.kind.value for g in self.fuses})]
        if wrong:
            raise ValueError("; ".join(wrong))
        return self

    def _check_rates(self) -> None:
        """Every rate market names a perp market of an enabled fuse, one base asset per rate fuse; names are unique; caps add up."""
        names = [f.name for f in self.fuses] + [r.name for r in self.rates]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"fuse and rate fuse names must be unique; repeated: {', '.join(dupes)}")
        total = sum((f.max_share for f in self.enabled_fuses), Decimal(0)) + sum((r.max_share for r in self.enabled_rates), Decimal(0))
        if self.rates and total > 1:
            raise ValueError(f"enabled fuses' and rate fuses' max_share caps sum to {total * 100}% of NAV, over 100%")
        perps = {f"{f.name}:{m}" for f in self.enabled_fuses for m in f.markets if ":" in m}
        for r in self.enabled_rates:
            bases = sorted({m.underlying.partition(":")[2].split("/")[0] for m in r.markets})
            if len(bases) > 1:
                raise ValueError(f"rate fuse {r.name}: one trading zone holds one asset; its markets' underlyings are in {', '.join(bases)}")
            for m in r.markets:
                if m.underlying not in perps:
                    known = ", ".join(sorted(perps)) or "none"
                    raise ValueError(f"rate fuse {r.name}: market {m.market}'s underlying {m.underlying} is not a perp market of an enabled fuse (perps: {known})")
                fuse = self.fuse(m.underlying.partition(":")[0])
                if r.venue == "sim" and fuse.kind is not FuseKind.SIM:
                    raise ValueError(f"rate fuse {r.name} is simulated: its underlying {m.underlying} must be on a simulated fuse")

    @property
    def enabled_rates(self) -> tuple[RateFuseConfig, ...]:
        return tuple(r for r in self.rates if r.enabled)

    def rate_fuse(self, name: str) -> RateFuseConfig:
        for r in self.rates:
            if r.name == name:
                return r
        raise KeyError(name)

    def fuse(self, name: str) -> FuseConfig:
        for f in self.fuses:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def enabled_fuses(self) -> tuple[FuseConfig, ...]:
        return tuple(f for f in self.fuses if f.enabled)

    @property
    def cash_assets(self) -> frozenset[str]:
        """What the vault counts as money: its base asset and every configured stablecoin."""
        return frozenset((self.vault.base_asset, *self.stablecoins))

    @property
    def cash_at_par(self) -> bool:
        """Whether every stablecoin counts one base asset (``stablecoin_pricing: par``)."""
        return self.stablecoin_pricing is StablecoinPricing.PAR
