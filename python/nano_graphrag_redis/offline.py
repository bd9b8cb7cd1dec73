"""Run nano-graphrag with no network, deterministically.

GraphRAG needs three things from the outside world: tiktoken encodings (downloaded on
first use), an LLM and an embedding model. This module replaces all three with small
in-process stand-ins so demos and tests can run the whole insert/query pipeline offline:

- :func:`offline_tiktoken` patches tiktoken to return :func:`offline_encoding`, a
  byte-level encoding (one token per UTF-8 byte).
- :class:`OfflineModel` is a fake LLM that answers every prompt nano-graphrag 0.0.8.x
  sends, in the format its parsers expect, and uses the LLM response cache exactly as
  the real model functions in ``nano_graphrag/_llm.py`` do.
- :func:`offline_embedding_func` returns a deterministic hashed bag-of-words embedding.

Typical use::

    model = OfflineModel()
    with offline_tiktoken():
        rag = GraphRAG(**offline_graphrag_kwargs("./work", model))
        await rag.ainsert(SAMPLE_TEXT)
        print(await rag.aquery("Who is Marisol Vance?", QueryParam(mode="local")))

Importing this module is cheap: tiktoken, numpy and nano_graphrag are imported lazily,
inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import sys
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only for annotations; the real imports are lazy
    import numpy as np
    import numpy.typing as npt
    import tiktoken
    from nano_graphrag._utils import EmbeddingFunc

__all__ = [
    "EMBEDDING_DIM",
    "SAMPLE_TEXT",
    "OfflineModel",
    "offline_embed",
    "offline_embedding_func",
    "offline_encoding",
    "offline_graphrag_kwargs",
    "offline_tiktoken",
]

# --------------------------------------------------------------------------- tiktoken

_ENCODING: tiktoken.Encoding | None = None


def offline_encoding() -> tiktoken.Encoding:
    """Return a byte-level ``tiktoken.Encoding`` built in-process (cached).

    Every byte value is its own token and there are no merges, so a text has exactly
    ``len(text.encode())`` tokens. ``pat_str`` must cover every character (tiktoken drops
    text the pattern does not match), hence "runs of non-space or runs of space".
    """
    global _ENCODING
    if _ENCODING is None:
        import tiktoken

        _ENCODING = tiktoken.Encoding(
            name="nano-graphrag-redis-offline-bytes",
            pat_str=r"\S+|\s+",
            mergeable_ranks={bytes([i]): i for i in range(256)},
            special_tokens={},
        )
    return _ENCODING


def _offline_encoding_for_model(model_name: str) -> tiktoken.Encoding:
    return offline_encoding()


def _offline_get_encoding(encoding_name: str) -> tiktoken.Encoding:
    return offline_encoding()


@contextlib.contextmanager
def offline_tiktoken() -> Iterator[tiktoken.Encoding]:
    """Patch tiktoken so nano-graphrag never downloads an encoding; restore on exit.

    Patches ``tiktoken.encoding_for_model`` and ``tiktoken.get_encoding``. nano-graphrag
    0.0.8.2 only uses ``import tiktoken`` (attribute look-ups at call time), but any
    already imported ``nano_graphrag*`` module holding a direct reference (``from tiktoken
    import encoding_for_model``, as other versions or forks may do) is patched too.

    ``nano_graphrag._utils`` caches the first encoding it gets in a module global
    ``ENCODER`` and never looks again. Left alone, a real encoding cached before this
    context would be used inside it, and the offline one would leak out of it; so the
    global is set to the offline encoding on entry and restored on exit.

    Yields the offline encoding. Not thread-safe (it patches module globals).
    """
    import tiktoken

    replacements: dict[str, Any] = {
        "encoding_for_model": _offline_encoding_for_model,
        "get_encoding": _offline_get_encoding,
    }
    originals = {name: getattr(tiktoken, name) for name in replacements}
    # (module, attribute, previous value), restored in reverse order on exit.
    saved: list[tuple[Any, str, Any]] = []

    def patch(module: Any, attr: str, value: Any) -> None:
        saved.append((module, attr, getattr(module, attr)))
        setattr(module, attr, value)

    try:
        # Import _utils (if nano_graphrag is installed) so its ENCODER cache is handled
        # even when nano_graphrag is first imported inside this context.
        try:
            import nano_graphrag._utils as ng_utils
        except ImportError:
            ng_utils = None

        for name, replacement in replacements.items():
            patch(tiktoken, name, replacement)
        for mod_name, module in list(sys.modules.items()):
            if module is None or not (mod_name == "nano_graphrag" or mod_name.startswith("nano_graphrag.")):
                continue
            for name, replacement in replacements.items():
                if getattr(module, name, None) is originals[name]:
                    patch(module, name, replacement)
        if ng_utils is not None and hasattr(ng_utils, "ENCODER"):
            patch(ng_utils, "ENCODER", offline_encoding())
        yield offline_encoding()
    finally:
        for module, attr, value in reversed(saved):
            setattr(module, attr, value)


# -------------------------------------------------------------------------- embedding

EMBEDDING_DIM = 64
_WORD_RE = re.compile(r"[a-z0-9]+")


def _stable_seed(text: str) -> int:
    # Python's hash() is salted per process; blake2b gives the same seed everywhere.
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def _embed_one(text: str) -> npt.NDArray[np.float32]:
    import numpy as np

    # Hashed bag of words: each lowercase word maps to a fixed pseudo-random vector, and
    # a text is the normalised sum of its words' vectors. Texts sharing words (a question
    # naming an entity, and that entity's record) therefore score a positive cosine,
    # which makes local/naive retrieval meaningful while staying fully deterministic.
    words = _WORD_RE.findall(text.lower()) or [text]
    vector = np.zeros(EMBEDDING_DIM, dtype=np.float64)
    for word, count in Counter(words).items():
        rng = np.random.default_rng(_stable_seed(word))
        vector += count * rng.standard_normal(EMBEDDING_DIM)
    norm = float(np.linalg.norm(vector))
    if norm == 0.0:  # cannot happen with a non-empty word list, but never divide by 0
        vector[0], norm = 1.0, 1.0
    return (vector / norm).astype(np.float32)


async def offline_embed(texts: list[str]) -> npt.NDArray[np.float32]:
    """Embed ``texts`` deterministically: shape ``(len(texts), EMBEDDING_DIM)``, unit rows."""
    import numpy as np

    if not texts:
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    return np.stack([_embed_one(t) for t in texts])


_EMBEDDING_FUNC: EmbeddingFunc | None = None


def offline_embedding_func() -> EmbeddingFunc:
    """Return :func:`offline_embed` wrapped as nano-graphrag's ``EmbeddingFunc`` (cached).

    A function rather than a module constant so importing this module does not import
    nano_graphrag.
    """
    global _EMBEDDING_FUNC
    if _EMBEDDING_FUNC is None:
        from nano_graphrag._utils import wrap_embedding_func_with_attrs

        _EMBEDDING_FUNC = wrap_embedding_func_with_attrs(embedding_dim=EMBEDDING_DIM, max_token_size=8192)(
            offline_embed
        )
    return _EMBEDDING_FUNC


# ---------------------------------------------------------------------------- the LLM

# Prompt markers, each a phrase that occurs in exactly one nano-graphrag 0.0.8.2 prompt
# template (nano_graphrag/prompt.py), in this order: PROMPTS["entity_extraction"],
# ["entiti_continue_extraction"], ["entiti_if_loop_extraction"],
# ["summarize_entity_descriptions"], ["community_report"], ["global_map_rag_points"].
# The test suite checks each still occurs in exactly that template.
MARKER_ENTITY_EXTRACTION = "identify all entities of those types from the text"
MARKER_GLEAN_CONTINUE = "MANY entities were missed in the last extraction"
MARKER_GLEAN_IF_LOOP = "Answer YES | NO"
MARKER_SUMMARIZE = "generating a comprehensive summary of the data provided below"
MARKER_COMMUNITY_REPORT = "Write a comprehensive report of a community"
MARKER_GLOBAL_MAP = "Generate a response consisting of a list of key points"  # a system prompt

# Delimiters of the entity-extraction output format (PROMPTS["DEFAULT_*_DELIMITER"]).
TUPLE_DELIMITER = "<|>"
RECORD_DELIMITER = "##"
COMPLETION_DELIMITER = "<|COMPLETE|>"

# Capitalised words that start sentences or belong to prompt templates, not names.
_STOPWORDS = frozenset(
    """
    A An And As At But By Each Every For From He Her Here His How I If In It Its Last
    Many Most No Not Now Of On One Or Our She So Some That The Their Then There These
    They This Those Three To Today Two Under We What When Where Which While Who Why With
    Within You After Before During Over Since Because Although Yet Later Still Even Once
    Unknown Person Geo Organization Event Csv Report Reports Offline Answer Question
    Twice Boats Students Next Both Also Analyst Importance Score Community
    """.split()
)
_NAME_RE = re.compile(r"\b[A-Z][A-Za-z]+(?: [A-Z][A-Za-z]+)*\b")
_ORG_WORDS = frozenset("Institute Company Council Society University Ledger Cooperative Trust Museum Guild".split())
_EVENT_WORDS = frozenset("Festival Regatta Parade Fair".split())
_GEO_WORDS = frozenset("Port Mount Lake Island Bay River Valley Coast Street Harbour".split())
_GEO_PREFIX_RE = re.compile(r"\b(?:in|at|from|near|to|on|across|off)\s+$", re.IGNORECASE)


def _clean(text: str, limit: int = 200) -> str:
    """Make text safe inside one extraction record: one line, no delimiters, no quotes."""
    text = " ".join(text.split())
    for bad in (TUPLE_DELIMITER, RECORD_DELIMITER, COMPLETION_DELIMITER):
        text = text.replace(bad, " ")
    text = text.replace('"', "'")
    return text[:limit].rstrip()


def _names(text: str) -> list[tuple[str, int]]:
    """Capitalised phrases of ``text`` with their offsets, in order of appearance."""
    found: list[tuple[str, int]] = []
    for match in _NAME_RE.finditer(text):
        words = match.group(0).split(" ")
        start = match.start()
        while words and words[0] in _STOPWORDS:  # "The Harbor Ledger" -> "Harbor Ledger"
            start += len(words[0]) + 1
            words = words[1:]
        if words:
            found.append((" ".join(words), start))
    return found


def _top_names(text: str, limit: int) -> list[str]:
    """The ``limit`` most frequent names of ``text`` (ties: first appearance first)."""
    occurrences = _names(text)
    counts = Counter(name for name, _ in occurrences)
    first_seen: dict[str, int] = {}
    for name, offset in occurrences:
        first_seen.setdefault(name, offset)
    ranked = sorted(counts, key=lambda n: (-counts[n], first_seen[n]))
    return ranked[:limit]


def _whole_sentences(chunk: str) -> str:
    """Drop the partial sentences a token-window chunk starts and ends with.

    Chunks are cut at arbitrary token (here: byte) offsets, so the first or last word may
    be a fragment ("sol Vance", "Mari"), which would become a bogus entity name.
    """
    if chunk[:1] and not chunk[0].isupper():
        cut = chunk.find(". ")
        chunk = chunk[cut + 2 :] if cut >= 0 else chunk
    if chunk[-1:] not in (".", "!", "?", "\n"):
        cut = chunk.rfind(". ")
        chunk = chunk[: cut + 1] if cut >= 0 else chunk
    return chunk


def _sentence_around(text: str, offset: int) -> str:
    """The sentence of ``text`` containing ``offset`` (sentences end with ". ")."""
    start = text.rfind(". ", 0, offset)
    start = 0 if start < 0 else start + 2
    end = text.find(". ", offset)
    return text[start:] if end < 0 else text[start : end + 1]


def _entity_type(text: str, name: str, offset: int) -> str:
    """A plausible entity type (one of PROMPTS["DEFAULT_ENTITY_TYPES"]) from cheap cues."""
    words = name.split(" ")
    if words[-1] in _EVENT_WORDS:
        return "event"
    if words[-1] in _ORG_WORDS:
        return "organization"
    if words[-1] in _GEO_WORDS or words[0] in _GEO_WORDS:  # "Kestrel Island", "Port Alder"
        return "geo"
    if _GEO_PREFIX_RE.search(text[max(0, offset - 12) : offset]):  # "in Greyhaven"
        return "geo"
    return "person"


def _extraction_answer(chunk: str, max_entities: int = 6) -> str:
    """Entity and relationship records for one chunk, in nano-graphrag's format.

    Names are the chunk's most frequent capitalised phrases, so chunks that mention the
    same people and places produce the same entity names and the graph connects.
    Relationships chain the entities in order of appearance, giving one connected
    component per chunk.
    """
    chunk = _whole_sentences(chunk)
    names = _top_names(chunk, max_entities)
    occurrences = dict(reversed(_names(chunk)))  # name -> first offset
    names.sort(key=lambda n: occurrences[n])
    records: list[str] = []
    for name in names:
        offset = occurrences[name]
        kind = _entity_type(chunk, name, offset)
        description = _clean(f"{name} ({kind}): {_sentence_around(chunk, offset)}")
        records.append(
            f'("entity"{TUPLE_DELIMITER}"{name.upper()}"{TUPLE_DELIMITER}"{kind}"{TUPLE_DELIMITER}"{description}")'
        )
    for source, target in zip(names, names[1:], strict=False):
        strength = 1 + min(chunk.count(source), chunk.count(target))
        description = _clean(f"{source} and {target} appear together in the same passage.")
        records.append(
            f'("relationship"{TUPLE_DELIMITER}"{source.upper()}"{TUPLE_DELIMITER}'
            f'"{target.upper()}"{TUPLE_DELIMITER}"{description}"{TUPLE_DELIMITER}{strength})'
        )
    return f"{RECORD_DELIMITER}\n".join(records) + COMPLETION_DELIMITER


def _between(text: str, start_marker: str, end_marker: str | None = None) -> str:
    """The part of ``text`` after the LAST ``start_marker`` (and before ``end_marker``).

    The last one, because prompt templates show worked examples before the real data.
    """
    index = text.rfind(start_marker)
    part = text if index < 0 else text[index + len(start_marker) :]
    if end_marker is not None and end_marker in part:
        part = part[: part.index(end_marker)]
    return part


def _csv_column(section: str, column: int) -> list[str]:
    """One column of a nano-graphrag CSV block (``list_of_list_to_csv``: ``,\\t``-separated)."""
    values: list[str] = []
    for line in section.strip().splitlines()[1:]:  # first line is the header
        cells = line.split(",\t")
        if len(cells) > column:
            values.append(cells[column].strip().strip('"'))
    return values


def _community_report_answer(prompt: str) -> str:
    data = _between(prompt, "# Real Data")
    entities = _csv_column(_between(data, "-----Entities-----\n```csv\n", "```"), 1)
    relations = _csv_column(_between(data, "-----Relationships-----\n```csv\n", "```"), 1)
    lead = entities[:3] or ["Unnamed entities"]
    report = {
        "title": "Community of " + ", ".join(name.title() for name in lead),
        "summary": (
            f"This community has {len(entities)} entities and {len(relations)} "
            f"relationships; its central entities are {', '.join(lead)}."
        ),
        "rating": float(min(10, 1 + len(entities))),
        "rating_explanation": "The rating grows with the number of connected entities.",
        "findings": [
            {
                "summary": f"{name} belongs to this community",
                "explanation": f"{name} is listed among the community's entities.",
            }
            for name in (entities[:5] or lead)
        ],
    }
    return json.dumps(report)


def _global_map_answer(question: str, system_prompt: str) -> str:
    context = _between(system_prompt, "---Data tables---", "---Goal---")
    titles = re.findall(r'"# ([^\n"]+)', context) or ["the community reports"]
    points = [{"description": f"{title} is relevant to the question: {question}", "score": 1} for title in titles[:3]]
    return json.dumps({"points": points})


def _context_of(system_prompt: str) -> str:
    """The data part of a query system prompt (local, global-reduce or naive)."""
    markers = ("---Data tables---", "---Analyst Reports---", "Below are the knowledge you know:")
    for marker in markers:
        if marker in system_prompt:
            data = system_prompt[system_prompt.index(marker) + len(marker) :]
            # The template resumes at the next "---Goal---"-style heading or a bare "---".
            end = re.search(r"\n---(?=\n|[A-Za-z])", data)
            return data if end is None else data[: end.start()]
    return system_prompt


def _final_answer(question: str, system_prompt: str | None) -> str:
    names = _top_names(_context_of(system_prompt or ""), 5)
    found = ", ".join(name.title() for name in names) if names else "nothing specific"
    return f"Offline answer to the question: {question.strip()}\n\nThe provided context mentions {found}."


class OfflineModel:
    """Deterministic fake LLM for GraphRAG's ``best_model_func`` and ``cheap_model_func``.

    ``calls`` counts the answers actually produced (cache misses), so a test can prove a
    second run was served entirely from the LLM response cache.
    """

    def __init__(self, name: str = "offline-model") -> None:
        self.name = name
        self.calls = 0

    def __deepcopy__(self, memo: dict[int, Any]) -> OfflineModel:
        # GraphRAG deep-copies its fields (dataclasses.asdict) into every storage's
        # global_config; a copy would count calls nobody reads. The model is a service,
        # so every copy is the same object.
        return self

    def __repr__(self) -> str:
        return f"OfflineModel(name={self.name!r}, calls={self.calls})"

    async def __call__(
        self,
        prompt: str,
        system_prompt: str | None = None,
        history_messages: list[dict[str, str]] | None = None,
        **kwargs: Any,
    ) -> str:
        """Answer like ``nano_graphrag._llm.openai_complete_if_cache`` minus the network."""
        from nano_graphrag._utils import compute_args_hash

        # Extra kwargs (response_format, max_tokens) are ignored, and are not part of the
        # cache key, exactly as in nano_graphrag/_llm.py.
        hashing_kv = kwargs.pop("hashing_kv", None)
        messages: list[dict[str, str]] = []
        if system_prompt:
            messages.append({"role": "system", "content": system_prompt})
        messages.extend(history_messages or [])
        messages.append({"role": "user", "content": prompt})

        args_hash = ""
        if hashing_kv is not None:
            args_hash = compute_args_hash(self.name, messages)
            cached = await hashing_kv.get_by_id(args_hash)
            if cached is not None:
                return str(cached["return"])

        self.calls += 1
        text = self.answer(prompt, system_prompt)

        if hashing_kv is not None:
            await hashing_kv.upsert({args_hash: {"return": text, "model": self.name}})
            await hashing_kv.index_done_callback()
        return text

    def answer(self, prompt: str, system_prompt: str | None = None) -> str:
        """The (uncached) answer to one prompt, chosen by the prompt's template marker."""
        if MARKER_ENTITY_EXTRACTION in prompt:
            chunk = _between(prompt, "-Real Data-")
            chunk = _between(chunk, "\nText: ", "\n######################\nOutput:")
            return _extraction_answer(chunk)
        if MARKER_GLEAN_CONTINUE in prompt:
            # Nothing was missed: an empty list of records, properly terminated.
            return COMPLETION_DELIMITER
        if MARKER_GLEAN_IF_LOOP in prompt:
            return "no"
        if MARKER_SUMMARIZE in prompt:
            entity = _between(prompt, "Entities: ", "\n").strip()
            description = _clean(_between(prompt, "Description List: ", "\n"), limit=300)
            return f"{entity} is summarised from several passages. {description}"
        if MARKER_COMMUNITY_REPORT in prompt:
            return _community_report_answer(prompt)
        if system_prompt and MARKER_GLOBAL_MAP in system_prompt:
            return _global_map_answer(prompt, system_prompt)
        # local_rag_response, global_reduce_rag_response, naive_rag_response, or a
        # user's own prompt: the question is the user message.
        return _final_answer(prompt, system_prompt)


