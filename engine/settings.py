"""The settings registry: one declaration per config key, live knobs included.

Each `Setting` says everything there is to know about one key of config.toml: its dotted
name (`queue.maxsize`), type, default, allowed values, help line, and, for a live knob, the
slider's label and span and how a running engine applies a new value. Config loading,
validation and saving, `Engine.set_knob` / `Engine.knobs`, the snapshot, the app's sliders,
its help screen and the control API all read this table; adding a knob means adding one
`Setting` here and the code that honours its value, nothing else.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast
from urllib.parse import urlsplit

from sluice.engine.consumers import CONSUMER_KINDS

if TYPE_CHECKING:
    from sluice.engine.engine import Engine

__all__ = [
    "BACKENDS",
    "BACKEND_LIMITS",
    "ORDERED_PAIRS",
    "SETTINGS",
    "URL_RULE",
    "Setting",
    "SettingError",
    "limit_setting",
    "live_settings",
    "lookup",
    "register",
    "tables",
    "unordered_pair",
    "unregister",
    "url_problem",
]

T = TypeVar("T")


class SettingError(ValueError):
    """A value a setting does not allow; the message says what is allowed."""


def _plain(number: float) -> str:
    """1000000 as `1000000` and 0.1 as `0.1` (never `1e+06`)."""
    return str(int(number)) if float(number).is_integer() else repr(float(number))


@dataclass(frozen=True, eq=False, slots=True)
class Setting(Generic[T]):
    """One key of config.toml. `kind` is int, float, str, bool, or tuple (a TOML list of
    strings, held as a tuple); numbers have a range, strings may have choices, must be
    non-empty or must be a URL; a list's items may be limited to `choices`. `live` knobs
    can be changed on a running engine: `apply(engine, value)` makes the change (None: the
    engine stores the value and the code that uses it reads it from `engine.knob(name)`
    each time)."""

    name: str
    kind: type
    default: T
    help: str
    minimum: float | None = None
    maximum: float | None = None
    note: str = ""
    choices: tuple[str, ...] = ()
    nonempty: bool = False
    url: bool = False
    url_schemes: tuple[str, ...] = ("http", "https")  # for `url`: the schemes allowed
    live: bool = False
    label: str = ""
    slider_max: float | None = None
    step: float = 1
    apply: Callable[[Engine, Any], None] | None = None

    @property
    def table(self) -> str:
        """The config table the key lives in (`queue` for `queue.maxsize`)."""
        return self.name.partition(".")[0]

    @property
    def key(self) -> str:
        """The key inside its table (`maxsize` for `queue.maxsize`)."""
        return self.name.partition(".")[2]

    @property
    def integer(self) -> bool:
        """True for whole-number settings."""
        return self.kind is int

    @property
    def numeric(self) -> bool:
        """True for int and float settings."""
        return self.kind in (int, float)

    @property
    def slider_range(self) -> tuple[float, float]:
        """A live knob's slider span: its minimum up to its slider cap (never past the max)."""
        low = self.minimum if self.minimum is not None else 0
        high = self.slider_max if self.slider_max is not None else (self.maximum or low)
        if self.maximum is not None:
            high = min(high, self.maximum)
        return low, high

    @property
    def is_list(self) -> bool:
        """True for list-of-strings settings (held as tuples)."""
        return self.kind is tuple

    def describe(self) -> str:
        """What is allowed, in words (the end of every error about this setting)."""
        if self.kind is bool:
            text = "must be true or false"
        elif self.is_list:
            if self.choices:
                names = ", ".join(map(repr, self.choices))
                text = f"must be a list of distinct names from {names} (may be empty)"
            else:
                text = "must be a list of distinct non-empty strings (may be empty)"
        elif self.numeric:
            kind = "an integer" if self.integer else "a number"
            if self.minimum is None or self.maximum is None:
                text = f"must be {kind}"
            else:
                text = f"must be {kind} from {_plain(self.minimum)} to {_plain(self.maximum)}"
        elif self.choices:
            text = f"must be one of {', '.join(map(repr, self.choices))}"
        elif self.url:
            text = f"must be a URL like {_url_example(self.url_schemes)} (or empty)"
        elif self.nonempty:
            text = "must be a non-empty string"
        else:
            text = "must be a string"
        return f"{text} ({self.note})" if self.note else text

    def coerce(self, value: object) -> T:
        """`value` as this setting's type, or SettingError saying what is allowed.

        Booleans are never numbers; an int is accepted for a float setting; NaN and
        infinities are refused. A list comes back as a tuple of distinct strings.
        """
        if self.kind is bool:
            if not isinstance(value, bool):
                raise SettingError(self.describe())
            return cast(T, value)
        if self.is_list:
            return cast(T, self._coerce_list(value))
        if self.numeric:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok and self.integer and not isinstance(value, int):
                ok = False
            if ok and not math.isfinite(cast(float, value)):
                ok = False
            number = cast(float, value)
            if ok and self.minimum is not None and number < self.minimum:
                ok = False
            if ok and self.maximum is not None and number > self.maximum:
                ok = False
            if not ok:
                raise SettingError(self.describe())
            return cast(T, int(number) if self.integer else float(number))
        if self.choices and value not in self.choices:
            raise SettingError(self.describe())
        if not isinstance(value, str):
            raise SettingError("must be a string")
        if self.choices and value not in self.choices:
            raise SettingError(self.describe())
        if self.nonempty and not value.strip():
            raise SettingError(self.describe())
        if self.url and value and (problem := _config_url_problem(value, self.url_schemes)):
            raise SettingError(problem)
        return cast(T, value)

    def _coerce_list(self, value: object) -> tuple[str, ...]:
        """A list of distinct strings (each one of `choices` when there are choices)."""
        if not isinstance(value, (list, tuple)):
            raise SettingError(self.describe())
        items: list[str] = []
        for item in value:
            if not isinstance(item, str) or not item.strip() or item in items:
                raise SettingError(self.describe())
            if self.choices and item not in self.choices:
                raise SettingError(self.describe())
            items.append(item)
        return tuple(items)

    def to_toml(self, value: T) -> Any:
        """The value as written to config.toml (50.0 as 50, so saved files read naturally;
        a tuple as a list)."""
        if self.is_list:
            return list(cast(tuple[str, ...], value))
        if self.kind is float and float(cast(float, value)).is_integer():
            return int(cast(float, value))
        return value


