"""Small text utilities shared by the evaluators and the cluster labels: words, script-based language
identification, and the phrasings that mark a refusal or a request for JSON. Standard library only."""

from __future__ import annotations

import re
from collections import Counter

_WORD = re.compile(r"[^\W\d_][\w'-]*", re.UNICODE)
_CJK = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af]")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_ARABIC = re.compile(r"[\u0600-\u06ff]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")

STOPWORDS = frozenset([
    "a", "about", "after", "again", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be", "been", "before",
    "being", "but", "by", "can", "could", "did", "do", "does", "doing", "done", "for", "from", "had", "has", "have",
    "having", "he", "her", "here", "hers", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself",
    "just", "me", "more", "most", "my", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other",
    "our", "out", "over", "own", "same", "she", "should", "so", "some", "such", "than", "that", "the", "their", "them",
    "then", "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "very", "was",
    "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you",
    "your", "yours", "yourself", "please", "thanks", "thank", "hi", "hello", "hey", "can't", "i'm", "it's", "don't"
])

# Function words that tell apart the Latin-script languages we are most likely to meet.
_LATIN_MARKERS = {
    "en": frozenset([
        "the", "and", "is", "are", "of", "to", "in", "that", "it", "for", "with", "you", "this", "what", "how"
    ]),
    "es": frozenset([
        "el", "la", "los", "las", "de", "que", "y", "en", "un", "una", "por", "para", "es", "con", "cómo", "qué", "está"
    ]),
    "fr": frozenset([
        "le", "la", "les", "des", "et", "est", "une", "un", "pour", "que", "dans", "avec", "vous", "est-ce", "comment"
    ]),
    "de": frozenset([
        "der", "die", "das", "und", "ist", "nicht", "ein", "eine", "zu", "mit", "sie", "ich", "wie", "was", "für"
    ]),
    "pt": frozenset(["o", "os", "as", "de", "que", "e", "um", "uma", "para", "com", "não", "está", "você", "como"]),
}


LATIN = "latin"


def is_latin(language: str) -> bool:
    return language == LATIN or language in _LATIN_MARKERS


def words(text: str) -> list[str]:
    """Lower-cased words of Latin/Cyrillic/... script; CJK text yields its characters as words."""
    out = [w.lower() for w in _WORD.findall(text) if not _CJK.search(w)]
    out.extend(_CJK.findall(text))
    return out


def content_words(text: str) -> set[str]:
    """Words that carry meaning (no stop words, at least 3 letters), plus CJK character bigrams."""
    terms = {_stem(w) for w in (x.lower() for x in _WORD.findall(text)) if len(w) >= 3 and w not in STOPWORDS
             and not _CJK.search(w)}
    cjk = "".join(_CJK.findall(text))
    terms.update(cjk[i:i + 2] for i in range(len(cjk) - 1))
    return terms


