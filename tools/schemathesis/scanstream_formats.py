"""Teaches schemathesis the custom string formats of scanstream's OpenAPI document.

The document marks three request fields with a `format` whose rules JSON Schema cannot state
exactly: `repo-url` (schemes, no credentials or '.'/'..' segments, hosts that resolve to no
private address), `git-ref` (git check-ref-format) and `cron` (an expression that fires). Loaded
with SCHEMATHESIS_HOOKS=scanstream_formats, so generated requests use values of those formats
and every other field stays as the document describes it.
"""

import re
import uuid

import schemathesis
from hypothesis import strategies as st

# Hosts under the reserved `.example` top-level domain never resolve, so the address check
# passes them without the network.
_HOST = r"[a-z][a-z0-9]{0,12}(-[a-z0-9]{1,6})?(\.[a-z][a-z0-9]{0,8}){0,2}\.example"
_PORT = r"(:[1-9][0-9]{0,3})?"
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9_.~+=@,-]{0,15}"
_PATH = rf"(/{_SEGMENT}){{1,3}}(\.git)?"

REPO_URL = st.one_of(
    st.from_regex(rf"\A(https|git)://{_HOST}{_PORT}{_PATH}\Z"),
    st.from_regex(rf"\Assh://([a-z][a-z0-9_]{{0,8}}@)?{_HOST}{_PORT}{_PATH}\Z"),
    st.from_regex(rf"\A[a-z][a-z0-9_]{{0,8}}@{_HOST}:{_SEGMENT}(/{_SEGMENT}){{0,2}}\Z"),
)

_COMPONENT = r"[A-Za-z0-9_][A-Za-z0-9_+=,#-]{0,20}"
GIT_REF = st.one_of(
    st.from_regex(rf"\A{_COMPONENT}(/{_COMPONENT}){{0,3}}\Z"),
    st.from_regex(r"\Arefs/(heads|tags)/[A-Za-z0-9_][A-Za-z0-9_-]{0,20}\Z"),
    st.from_regex(r"\A[0-9a-f]{40}\Z"),
)


def _field(low: int, high: int) -> st.SearchStrategy[str]:
    """One cron field within [low, high]: a value, a range, a step or a list."""
    value = st.integers(low, high).map(str)
    ordered = st.tuples(st.integers(low, high), st.integers(low, high)).map(sorted)
    span = ordered.map(lambda pair: f"{pair[0]}-{pair[1]}")
    step = st.integers(1, high - low + 1)
    return st.one_of(
        st.just("*"),
        value,
        span,
        step.map(lambda n: f"*/{n}"),
        st.tuples(span, step).map(lambda pair: f"{pair[0]}/{pair[1]}"),
        st.lists(value, min_size=2, max_size=4, unique=True).map(",".join),
    )


# Days of the month stop at 28 so that every month has them: an expression that never fires
# (`0 0 31 2 *`) is refused, and that is a rule of the calendar, not of the field.
CRON = st.one_of(
    st.sampled_from(
        ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"]
    ),
    st.tuples(_field(0, 59), _field(0, 23), _field(1, 28), _field(1, 12), _field(0, 6)).map(
        " ".join
    ),
)

schemathesis.openapi.format("repo-url", REPO_URL)
schemathesis.openapi.format("git-ref", GIT_REF)
schemathesis.openapi.format("cron", CRON)

# A client sends a fresh Idempotency-Key with each distinct request and repeats it only with
# retries of that request; the same key with another body is refused (422), as the document
# says. Generated keys come from this strategy, and a valid key schemathesis derived from the
# schema's bounds instead (its coverage phase) is made unique before the request is sent;
# invalid keys are sent as generated.
_KEY = re.compile(r"[!-~]{1,200}")

schemathesis.openapi.format("idempotency-key", st.builds(lambda: str(uuid.uuid4())))


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    headers = case.headers or {}
    for name in list(headers):
        key = headers[name]
        if name.lower() == "idempotency-key" and isinstance(key, str) and _KEY.fullmatch(key):
            headers[name] = f"{key}-{uuid.uuid4()}"