URL_RULE = "must be a URL like http://127.0.0.1:11434: http or https, a host, a port 1-65535"


def url_problem(value: str, schemes: tuple[str, ...] = ("http", "https")) -> str | None:
    """Why `value` is not a usable URL with one of `schemes`, or None when it is. A bare
    `host[:port]` counts as `http://host[:port]`. The reason never quotes the value (it may
    hold a key)."""
    if any(c.isspace() for c in value):
        return "contains spaces"
    if "://" not in value and "http" not in schemes:
        return f"no scheme (it must start with {' or '.join(s + '://' for s in schemes)})"
    try:
        parts = urlsplit(value if "://" in value else f"http://{value}")
        port = parts.port
    except ValueError:  # "Invalid IPv6 URL" for http://[bad, a port out of range, ...
        return "not a valid URL (bad host or port)"
    if parts.scheme.lower() not in schemes:
        return f"scheme {parts.scheme!r} not allowed"
    if not parts.hostname:
        return "no host"
    if port == 0:
        return "port 0"
    return None


def _url_example(schemes: tuple[str, ...]) -> str:
    """A URL to show as an example for `schemes` (a Redis one for redis://)."""
    return "redis://127.0.0.1:6379/0" if "redis" in schemes else "http://127.0.0.1:11434"


