"""Type stub of ``detectors.native``, Warden's compiled hot loops (``native/src``)."""

from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Generic

from detectors.seasonal import SeasonalState
from detectors.state import S
from models.telemetry import TelemetryEvent

class LaneLearner:
    """``learn(state, points)``: learn each (ts_ms, one value per lane) into a state of ``len(units)`` lanes."""

    def __init__(
        self,
        *,
        warmup: int,
        season_shrinkage: float,
        min_scale: float,
        huber_z: float,
        cusum_drift: float,
        cusum_limit: float,
        level_alpha: float,
        season_alpha: float,
        scale_alpha: float,
        units: list[float],
    ) -> None: ...
    def __call__(self, state: SeasonalState, points: Iterable[tuple[int, Sequence[float]]]) -> None: ...

def seasonal_layout() -> dict[str, int | float]:
    """The compiled learner's layout of ``SeasonalState.values`` and its constants, by their Python names."""

class SlidingDistinct:
    """Distinct items of several kinds over the last ``panes * pane_ms`` of event time (``native/src/sketches.rs``)."""

    def __init__(self, precision: int, pane_ms: int, panes: int) -> None: ...
    @property
    def dimensions(self) -> int: ...
    @property
    def starts(self) -> list[int]: ...
    def add(self, item: str, now_ms: int, dimension: int = 0) -> bool:
        """Count ``item`` of kind ``dimension``; returns whether it is (probably) new to the whole window."""
    def count(self, now_ms: int, dimension: int = 0) -> int:
        """Distinct items of kind ``dimension`` in the window that ends now."""
    def dump(self) -> dict[str, Any]: ...
    @staticmethod
    def load(data: dict[str, Any]) -> SlidingDistinct: ...

class UsageProfile:
    """One key's or account's recent spread: distinct counts, the last located use, recent distant hops."""

    last_seen_ms: int
    switches: list[int]
    last_flag_ms: int | None

    def __init__(self, last_seen_ms: int) -> None: ...
    def count(self, now_ms: int, dimension: int) -> int:
        """Distinct items of kind ``dimension`` in the window that ends now (0 before the first item)."""
    def dump(self) -> dict[str, Any]: ...
    @staticmethod
    def load(data: dict[str, Any]) -> UsageProfile: ...

class SharingWindow:
    """The window a ``UsageProfile`` counts in, and the step every event takes through a key's and an account's."""

    def __init__(self, precision: int, pane_ms: int, panes: int) -> None: ...
    def step(
        self,
        keys: SubjectStore[UsageProfile],
        accounts: SubjectStore[UsageProfile],
        events: list[TelemetryEvent],
        start: int,
        site: Callable[[str], tuple[Any, ...]],
    ) -> tuple[int, UsageProfile, UsageProfile, bool, list[Any] | None, bool] | None:
        """``events[start:]`` through their keys' and accounts' profiles (touched in their stores), each event's
        items its user agent, device and ``site(ip).items``, its place ``site(ip).here``; up to the first that brings
        an item new to either window or a hop of the key: (its index, the key, the account, an item new to the
        key's window, the key's use before a hop to another country as [country, latitude, longitude, ts_ms], an
        item new to the account's window). None when the batch brought neither."""

def allocated_bytes() -> int:
    """Bytes the compiled module holds on its own heap (outside Python's allocator, unseen by tracemalloc)."""

class TrafficSubject:
    """One account's or key's open bucket, and its signals' seasonal state (``native/src/traffic.rs``)."""

    last_seen_ms: int
    last_flag_ms: int | None
    alarm_floors: tuple[float, float, float] | None
    @property
    def bucket(self) -> int: ...
    @property
    def requests(self) -> int: ...
    @property
    def credits(self) -> float: ...
    @property
    def errors(self) -> int: ...
    @property
    def model(self) -> SeasonalState: ...
    def __init__(self, last_seen_ms: int, model: SeasonalState) -> None: ...
    def observed(self) -> tuple[float, float, float]:
        """The open bucket's value of each signal: requests, credits, errors."""
    def dump(self) -> dict[str, Any]: ...
    @staticmethod
    def load(data: dict[str, Any], model: SeasonalState) -> TrafficSubject: ...

class TrafficWindow:
    """Buckets, the learner of the subjects' states, the floors under which a bucket is never scored, and what the
    step needs to know which events scoring could flag."""

    def __init__(
        self,
        *,
        bucket_ms: int,
        max_gap_buckets: int,
        learner: LaneLearner,
        min_events: int,
        min_credits: float,
        min_errors: int,
        min_error_share: float,
        error_statuses: list[int],
        cooldown_ms: int,
    ) -> None: ...
    def step(
        self,
        accounts: SubjectStore[TrafficSubject],
        keys: SubjectStore[TrafficSubject],
        events: list[TelemetryEvent],
        start: int,
    ) -> tuple[int, TrafficSubject, TrafficSubject] | None:
        """Count ``events[start:]`` into their accounts' and keys' open buckets (touched in their stores; passed
        buckets closed and learned) up to the first after which scoring could flag its account (not cooling down)
        or key: ``(index, account, key)``, or None when the batch is counted."""
    def below_floors(self, subject: TrafficSubject) -> bool:
        """Whether the subject's open bucket is under every configured floor."""
    def may_flag(self, subject: TrafficSubject) -> bool:
        """Whether scoring could flag the subject's open bucket (its alarm floors worked out once past a floor)."""