def _stem(word: str) -> str:
    """A crude English stem, enough for "orders"/"order", "shipping"/"ship", "delayed"/"delay"."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            stem = word[: -len(suffix)]
            if len(stem) >= 4 and stem[-1] == stem[-2] and stem[-1] not in "aeiousl":
                stem = stem[:-1]  # shipping -> shipp -> ship
            return stem
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    return word[:-1] if len(word) > 4 and word.endswith("e") else word  # escalate -> escalat, like escalated


def language(text: str) -> str | None:
    """A best guess at the language of ``text`` from its script (and, for Latin script, function
    words): ``zh``, ``ja``, ``ko``, ``ru``, ``ar``, ``en``, ``es``, ``fr``, ``de``, ``pt``, or ``latin``
    for Latin-script text whose language the function words do not settle; None when the text is too
    short or too mixed to tell."""
    sample = text[:2000]
    counts = {
        "ja": len(_KANA.findall(sample)),
        "zh": len(_CJK.findall(sample)),
        "ko": len(_HANGUL.findall(sample)),
        "ru": len(_CYRILLIC.findall(sample)),
        "ar": len(_ARABIC.findall(sample)),
        "latin": len(_LATIN.findall(sample)),
    }
    if counts["ja"] >= 2:  # Japanese mixes kana with kanji
        counts["ja"] += counts["zh"]
        counts["zh"] = 0
    # A CJK character carries about as much as a short word: weigh scripts by that.
    weights = {"ja": 2.5, "zh": 2.5, "ko": 2.0, "ru": 1.0, "ar": 1.0, "latin": 1.0}
    scored = {k: v * weights[k] for k, v in counts.items()}
    total = sum(scored.values())
    if total < 8:
        return None
    script, top = max(scored.items(), key=lambda kv: kv[1])
    if top / total < 0.6:
        return None
    if script != "latin":
        return script
    return _latin_language(sample) or LATIN


def _latin_language(sample: str) -> str | None:
    tokens = Counter(w.lower() for w in _WORD.findall(sample))
    hits = {lang: sum(tokens[m] for m in markers) for lang, markers in _LATIN_MARKERS.items()}
    best, best_hits = max(hits.items(), key=lambda kv: kv[1])
    if best_hits < 2:
        return None
    second = max(v for k, v in hits.items() if k != best)
    return best if best_hits >= 1.5 * second else None


_REFUSAL_EN = re.compile(
    r"^\W*(?:(?:i'?m|i am)\s+(?:really\s+|so\s+)?sorry[,.!]?\s*(?:but\s+)?)?(?:unfortunately,?\s+)?"
    r"(?:i\s+must\s+decline|"
    r"i\s+(?:can(?:no|')?t|cannot|am\s+(?:not\s+able|unable)|won'?t|will\s+not|"
    r"(?:do\s+not|don'?t)\s+(?:feel\s+comfortable|think\s+i\s+(?:can|should)))"
    # only a few filler words between the negation and the verb ("I can't wait to help" is no refusal)
    r"(?:\s+(?:really|currently|possibly|actually|directly|personally|legally|ethically|be\s+able|able|to|"
    r"in\s+good\s+conscience))*\s+"
    r"(?:help|assist|provid|comply|answer|do\s+that|fulfil|support|shar|creat|generat|writ|engag|discuss|"
    r"continu|giv|offer|respond))",
    re.IGNORECASE,
)
# "As an AI (language model), I don't/can't ..." declines whatever verb follows.
_REFUSAL_AS_AI = re.compile(
    r"^\W*as\s+an?\s+(?:ai|artificial\s+intelligence)(?:\s+(?:language\s+)?(?:model|assistant))?,?\s+"
    r"i\s+(?:can(?:no|')?t|cannot|am\s+not|am\s+unable|don'?t|do\s+not|won'?t)\b",
    re.IGNORECASE,
)
_REFUSAL_ZH = re.compile(
    r"^\W{0,3}(?:(?:很|非常|十分)?(?:抱歉|对不起|不好意思)[，,。!！\s]*)?"
    r"(?:作为(?:一个)?(?:AI|人工智能|语言模型|AI助手)[^，,。]{0,10}[，,]?\s*)?"
    r"(?:我)?(?:无法|不能|不可以|没法|不便|不会)(?:为您|帮您|帮你|为你)?"
    r"(?:提供|回答|协助|帮助|完成|满足|处理|讨论|生成|参与)",
)


def is_refusal(text: str) -> bool:
    """Whether the answer opens by declining the request (English and Chinese phrasings)."""
    head = text.strip()[:300]
    return bool(_REFUSAL_EN.search(head) or _REFUSAL_AS_AI.search(head) or _REFUSAL_ZH.search(head))


_ASKS_JSON = re.compile(
    r"\b(?:(?:respond|reply|answer|return|output|format|give|provide|produce|write)\w*\s+"
    r"(?:\w+\s+){0,4}?(?:in|as|with|using)?\s*(?:a\s+|an\s+|valid\s+|only\s+|strict\s+)*json|"
    r"json\s+(?:only|object|format|schema)|valid\s+json|only\s+json)\b|以\s*JSON|JSON\s*格式|返回\s*JSON|输出\s*JSON",
    re.IGNORECASE,
)


def asks_for_json(prompt: str) -> bool:
    """Whether the instructions ask for a JSON answer."""
    return bool(_ASKS_JSON.search(prompt))


_FENCE = re.compile(r"^\s*```(?:json)?\s*\n?(.*?)\n?```\s*$", re.DOTALL | re.IGNORECASE)


def json_payload(text: str) -> str:
    """The answer with a surrounding Markdown code fence removed (models often fence their JSON)."""
    match = _FENCE.match(text)
    return match.group(1) if match else text.strip()


def repetition(text: str) -> float:
    """How degenerate the text is, 0..1: the share of its word 4-grams (CJK: character 6-grams) that
    repeat an earlier one. Short texts score 0."""
    tokens = words(text)
    cjk_chars = len(_CJK.findall(text))
    n = 6 if cjk_chars > len(tokens) / 2 else 4
    if len(tokens) < 24:
        return 0.0
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams)