def _config_url_problem(value: str, schemes: tuple[str, ...] = ("http", "https")) -> str | None:
    """Why `value` cannot be a URL in config.toml: not a URL, or one carrying credentials
    (those belong in the environment, never in a file)."""
    problem = url_problem(value, schemes)
    if problem is not None:
        if "http" in schemes:
            return f"{problem}; {URL_RULE}; or empty"
        names = ", ".join(schemes)
        return f"{problem}; must be a URL like {_url_example(schemes)} ({names}), or empty"
    if "@" in urlsplit(value if "://" in value else f"http://{value}").netloc:
        where = "SLUICE_REDIS_URL" if "redis" in schemes else "ANTHROPIC_BASE_URL, OLLAMA_HOST"
        return (
            "credentials in a URL are not read from the config file; leave it empty "
            f"and set the URL in the environment instead ({where})"
        )
    return None


# -- how running engines apply the live knobs ----------------------------------------------


def _apply_maxsize(engine: Engine, value: int) -> None:
    engine.resize_buffers(value)


def _apply_delay(engine: Engine, value: float) -> None:
    engine.set_consumer_delay(value)


def _apply_rate(engine: Engine, value: float) -> None:
    engine.demo.rate = value


def _limit_applier(backend: str) -> Callable[[Engine, int], None]:
    def apply(engine: Engine, value: int) -> None:
        engine.limiters[backend].resize(value)

    return apply


# -- the registry ---------------------------------------------------------------------------

SETTINGS: dict[str, Setting[Any]] = {}


def register(setting: Setting[T]) -> Setting[T]:
    """Add `setting` to the registry (its name must be new) and return it."""
    if setting.name in SETTINGS:
        raise ValueError(f"setting {setting.name!r} is declared twice")
    if "." not in setting.name:
        raise ValueError(f"setting {setting.name!r} needs a table: 'table.key'")
    setting.coerce(setting.default)  # a default the setting itself refuses is a bug
    SETTINGS[setting.name] = setting
    return setting


def unregister(name: str) -> None:
    """Remove a setting (tests that add a knob of their own clean up with this)."""
    SETTINGS.pop(name, None)


LIMIT_RANGE = (1, 10_000)


def limit_setting(backend: str, default: int = 4) -> Setting[int]:
    """The concurrency cap of one backend (`limits.<backend>`), a live knob."""
    return Setting(
        f"limits.{backend}",
        int,
        default,
        f"sessions streaming at once on the {backend} backend",
        minimum=LIMIT_RANGE[0],
        maximum=LIMIT_RANGE[1],
        live=True,
        label=f"{backend} lim",
        slider_max=64,
        apply=_limit_applier(backend),
    )


QUEUE_MAXSIZE = register(
    Setting(
        "queue.maxsize",
        int,
        16,
        "chunks each session's buffer holds before its producer waits (0 = unbounded)",
        minimum=0,
        maximum=1024,
        note="0 = unbounded",
        live=True,
        label="maxsize",
        slider_max=1024,
        apply=_apply_maxsize,
    )
)
QUEUE_BATCH_MAX = register(
    Setting(
        "queue.batch_max",
        int,
        1,
        "most chunks one consumer call takes",
        minimum=1,
        maximum=256,
        live=True,
        label="batch_max",
        slider_max=256,
    )
)
BACKEND_LIMITS: dict[str, Setting[int]] = {
    name: register(limit_setting(name, default))
    for name, default in (("claude", 4), ("ollama", 6), ("demo", 4), ("agent", 2))
}
BACKENDS = tuple(BACKEND_LIMITS)  # the built-in backends, each with its own limit