# ------------------------------------------------------------------------ sample text

SAMPLE_TEXT = """\
Port Alder is a small harbour town on the northern coast, known for its grey stone \
piers and the lighthouse that has guided boats home for two centuries. Most of the \
town's families have worked the water, but in recent years Port Alder has become \
better known for the Alder Bay Institute, a marine research station built on the old \
cannery grounds.

Marisol Vance directs the Alder Bay Institute. She arrived in Port Alder twelve years \
ago to study the kelp forests off Kestrel Island, and stayed when the Institute offered \
her a permanent post. Marisol Vance is careful and patient; her colleagues say she can \
spend a whole morning watching a single tide pool. Under her direction the Institute \
has mapped every reef between Port Alder and Kestrel Island.

Tobias Reed is the harbourmaster of Port Alder. He grew up on the piers, and his \
father ran the Northwind Ferry Company before him. Tobias Reed still keeps the ferry \
timetable pinned above his desk, although the Northwind Ferry Company is now run by his \
cousin, Ingrid Reed. Twice a day the ferry carries researchers from the Alder Bay \
Institute out to Kestrel Island and brings them back before dark.

Every August the town holds the Lighthouse Festival. Boats are decorated with lanterns, \
the Northwind Ferry Company offers free evening crossings, and the Alder Bay Institute \
opens its laboratories to visitors. Tobias Reed organises the harbour parade, and \
Marisol Vance gives a talk about the seals that rest on the rocks of Kestrel Island.

Elena Park writes for the Harbor Ledger, the weekly newspaper of Port Alder. Last \
spring Elena Park published a long article about a disagreement between Marisol Vance \
and Tobias Reed. The Alder Bay Institute wanted to close the northern channel near \
Kestrel Island during the seal breeding season, while the harbourmaster worried that \
the Northwind Ferry Company would lose its shortest route. Ingrid Reed proposed a \
compromise: the ferry would slow down in the channel and the Institute would place \
floating markers around the breeding rocks.

The compromise worked. The Harbor Ledger reported that the seal colony on Kestrel \
Island grew by a third the following year, and the ferry kept its timetable. At the \
next Lighthouse Festival, Marisol Vance and Tobias Reed led the harbour parade \
together, and Elena Park wrote that Port Alder had learned to share its water.

Today the Alder Bay Institute trains students from the University of Greyhaven, a \
three hour drive inland. Students stay with families in Port Alder, ride the Northwind \
Ferry Company boats to Kestrel Island, and write about their work for the Harbor Ledger. \
Marisol Vance says the town itself has become part of the research: the fishermen who \
know the reefs, the ferry crews who count the seals, and the harbourmaster who keeps \
them all on schedule.
"""
"""A short original English text about a fictional harbour town (ASCII, ~3 KB).

It names a few people (Marisol Vance, Tobias Reed, Ingrid Reed, Elena Park), places
(Port Alder, Kestrel Island), organisations (Alder Bay Institute, Northwind Ferry Company,
Harbor Ledger, University of Greyhaven) and an event (Lighthouse Festival), each
mentioned in several paragraphs so the extracted graph is connected.
"""


# ----------------------------------------------------------------- GraphRAG settings


def offline_graphrag_kwargs(working_dir: str, model: OfflineModel) -> dict[str, Any]:
    """Keyword arguments for ``GraphRAG(...)`` that run offline with ``model``.

    Use inside :func:`offline_tiktoken`. No storage class is set: add
    ``key_string_value_json_storage_cls=...`` (or others) yourself.
    """
    return {
        "working_dir": str(working_dir),
        "best_model_func": model,
        "cheap_model_func": model,
        "embedding_func": offline_embedding_func(),
        # With the byte-level encoding one token is one byte: 600-byte chunks split
        # SAMPLE_TEXT into about six chunks, so several extraction calls and overlapping
        # entities exercise the graph merge and the storages.
        "chunk_token_size": 600,
        "chunk_overlap_token_size": 60,
        # The embeddings are hashed words, not semantics: never let the cosine threshold
        # filter out every hit (which would turn local/naive queries into the fail answer).
        "query_better_than_threshold": -1.0,
        # Build the chunk vector DB too, so "naive" queries work.
        "enable_naive_rag": True,
    }