class EventDecoder:
    """The validated fast path of ``streams.decode.decode_event`` (``native/src/telemetry.rs``)."""

    def __init__(
        self,
        model: type[Any],
        fields: list[tuple[str, str, bool, int | None, int | None, Any, Any]],
        epoch_ms: str,
        joined: tuple[str, str, list[str]],
        one_per_call: list[str],
    ) -> None: ...
    def decode(self, value: bytes) -> Any | None:
        """The event a record in the plain shape holds, or None (pydantic then decides)."""
    def decode_batch(self, values: list[bytes | None], max_bytes: int) -> tuple[list[Any], list[int]]:
        """``decode`` of each record, and the indices of those it declined (None in the list): not in the plain
        shape, longer than ``max_bytes``, or no bytes at all."""

class RecordBatchReader:
    """One partition's Kafka record batches (format v2) read into records of ``record_type``: kafka-python's
    ``ConsumerRecord``, or a namedtuple of some of its fields, picked by name (``native/src/records.rs``)."""

    def __init__(self, record_type: type[Any], topic: str, partition: int) -> None: ...
    def read(self, batch: Any, buffer: bytearray, start: int) -> tuple[list[Any], int, str | None]:
        """The records of ``batch`` (its header read through its properties), which are ``buffer[start:]``; their
        size in bytes; and why the batch stopped short, if it did."""

class KeyActivity:
    """A bounded window of one key's recent calls (``native/src/crawler.rs``)."""

    last_seen_ms: int
    last_flag_ms: int | None
    @property
    def time_base_ms(self) -> int: ...
    @property
    def times(self) -> list[int]:
        """The kept calls' times as offsets from ``time_base_ms``, oldest first."""
    @property
    def offset_bits(self) -> int:
        """32 or 64: how wide the kept offsets are."""
    def __init__(self, now_ms: int) -> None: ...
    def call_times(self) -> list[int]:
        """The window's call times in epoch milliseconds, oldest kept first."""
    def content_counts(self) -> tuple[int, int, int, int, int, int, bool]:
        """(calls, generating calls, 404s, forward steps, numbered reads, distinct user agents, automation seen)."""
    def dump(self) -> dict[str, Any]: ...
    @staticmethod
    def load(data: dict[str, Any]) -> KeyActivity: ...

class CrawlerWindow:
    """The window every key's calls are kept in, and when a key's window is due to be scored."""

    def __init__(
        self, *, window_ms: int, max_events: int, max_id_step: int, min_requests: int, evaluate_every: int
    ) -> None: ...
    def step(
        self,
        keys: SubjectStore[KeyActivity],
        events: list[TelemetryEvent],
        start: int,
        agents: dict[str | None, tuple[int, bool]],
        describe_agent: Callable[[str | None], tuple[int, bool]],
        read_number: Callable[[str], int | None],
    ) -> tuple[int, KeyActivity] | None:
        """Add ``events[start:]`` to their keys' windows (touched in their stores) up to the first after which its
        key's window is due to be scored: (its index, the window), or None. A user agent's (digest, automation) is
        found in ``agents`` or by ``describe_agent``; an id that is not ASCII is read by ``read_number``."""

def ascii_trailing_number(text: str) -> int | None:
    """The number an ASCII id ends in, as the crawler window's step reads it (``numbered_read``, compiled)."""

class SubjectStore(Generic[S]):
    """An LRU map of subject id → state with idle expiry and dirty tracking (``native/src/state.rs``)."""

    max_subjects: int
    idle_ttl_ms: int
    track_changes: bool
    unwritten: AbstractSet[str]
    @property
    def evicted(self) -> int: ...
    def __init__(
        self, factory: Callable[[int], S], loader: Callable[[dict[str, Any]], S], max_subjects: int, idle_ttl_ms: int
    ) -> None: ...
    def __len__(self) -> int: ...
    def __contains__(self, subject: str) -> bool: ...
    def items(self) -> list[tuple[str, S]]:
        """(subject, state) pairs, least recently seen first."""
    def touch(self, subject: str, now_ms: int) -> S:
        """The subject's state, fresh if it is new or idle past the TTL; marks it recently used and dirty."""
    def expire(self, watermark_ms: int) -> int:
        """Forget subjects idle past the TTL at this event time; returns how many went."""
    def snapshot(self) -> dict[str, dict[str, Any]]: ...
    def restore(self, snapshot: dict[str, dict[str, Any]]) -> None: ...
    def drain_dirty(self) -> set[str]:
        """Subjects changed (or gone) since the last drain."""
    def dump_of(self, subject: str) -> dict[str, Any] | None: ...
    def apply_change(self, subject: str, data: dict[str, Any] | None) -> None:
        """Replay one changelog record: a state where it stood, or a new one at the most recently seen end."""

class PatternLimitError(Exception):
    """PCRE2 stopped a search at one of its limits; Python's re gives the answer instead."""

class Pattern:
    """A Python pattern as ``detectors/minor_safety/pcre.py`` translates it, compiled by PCRE2's JIT, behind a
    lookaround-free superset of it that Rust's regex runs first."""

    def __init__(self, source: str, prefilter: str) -> None: ...
    def search(self, text: str) -> bool: ...
    def delete_within(self, text: str, inner: Pattern) -> str:
        """Each match replaced by itself less every match of ``inner`` in it; neither may match the empty string."""

class PatternSet:
    """Patterns searched in one call, each behind a lookaround-free prefilter that one DFA pass runs for all."""

    def __init__(self, patterns: list[Pattern], prefilters: list[str]) -> None: ...
    def matching(self, text: str, among: int) -> int:
        """Bit ``i`` set when pattern ``i`` matches in ``text``, among the patterns whose bit is set in ``among``."""