CONSUMER_KIND = register(
    Setting(
        "consumer.kind",
        str,
        "sleep",
        "the built-in consumer: sleep, sqlite, stdout or null",
        choices=CONSUMER_KINDS,
    )
)
CONSUMER_DELAY_MS = register(
    Setting(
        "consumer.delay_ms",
        float,
        50.0,
        "the built-in sleep consumer's time per call",
        minimum=0,
        maximum=10_000,
        live=True,
        label="delay ms",
        slider_max=1000,
        apply=_apply_delay,
    )
)
CONSUMER_PATH = register(
    Setting("consumer.path", str, "sluice.db", "the sqlite consumer's database", nonempty=True)
)
CONSUMER_TIMEOUT_S = register(
    Setting(
        "consumer.timeout_s",
        float,
        30.0,
        "a consumer call running longer fails its session (read when a session starts)",
        minimum=0,
        maximum=3_600,
        note="seconds; 0 = no limit",
    )
)
DEMO_SESSIONS = register(
    Setting(
        "demo.sessions",
        int,
        12,
        "demo sessions kept running",
        minimum=0,
        maximum=10_000,
        live=True,
        label="demo sess.",
        slider_max=1000,
    )
)
DEMO_TOKENS = register(
    Setting("demo.tokens", int, 200, "tokens in each demo answer", minimum=1, maximum=100_000)
)
DEMO_RATE = register(
    Setting(
        "demo.rate",
        float,
        40.0,
        "how fast the demo model generates",
        minimum=0.1,
        maximum=10_000,
        note="tokens per second",
        live=True,
        label="demo tok/s",
        slider_max=1000,
        apply=_apply_rate,
    )
)
DEMO_TTFT_MS = register(
    Setting(
        "demo.ttft_ms",
        float,
        300.0,
        "the demo model's time to first token",
        minimum=0,
        maximum=600_000,
    )
)
DEMO_SEED = register(Setting("demo.seed", int, 0, "seed of the demo model's text"))
CLAUDE_MODEL = register(
    Setting("claude.model", str, "claude-sonnet-5-5", "the Claude model", nonempty=True)
)
CLAUDE_MAX_TOKENS = register(
    Setting(
        "claude.max_tokens",
        int,
        1024,
        "most tokens in one answer",
        minimum=1,
        maximum=1_000_000,
    )
)
CLAUDE_SYSTEM = register(Setting("claude.system", str, "", "the system prompt (may be empty)"))
CLAUDE_BASE_URL = register(
    Setting(
        "claude.base_url",
        str,
        "",
        "the API's URL (empty: ANTHROPIC_BASE_URL, else Anthropic's)",
        url=True,
    )
)
CLAUDE_TIMEOUT_S = register(
    Setting(
        "claude.timeout_s",
        float,
        60.0,
        "seconds without content before a stream fails",
        minimum=0.1,
        maximum=3_600,
    )
)
CLAUDE_RETRIES = register(
    Setting("claude.retries", int, 2, "retries before a response starts", minimum=0, maximum=20)
)
OLLAMA_HOST = register(
    Setting(
        "ollama.host",
        str,
        "",
        "the Ollama server (empty: OLLAMA_HOST, else http://127.0.0.1:11434)",
        url=True,
    )
)
OLLAMA_MODEL = register(Setting("ollama.model", str, "llama3.2", "the Ollama model", nonempty=True))
OLLAMA_TIMEOUT_S = register(
    Setting(
        "ollama.timeout_s",
        float,
        60.0,
        "seconds without content before a stream fails",
        minimum=0.1,
        maximum=3_600,
    )
)
OLLAMA_RETRIES = register(
    Setting("ollama.retries", int, 2, "retries of a busy server (HTTP 503)", minimum=0, maximum=20)
)

# -- [cluster]: nodes sharing caps and knobs through Redis (engine/cluster/) ----------------

CLUSTER_REDIS_URL = register(
    Setting(
        "cluster.redis_url",
        str,
        "",
        "the cluster's Redis (empty: SLUICE_REDIS_URL if set, else standalone)",
        url=True,
        url_schemes=("redis", "rediss"),
    )
)
CLUSTER_NAME = register(
    Setting(
        "cluster.name",
        str,
        "sluice",
        "the cluster's name: its key prefix in Redis, so clusters can share one Redis",
        nonempty=True,
    )
)
CLUSTER_NODE = register(
    Setting("cluster.node", str, "", "this node's name (empty: host name and process id)")
)
CLUSTER_SHARED: Setting[tuple[str, ...]] = register(
    Setting(
        "cluster.shared",
        tuple,
        ("claude",),
        "backends whose [limits] count across all nodes (the others are per node)",
        choices=BACKENDS,
    )
)
CLUSTER_LEASE_S = register(
    Setting(
        "cluster.lease_s",
        float,
        10.0,
        "seconds a dead node keeps its permits before they go to others",
        minimum=1,
        maximum=600,
    )
)


# -- [agent]: the Claude Agent SDK backend (the optional extra sluice[agent]) ---------------
# Each session runs the Claude Code CLI as a subprocess (engine/backends/agent.py), so its
# limit, `limits.agent` above, is its own and small by default.
AGENT_PERMISSION_MODES = ("default", "acceptEdits", "plan", "bypassPermissions", "dontAsk", "auto")
AGENT_MODEL = register(
    Setting("agent.model", str, "", "the model the CLI uses (empty: the CLI's default)")
)
AGENT_MAX_TURNS = register(
    Setting(
        "agent.max_turns",
        int,
        8,
        "most agent turns (model calls) per session",
        minimum=0,
        maximum=1000,
        note="0 = the CLI's own limit",
    )
)
AGENT_ALLOWED_TOOLS: Setting[tuple[str, ...]] = register(
    Setting("agent.allowed_tools", tuple, (), "tools the agent may use without asking")
)
AGENT_PERMISSION_MODE = register(
    Setting(
        "agent.permission_mode",
        str,
        "default",
        "how the CLI treats tools not allowed above",
        choices=AGENT_PERMISSION_MODES,
    )
)
AGENT_CWD = register(
    Setting("agent.cwd", str, "", "the agent's working folder (empty: the current one)")
)
AGENT_SYSTEM = register(Setting("agent.system", str, "", "the system prompt (empty: none)"))
AGENT_CLI_PATH = register(
    Setting(
        "agent.cli_path",
        str,
        "",
        "the Claude Code CLI to run (empty: the one the SDK bundles, else `claude` on PATH)",
    )
)
AGENT_TIMEOUT_S = register(
    Setting(
        "agent.timeout_s",
        float,
        120.0,
        "seconds without any message from the CLI before a session fails",
        minimum=0.1,
        maximum=3_600,
    )
)


def live_settings() -> Iterator[Setting[Any]]:
    """The live knobs, in declaration order."""
    return (s for s in SETTINGS.values() if s.live)


def tables() -> list[str]:
    """The config tables Sluice owns, in declaration order."""
    return list(dict.fromkeys(s.table for s in SETTINGS.values()))


def lookup(name: str) -> Setting[Any]:
    """The setting called `name`; SettingError with the closest names when there is none."""
    try:
        return SETTINGS[name]
    except KeyError:
        close = difflib.get_close_matches(name, SETTINGS, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise SettingError(f"no setting named {name!r}{hint}") from None


# -- [autotune]: knobs that move themselves (engine/autotune/) -----------------------------


def _autotune_switch(knob: str, label: str, what: str) -> Setting[bool]:
    """The on/off switch of one auto knob (`autotune.claude`), itself a live knob."""
    return register(
        Setting(
            f"autotune.{knob}",
            bool,
            False,
            f"{what} moves by itself (a hand-set value switches it off)",
            live=True,
            label=label,
        )
    )


AUTOTUNE_CLAUDE = _autotune_switch("claude", "claude auto", "the claude limit (AIMD on 429/529)")
AUTOTUNE_OLLAMA = _autotune_switch("ollama", "ollama auto", "the ollama limit (TTFT gradient)")
AUTOTUNE_MAXSIZE = _autotune_switch(
    "maxsize", "maxsize auto", "maxsize and batch_max (continuous calibration)"
)
AUTOTUNE_WINDOW_S = register(
    Setting(
        "autotune.window_s",
        float,
        2.0,
        "seconds per control window: at most one cut and one step per window",
        minimum=0.05,
        maximum=600,
    )
)
AUTOTUNE_BACKOFF = register(
    Setting(
        "autotune.backoff",
        float,
        0.9,
        "the claude limit is multiplied by this on a 429, 529, overloaded_error or timeout",
        minimum=0.5,
        maximum=0.99,
    )
)
AUTOTUNE_CLAUDE_MIN = register(
    Setting(
        "autotune.claude_min", int, 1, "the auto claude limit's floor", minimum=1, maximum=10_000
    )
)
AUTOTUNE_CLAUDE_MAX = register(
    Setting(
        "autotune.claude_max", int, 64, "the auto claude limit's ceiling", minimum=1, maximum=10_000
    )
)
AUTOTUNE_OLLAMA_MIN = register(
    Setting(
        "autotune.ollama_min", int, 1, "the auto ollama limit's floor", minimum=1, maximum=10_000
    )
)
AUTOTUNE_OLLAMA_MAX = register(
    Setting(
        "autotune.ollama_max", int, 64, "the auto ollama limit's ceiling", minimum=1, maximum=10_000
    )
)
# Floor and ceiling pairs: a config whose floor is above its ceiling is refused (a swap
# would hide a typo that decides how far a limit may move).
ORDERED_PAIRS: tuple[tuple[Setting[int], Setting[int]], ...] = (
    (AUTOTUNE_CLAUDE_MIN, AUTOTUNE_CLAUDE_MAX),
    (AUTOTUNE_OLLAMA_MIN, AUTOTUNE_OLLAMA_MAX),
)


def unordered_pair(values: Mapping[str, Any]) -> str | None:
    """The first floor/ceiling pair in `values` (setting name to value) whose floor is above
    its ceiling, said in a line; None when every pair is in order."""
    for low, high in ORDERED_PAIRS:
        if values[low.name] > values[high.name]:
            return (
                f"{low.name} = {values[low.name]} is above {high.name} = {values[high.name]}; "
                f"the floor must be at most the ceiling"
            )
    return None


AUTOTUNE_HEADROOM = register(
    Setting(
        "autotune.headroom",
        float,
        1.0,
        "sessions the ollama gradient adds per window that reached its limit",
        minimum=0,
        maximum=100,
    )
)
AUTOTUNE_TOLERANCE = register(
    Setting(
        "autotune.tolerance",
        float,
        0.1,
        "how far TTFT p75 may rise above its baseline before the ollama limit is cut (0.1 = 10%)",
        minimum=0,
        maximum=10,
    )
)
AUTOTUNE_BASELINE_S = register(
    Setting(
        "autotune.baseline_s",
        float,
        60.0,
        "seconds between re-measurements of the TTFT baseline (one window at probe_limit)",
        minimum=1,
        maximum=86_400,
    )
)
AUTOTUNE_PROBE_LIMIT = register(
    Setting(
        "autotune.probe_limit",
        int,
        2,
        "the ollama limit while the TTFT baseline is re-measured",
        minimum=1,
        maximum=10_000,
    )
)
AUTOTUNE_TARGET_BUFFER_MS = register(
    Setting(
        "autotune.target_buffer_ms",
        float,
        500.0,
        "consumer work a full buffer holds: maxsize = ceil(target / mean call ms)",
        minimum=1,
        maximum=600_000,
    )
)
AUTOTUNE_MEMORY_CEILING_MB = register(
    Setting(
        "autotune.memory_ceiling_mb",
        float,
        0.0,
        "the most all buffers together may hold",
        minimum=0,
        maximum=1_000_000,
        note="MiB; 0 = the container's memory limit less the process's RSS, none outside one",
    )
)
AUTOTUNE_HYSTERESIS = register(
    Setting(
        "autotune.hysteresis",
        float,
        0.25,
        "maxsize moves only when the rule differs by more than this fraction",
        minimum=0,
        maximum=0.9,
    )
)
