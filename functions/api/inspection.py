"""Attack detection for request values: SQL injection, XSS and path traversal.

Why not a library: libinjection is the well-kept detector, but none of its Python
bindings installs as a wheel on Linux x86_64 *and* aarch64 for Python 3.11-3.13
(checked with `pip download --only-binary=:all: --platform manylinux2014_aarch64
--python-version 3.12`): `libinjection-python` (2022) and `pylibinjection` (2014)
ship only sources that need a C compiler, and `libinjection-wheel` (2019) has
cp36/cp37 x86_64 wheels only. A Lambda asset must not compile at build time, so
the detector is written here.

How it works:

1. **Normalise.** Attackers hide payloads behind encodings that a backend or a
   browser undoes later, so each value is looked at in every form it can take:
   as sent; then up to three rounds of NFKC folding (a fullwidth apostrophe,
   U+FF07, is `'`), URL-decoding (also IIS `%uXXXX`), HTML entities and JS
   escapes (`\\xNN`, `\\uNNNN`), so double encoding (`%252e`) is undone; each
   form lowercased, and also with SQL comments of any length read as a database
   reads them (a block comment as a space: `UNION/*x*/SELECT`; deleted:
   `UN/**/ION`; its marks alone: `/*!50000or*/`; `--` and `#` to the end of the
   line) and with tab and newline removed (`java&#9;script:`). Each step is one
   linear pass that runs only when its trigger character is present.

2. **Match token shapes, not words.** The rules describe short sequences of SQL
   or HTML tokens with bounded gaps between them, the way a fingerprinting
   tokenizer does, so a keyword alone never blocks a request:
   `union` + `select` + a column list (`1,2`, `null`, `*`, `@@version`, `a from t`,
   `a||b`) but not "Union Select Comfort"; a quote or `)` closing a string, then
   `or`/`and`, then a comparison or an SQL call (`' or 'a'='a`, `' and sleep(5)`,
   `' or 1 in (1)`) but not "Kids' and baby" or "Kids' and 3 in 1"; `;` followed
   by a statement shape (`; drop table t`, `; update t set c =`) but not
   "recalled; drop-side rail"; a quote followed by a truncating comment
   (`admin'--`) but not "50% off -- limited" or a dash typed against a word
   ('"Safety First"--printed'); a tag that runs script or loads something
   (`<script`, `<svg/`, `<img `), or any complete HTML tag, but not "Fisher-Price
   <3 toys" (a tag name cannot start with a digit); a DOM event handler followed by
   `=`; a `javascript:` or `data:text/html` URL; a JS call shape (`alert(1)`,
   ``alert`1` ``) but not "Recall alert (2024)"; `../` and `..\\` in any encoding,
   overlong UTF-8 dots and slashes, NUL bytes and well-known system files
   (`/etc/passwd`, `win.ini`). Identifiers that only SQL spells
   (`information_schema`, `pg_sleep`, `xp_cmdshell`, `@@version`) are enough on
   their own.

3. **Scan at C speed.** Rules are grouped behind an *anchor*, a literal or a
   character class they start with (`union`, a quote, `<`, `(`, `..`), so the
   regex engine skips to the anchor instead of trying every position, and each
   group lists *triggers*, strings the anchor needs: a value without `'`, `"`,
   `` ` `` or `)` never runs the quote rules. A plain search term costs a few
   microseconds.

Linear time: every quantifier in every rule is bounded (`{0,12}` gaps, `{1,40}`
names), and the one repeated group (a column list, `{0,8}` items) starts each
item with a literal comma, so there is one way to split any text among items:
the work at any start position is bounded by a constant and a scan is O(n).
Comment readings are single passes too: no scan from a `/*` runs on in vain.
`benchmarks/validator.py` measures it on adversarial runs (quotes, spaces, `<`,
`%25`, parentheses, `' or `...): a 10x longer input takes ~10x the time. A
Python-level tokenizer was the alternative; it measured 7-10 MB/s just to split
the input, before any rule ran.

The corpus in `tests/security/corpus/` (attacks and benign recall searches) is
the specification: every attack there is detected, every benign string passes,
and every rule here is exercised by at least one attack.
"""

from __future__ import annotations

import html
import re
import unicodedata
from enum import StrEnum
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import unquote


class Threat(StrEnum):
    SQL_INJECTION = "sql_injection"
    XSS = "xss"
    PATH_TRAVERSAL = "path_traversal"


class Detection(NamedTuple):
    """What matched: the category and the rule's name (for logs; never the input)."""

    threat: Threat
    rule: str


class _Anchor(NamedTuple):
    """Where a rule group starts: a regex, and strings one of which it needs.

    `triggers` lets `detect` skip a group without running it: a value that
    contains none of them cannot match the anchor.
    """

    triggers: tuple[str, ...]
    regex: str


def _words(*words: str) -> tuple[_Anchor, ...]:
    """Whole words, one anchor each: a literal first (the engine scans for it at C
    speed), its left boundary checked after."""
    return tuple(_Anchor((w,), rf"{w}(?<!\w{w})\b") for w in words)


def _literal(text: str, guard: str = "") -> tuple[_Anchor, ...]:
    """A literal, then an optional zero-width `guard` that narrows where it counts."""
    return (_Anchor((text,), re.escape(text) + guard),)


def _chars(chars: str, guard: str = "") -> tuple[_Anchor, ...]:
    """Any one of `chars`, then an optional zero-width `guard`."""
    return (_Anchor(tuple(chars), "[" + "".join(re.escape(c) for c in chars) + "]" + guard),)


def _after(anchor: str, *names: str, spaced: bool = False) -> str:
    """Just past `anchor`, require that one of `names` (a whole word) came right before it.

    Rules start with a cheap literal (`(`, `.`, `:`) and look back for the word, so
    the engine skips ahead to that literal instead of trying every position.
    """
    gaps = ("", " ") if spaced else ("",)
    escaped = re.escape(anchor)
    return (
        "(?:"
        + "|".join(rf"(?<={n}{g}{escaped})(?<!\w{n}{g}{escaped})" for n in names for g in gaps)
        + ")"
    )


def _names(text: str) -> list[str]:
    """Space-separated names, for the long word lists below."""
    return text.split()


_Trie = dict[str, "_Trie"]


def _trie(*words: str) -> str:
    """An alternation of literal words factored by prefix: `lo(?:ad(?:end)?|ck)`.

    The regex engine tries alternatives one by one; sharing prefixes keeps a
    failed attempt at a few character comparisons instead of one per word.
    """
    tree: _Trie = {}
    for word in words:
        node = tree
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}  # a word ends here

    def emit(node: _Trie) -> str:
        branches = [re.escape(char) + emit(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        joined = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if "" in node:
            return f"(?:{joined})?" if len(branches) > 1 or len(joined) > 1 else f"{joined}?"
        return joined

    return "(?:" + emit(tree) + ")"


# Building blocks. Each is bounded; no bounded repeat wraps another repeat.
_GAP = r"[\s+]{0,12}"  # SQL whitespace; '+' is a space once a form decodes it
_GAPP = r"[\s+(]{0,12}"  # the same, also opening parentheses: `or (1=1`
_QUOTE = r"['\"`]"
_NUM = r"-?(?:0x[0-9a-f]{1,32}|\d{1,20}(?:\.\d{1,10})?)\b"
_QSTR = r"(?:'[^']{0,40}'|\"[^\"]{0,40}\")"
_LIT = rf"(?:{_NUM}|{_QSTR}|(?:true|false|null)\b)"
_IDENT = r"[a-z_@#$\[\x60\"][\w.$@#\[\]\x60\"]{0,63}"
# What may follow `from <table>` for the clause to look like SQL rather than prose.
_FROM = (
    rf"from{_GAP}{_IDENT}{_GAP}"
    r"(?:$|where\b|limit\b|order\b|group\b|union\b|join\b|--|#|;|/\*|\))"
)
# Stricter, where nothing before says SQL: "select one from below; ..." is prose.
_FROM_CLAUSE = rf"from{_GAP}{_IDENT}{_GAP}(?:where|limit|order{_GAP}by|group{_GAP}by|union|join)\b"
# A comment that ends an injected query: `--` needs a space (MySQL) or the end.
_END_COMMENT = r"(?:--(?:[\s+-]|$)|#(?:\s|$)|/\*)"
# Comparisons that make a tautology or a boolean probe out of two literals.
# Not `%`, `&` or `*`: "Boys' and 2% milk", "Kids' and 3 & up" are prose.
_CMP = r"(?:<=>|[=<>!]{1,3}|[\^|]|\b(?:r?like|regexp|glob|div|sounds)\b)"
# IN, IS and BETWEEN carry their own right-hand side, as SQL spells them: `in (1`,
# `is not null`, `between 1 and`. Not "3 in 1 or 4 in 1 crib", "200 in 3 colors" or
# '"Summer" or "Summer Infant" is printed on the seat'.
_TEST = (
    rf"(?:\bin{_GAP}\({_GAPP}(?:{_LIT}|select\b)"
    rf"|\bis{_GAP}(?:not{_GAP})?(?:null|true|false|unknown|distinct)\b"
    rf"|\bbetween{_GAP}{_LIT}{_GAP}and\b)"
)
_RIGHT = r"[\w'\"`(@-]"
_BOOL = r"(?:(?:or|and|xor|not)\b|\|\||&&)"
# Functions that appear only in SQL; any spacing before the parenthesis.
_SQL_ONLY_FUNCTIONS = _trie(
    *_names(
        "pg_sleep benchmark ifnull isnull nullif coalesce ascii unicode substring substr"
        " char_length concat concat_ws group_concat database current_user system_user session_user"
        " extractvalue updatexml rand hex unhex load_file elt make_set json_extract json_keys"
        " randomblob strcmp regexp_like regexp_substr nvl to_char md5 sha1 sysdate getdate"
        " db_name user_name host_name xmltype string_agg array_agg query_to_xml current_setting"
        " pg_read_file utl_inaddr dbms_pipe dbms_lock ctxsys bit_length octet_length crc32 chr"
        " nchar mid ord"
    )
)
# SQL functions that are also English words: only directly before `(`.
_WORDLIKE_FUNCTIONS = _trie(
    *_names(
        "if left right length len char count version schema user exp floor random cast convert"
        " exists instr locate position decode lower upper now row case extract soundex uuid"
    )
)
# `sleep` only with a bare number: "... and Sleep (0-3 months)" is a product.
_SQL_CALL = (
    rf"(?:{_SQL_ONLY_FUNCTIONS}\s{{0,3}}\(|{_WORDLIKE_FUNCTIONS}\("
    r"|sleep\s{0,3}\(\s{0,3}\d{1,10}(?:\.\d{1,6})?\s{0,3}\))"
)
# A column list, strong enough to need no `union` before it:
# `*`, `@@version`, `null`, `'x'`, `1,`, `count(`, `a from t where`.
# `a, b.c, "d"`: each item starts after a comma, so there is one way to split it.
_COLUMN_LIST = rf"{_IDENT}(?:{_GAP},{_GAP}{_IDENT}){{0,8}}"
_COLUMNS = (
    rf"(?:\*|@@|null\b|0x|distinct\b|top{_GAP}\d|\d{{1,20}}{_GAP}(?:,|from\b|--|#|;|\)|$)"
    rf"|[a-z_][\w.]{{0,40}}\(|{_COLUMN_LIST}{_GAP}{_FROM_CLAUSE})"
)
# After `union select` or `(select`, which already say SQL: also a quoted
# string, `1`, `(`, or `a from t` at the end. Not "Union Select Comfort, firm":
# columns that come from nowhere extract nothing.
# Also columns joined or cast (`a || '~' || b`, `a::text`), to read several through one.
_COLUMNS_LOOSE = rf"(?:{_COLUMNS}|{_QUOTE}|\d|\(|{_COLUMN_LIST}{_GAP}(?:{_FROM}|\|\||::))"
_SUBSELECT = rf"\({_GAPP}select\b{_GAPP}{_COLUMNS_LOOSE}"
_STATEMENT_END = r"(?:$|where\b|--|#|;|/\*)"

# A rule group is (anchor, {rule name: what follows the anchor}). The anchor is a
# literal or a character class, so the regex engine scans for it at C speed and
# only tries the rules where it occurs. Names are reported, never the input.
_RuleGroup = tuple[tuple[_Anchor, ...], dict[str, str]]

_SQLI_GROUPS: list[_RuleGroup] = [
    # UNION-based extraction: `' union all select null,null--`, `-1 union(select 1,2)`.
    (
        _words("union"),
        {
            "union_select": (
                rf"{_GAP}(?:(?:all|distinct){_GAP})?\(?{_GAP}select\b{_GAPP}{_COLUMNS_LOOSE}"
            )
        },
    ),
    # After a quote or a closing parenthesis, i.e. after breaking out of a string.
    (
        _chars("'\"`)"),
        {
            # OR/AND and an expression: tautologies and boolean-blind probes.
            # `' or 'a'='a`, `') or (1=1`, `' and ascii(substr(...`, `' or 1--`.
            "quote_boolean": (
                rf"{_GAP}{_BOOL}{_GAPP}(?:"
                rf"{_LIT}\){{0,3}}{_GAP}(?:{_CMP}{_GAP}{_RIGHT}|{_TEST}|{_END_COMMENT})"
                rf"|[a-z_][\w.$]{{0,40}}{_GAP}(?:"
                rf"(?:<=>|!?=|<>|r?like\b){_GAP}[\d'\"`@(-]|[<>]=?{_GAP}['\"`@(]"
                rf"|is{_GAP}(?:not{_GAP})?null\b)"
                rf"|{_SQL_CALL}|{_SUBSELECT})"
            ),
            # Truncation: `admin'--`, `admin'#`, `admin'/*`, `') --`, `'; --`,
            # `admin' -- -` at the end. Not "50% off -- limited" (no quote), nor a
            # dash typed against a letter: '"Safety First"--printed in blue'.
            "quote_comment": (
                r"(?<=['\"`])(?:\){0,4}(?:--(?![a-z])|/\*|#(?:\s|$))"
                r"|[\s+]{0,4}[);]{1,4}[\s+]{0,4}(?:--|#(?:\s|$)|/\*)"
                r"|[\s+]{1,4}(?:--[\s+-]{0,4}|#|/\*)\s{0,4}$)"
            ),
            # Column enumeration and other clauses: `' order by 3--`, `' having 1=1`.
            "quote_clause": (
                rf"{_GAP}(?:(?:order|group){_GAP}by{_GAP}\d{{1,4}}{_GAP}"
                r"(?:--|#|/\*|,|;|$|\)|asc\b|desc\b|limit\b)"
                rf"|having{_GAP}{_LIT}{_GAP}(?:{_CMP}|{_TEST})"
                rf"|group{_GAP}by{_GAP}[\w.,\s]{{1,60}}having\b"
                rf"|procedure{_GAP}analyse\b|limit{_GAP}\d{{1,10}}{_GAP}(?:--|#|/\*|;|,|$))"
            ),
            # Hex and bit string literals: `x'61646d696e'`.
            "encoded_string": r"(?<=[xb]')(?<!\w[xb]')[0-9a-f]{2,64}'",
        },
    ),
    # Numeric context: `1 or 1=1`, `1) and (select 1 from dual)`, `1 order by 5`.
    (
        _chars("0123456789"),
        {
            "number_boolean": (
                rf"\){{0,3}}{_GAP}{_BOOL}{_GAPP}(?:"
                rf"{_LIT}\){{0,3}}{_GAP}(?:{_CMP}{_GAP}{_LIT}|{_TEST})|{_SQL_CALL}|{_SUBSELECT})"
            ),
            "number_clause": rf"{_GAP}(?:order|group){_GAP}by{_GAP}\d{{1,4}}{_GAP}(?:--|#|/\*|;|$)",
        },
    ),
    # Tautology without a visible breakout: `or 1=1`, `having 'a'='a'`, `or x=x`.
    (
        _words("or", "and", "xor", "having", "where", "when"),
        {
            "tautology": (
                rf"{_GAPP}(?:"
                rf"{_NUM}\){{0,3}}{_GAP}(?:<=>|!?=|<>|like\b){_GAP}{_NUM}"
                rf"|{_NUM}{_GAP}[<>]=?{_GAP}{_NUM}{_GAP}(?:$|--|#|/\*|;|\)|['\"`]|(?:and|or)\b)"
                rf"|{_QSTR}\){{0,3}}{_GAP}(?:=|like\b){_GAP}{_QUOTE}"
                rf"|(?P<taut_word>[a-z_]\w{{0,30}}){_GAP}={_GAP}(?P=taut_word)\b)"
            )
        },
    ),
    # Stacked queries: `; drop table x`, `; update t set c = 1`, `; exec xp_...`.
    # Not "recalled; drop-side rail" or "; select a model".
    (
        _literal(";"),
        {
            "stacked_query": (
                rf"{_GAP}(?:"
                rf"drop{_GAP}(?:table|database|schema|view|index|user|function|procedure|trigger"
                rf"|sequence|column|role)\b{_GAP}{_IDENT}"
                rf"|(?:delete{_GAP}from|truncate{_GAP}table){_GAP}{_IDENT}{_GAP}{_STATEMENT_END}"
                rf"|(?:insert|replace|merge){_GAP}into{_GAP}{_IDENT}{_GAP}"
                r"(?:\(|values\b|select\b|set\b|using\b)"
                rf"|update{_GAP}{_IDENT}{_GAP}set{_GAP}{_IDENT}{_GAP}="
                rf"|select\b{_GAP}{_COLUMNS}"
                rf"|create{_GAP}(?:table|database|user|function|procedure|trigger|view|index|role"
                rf"|schema|temp|temporary|or{_GAP}replace)\b"
                rf"|alter{_GAP}(?:table|user|database|role|system|login|schema)\b"
                rf"|exec(?:ute)?\b{_GAPP}(?:xp_|sp_|master\.|@|immediate\b|{_QUOTE})"
                rf"|declare{_GAP}@|set{_GAP}@|shutdown{_GAP}(?:$|--|#|;|/\*|with\b)"
                rf"|waitfor{_GAP}(?:delay|time)\b"
                rf"|(?:grant|revoke){_GAP}(?:all|select|insert|update|delete|execute|dba|usage)\b"
                rf"|copy{_GAP}{_IDENT}{_GAP}(?:from|to){_GAP}(?:program|stdin|stdout|')"
                rf"|load{_GAP}data\b|rename{_GAP}table\b|call{_GAP}{_IDENT}\s{{0,3}}\()"
            )
        },
    ),
    # A whole statement typed into a field: `select * from users where id=1`.
    (
        _words("select"),
        {
            "select_statement": (
                rf"{_GAP}(?:\*|@@|(?:distinct|null)\b|top{_GAP}\d|count\s{{0,3}}\("
                rf"|{_COLUMN_LIST}{_GAP}{_FROM_CLAUSE})"
            )
        },
    ),
    # Identifiers only SQL spells, found through their underscore.
    (
        _literal("_"),
        {
            "schema_probe": (
                r"(?:(?<=information_)schema|(?<=pg_)(?:catalog|shadow|authid|user|database"
                r"|namespace|proc|tables|stat_activity|read_file|ls_dir)"
                r"|(?<=sqlite_)(?:master|schema|temp_master)|(?<=xp_)(?:cmdshell|dirtree|regread"
                r"|fileexist)|(?<=sp_)(?:executesql|oacreate|oamethod|makewebtask|addextendedproc"
                r"|configure|password)|(?<=all_)tab_columns|(?<=utl_)(?:inaddr|http|file))\b"
                r"|(?<=load_)file\s{0,3}\(|(?<=current_)(?:user|database|schema)\s{0,3}\(\s{0,3}\)"
            ),
            "time_delay": r"(?<=pg_)sleep(?:_for|_until)?\s{0,8}\(|(?<=dbms_)(?:pipe|lock)\.",
            "encoded_string": (
                r"(?:(?<=group_)concat|(?<=concat_)ws|(?<=make_)set|(?<=json_)keys"
                r"|(?<=quote_)ident|(?<=array_)to_string|(?<=query_)to_xml)\s{0,3}\("
            ),
        },
    ),
    (
        _literal("sys"),
        {
            "schema_probe": (
                r"(?:objects|columns|databases|users|logins|processes)\b"
                r"|\.(?:tables|objects|columns|databases|sql_logins|server_principals|user_summary"
                r"|schema_name)\b|(?<=ctxsys)\.drithsx"
            )
        },
    ),
    (_literal("mysql."), {"schema_probe": r"(?:user|db|proc)\b"}),
    (_words("openrowset", "opendatasource"), {"schema_probe": ""}),
    (_literal("v$", r"(?<!\wv\$)"), {"schema_probe": r"(?:version|instance|database)\b"}),
    (
        _literal("@@"),
        {
            "schema_probe": (
                r"(?:version|datadir|hostname|servername|basedir|tmpdir|spid|identity|language"
                r"|global|session)"
            )
        },
    ),
    (_words("into"), {"schema_probe": r"\s{1,8}(?:out|dump)file\b"}),
    (
        _words("from"),
        {"schema_probe": rf"{_GAP}dual\b{_GAP}(?:--|#|;|/\*|\)|where\b|union\b|limit\b)"},
    ),
    # Time-based blind injection. `sleep(5)` without a space only: "Sleep (2)"
    # is a product listing, and spaced forms after a breakout are caught above.
    (_words("sleep"), {"time_delay": r"\(\s{0,3}\d{1,10}(?:\.\d{1,6})?\s{0,3}\)"}),
    (_words("benchmark"), {"time_delay": r"\s{0,8}\(\s{0,8}\d{1,20}\s{0,8},"}),
    (_words("waitfor"), {"time_delay": r"\s{1,8}(?:delay|time)\s{0,8}['\"]"}),
    (_words("randomblob"), {"time_delay": r"\s{0,3}\(\s{0,3}\d"}),
    # Calls that give a query away on their own: `version()`, `char(65)`, `unhex(`.
    # The anchor is `(`; what follows it is checked before the name behind it.
    (
        _literal("("),
        {
            "schema_probe": (
                r"(?=\s{0,3}\))(?:(?<=[a-z]\()|(?<=[a-z] \())"
                + _after(
                    "(",
                    *_names(
                        "version database user schema current_database current_schema"
                        " session_user system_user db_name user_name suser_name suser_sname"
                        " host_name connection_id last_insert_id found_rows pg_backend_pid"
                    ),
                    spaced=True,
                )
            ),
            "encoded_string": (
                r"(?=\s{0,3}(?:0x[0-9a-f]{1,16}|[0-9]{1,5})\s{0,3}[,)+|])"
                r"(?<=[a-z]\()" + _after("(", "char", "chr", "nchar")
            ),
        },
    ),
    (
        _words("concat", "unhex", "extractvalue", "updatexml", "xmltype"),
        {"encoded_string": r"\s{0,3}\("},
    ),
]

# Tags that run script or load a resource; refused as soon as they open.
_DANGEROUS_TAGS = _names(
    "script iframe frame frameset object embed applet svg math img image video audio source track"
    " body html head meta link style base form input button textarea keygen details dialog"
    " marquee isindex xml bgsound layer ilayer template animate animatetransform animatemotion"
    " foreignobject noscript noembed noframes plaintext xmp listing portal picture"
    " xss param canvas blink"
)
# Every other HTML element: a complete tag of one is markup, which no search needs.
# Not `s` and `q`: "Sizes <S>, <M>" is prose, and neither tag can run anything.
_HTML_ELEMENTS = _names(
    "a abbr address area article aside b bdi bdo big blockquote br caption center cite code col"
    " colgroup data datalist dd del dfn div dl dt em fieldset figcaption figure font footer h1 h2"
    " h3 h4 h5 h6 header hgroup hr i ins kbd label legend li main map mark menu meter nav nobr ol"
    " optgroup option output p pre progress rp rt ruby samp search section select slot small span"
    " strike strong sub summary sup table tbody td tfoot th thead time title tr tt u ul var wbr set"
)
# DOM event handler attributes (HTML, SVG, and the vendor ones from XSS cheat sheets).
_EVENTS = _trie(
    *_names(
        (
            "abort|activate|afterprint|afterscriptexecute|animationcancel|animationend|animationiteration"
            "|animationstart|auxclick|beforeactivate|beforecopy|beforecut|beforedeactivate|beforeinput"
            "|beforepaste|beforeprint|beforescriptexecute|beforetoggle|beforeunload|begin|blur|bounce"
            "|canplay|canplaythrough|cellchange|change|click|close|contextmenu|controlselect|copy"
            "|cuechange|cut|dataavailable|datasetchanged|datasetcomplete|dblclick|deactivate|drag|dragend"
            "|dragenter|dragexit|dragleave|dragover|dragstart|drop|durationchange|emptied|end|ended|error"
            "|errorupdate|filterchange|finish|focus|focusin|focusout|formdata|fullscreenchange"
            "|fullscreenerror|hashchange|help|input|invalid|keydown|keypress|keyup|layoutcomplete|load"
            "|loadeddata|loadedmetadata|loadend|loadstart|losecapture|message|messageerror|mousedown"
            "|mouseenter|mouseleave|mousemove|mouseout|mouseover|mouseup|mousewheel|move|moveend|movestart"
            "|offline|online|pagehide|pageshow|paste|pause|play|playing|pointercancel|pointerdown"
            "|pointerenter|pointerleave|pointermove|pointerout|pointerover|pointerrawupdate|pointerup"
            "|popstate|progress|propertychange|ratechange|readystatechange|repeat|reset|resize|rowenter"
            "|rowexit|rowsdelete|rowsinserted|scroll|scrollend|search|securitypolicyviolation|seeked"
            "|seeking|select|selectionchange|selectstart|show|slotchange|stalled|start|storage|submit"
            "|suspend|timeupdate|toggle|touchcancel|touchend|touchmove|touchstart|transitioncancel"
            "|transitionend|transitionrun|transitionstart|unhandledrejection|unload|volumechange"
            "|waiting|webkitanimationend|webkitanimationiteration|webkitanimationstart"
            "|webkittransitionend|wheel|zoom"
        ).replace("|", " ")
    )
)
_XSS_GROUPS: list[_RuleGroup] = [
    (
        _literal("<", "(?=[a-z/!?])"),
        {
            "script_tag": rf"/?{_trie(*_DANGEROUS_TAGS)}(?:[\s/>]|$)",
            "html_tag": (
                rf"/?{_trie(*_DANGEROUS_TAGS, *_HTML_ELEMENTS)}(?:[\s/][^<>]{{0,256}})?>"
                r"|!--|!\[cdata\[|!doctype|\?xml"
            ),
        },
    ),
    # `onerror=`, after a space, quote, slash or `>`: `<svg/onload=`, `" onfocus=`.
    # Not "onion=" or "online" alone.
    (_literal("on", r"(?<![^\s\"'`/;>(,]on)"), {"event_handler": rf"{_EVENTS}\s{{0,8}}="}),
    (
        _literal(":"),
        {
            "script_url": (
                _after(":", "javascript", "vbscript", "livescript", "ecmascript", "jscript")
                + "|"
                + _after(":", "data")
                + r"\s{0,4}(?:text/(?:html|javascript|xml|ecmascript|vbscript)"
                r"|application/(?:x-)?(?:javascript|ecmascript|xhtml\+xml|xml)|image/svg\+xml)"
            ),
            "style_script": (
                r"\s{0,4}expression\s{0,4}\(|" + _after(":", "behavior") + r"\s{0,4}url"
            ),
        },
    ),
    # JS call shapes: `alert(1)`, `eval(atob(...))`, not "Recall alert (2024)".
    (
        _literal("("),
        {
            "script_call": (
                r"(?=\s{0,4}(?:[0-9]|['\"`/]|document|window|self|top|this|location|origin|atob"
                r"|string|\)))(?<=[a-z]\()"
                + _after("(", "alert", "prompt", "confirm", "eval", "settimeout", "setinterval")
            )
        },
    ),
    (_literal("`"), {"script_call": _after("`", "alert", "prompt", "confirm", "eval")}),
    (
        _literal("[", r"(?=\s{0,4}['\"`])"),
        {"script_call": _after("[", "window", "self", "top", "parent", "frames", "globalthis")},
    ),
    (
        _words("document"),
        {
            "script_call": (
                r"\s{0,4}\.\s{0,4}(?:cookie|domain|write|writeln|location|body|forms"
                r"|createelement)\b"
            )
        },
    ),
    (_words("window"), {"script_call": r"\s{0,4}\.\s{0,4}(?:location|name|open|eval)\b"}),
    (_literal("."), {"script_call": r"(?:innerhtml|outerhtml|insertadjacenthtml)\b"}),
    (_words("fromcharcode", "execscript"), {"script_call": r"\s{0,4}\("}),
    # `constructor(` and `constructor.constructor(`: not "the constructor (toy)".
    (_words("constructor"), {"script_call": r"\(|\s{0,4}\.\s{0,4}constructor"}),
    (_words("srcdoc", "formaction"), {"style_script": r"\s{0,4}="}),
    (_literal("xlink:href"), {"style_script": r"\s{0,4}="}),
    (_literal("-moz-binding"), {"style_script": ""}),
    (_literal("@import"), {"style_script": ""}),
    # UTF-7 `<` and `>`: `+ADw-script+AD4-`.
    (_literal("+ad"), {"style_script": "[w4]-"}),
]

# Slashes, with the Unicode look-alikes some decoders map to them.
_SLASHES = "/\\\u2215\u2216\u29f8"
_SLASH = "".join(re.escape(c) for c in _SLASHES)
_TRAVERSAL_GROUPS: list[_RuleGroup] = [
    # `../`, `..\`, `..;/`, and a value that is only `..`.
    (_literal(".."), {"dot_dot_slash": rf";?[{_SLASH}]|(?<![\s\S]\.\.)$"}),
    (
        _chars(_SLASHES),
        {
            "dot_dot_slash": r"\.\.(?:$|[?#;])",
            "system_file": (
                r"(?:var[/\\](?:log|www|mail|spool|lib)|usr[/\\](?:local[/\\])?(?:etc|bin|lib))"
                r"[/\\]|root[/\\]\."
            ),
        },
    ),
    (_literal("\x00"), {"null_byte": ""}),
    # Overlong UTF-8 forms of '.', '/' and '\' that old decoders accepted.
    (
        _literal("%"),
        {"overlong_utf8": r"c[01]%[89ab][0-9a-f]|e0%[89][0-9a-f]%[89ab][0-9a-f]|f0%8[0-9a-f]%"},
    ),
    (
        _words("etc"),
        {
            "system_file": (
                r"[/\\](?:passwd|shadow|group|hosts|sudoers|issue|crontab|hostname|motd|fstab"
                r"|profile|environment|master\.passwd|nginx|apache2|httpd|mysql|ssh)\b"
            )
        },
    ),
    (_words("proc"), {"system_file": r"[/\\](?:self|\d{1,7}|version|cmdline|mounts|net)\b"}),
    (
        _words("windows", "winnt"),
        {"system_file": r"[/\\](?:system32|system|win\.ini|system\.ini|repair|debug|panther)"},
    ),
    (
        _literal("."),
        {
            "system_file": (
                r"ini\b(?:(?<=win\.ini)(?<!\wwin\.ini)|(?<=system\.ini)(?<!\wsystem\.ini)"
                r"|(?<=boot\.ini)(?<!\wboot\.ini))"
                r"|(?<![^/\\~]\.)(?:ssh|aws|git|svn|htaccess|htpasswd|bash_history|docker|env)"
                r"(?:[/\\]|$)"
            )
        },
    ),
    (
        _literal(":"),
        {
            "system_file": (
                r"(?=[/\\])(?<=[a-z]:)(?<!\w[a-z]:)[/\\]{1,2}"
                r"(?:windows|winnt|inetpub|boot\.ini|users[/\\]|program files)"
            )
        },
    ),
    (_literal("-inf"), {"system_file": r"(?:(?<=web-inf)|(?<=meta-inf))[/\\]"}),
    (_literal("id_", r"(?<!\wid_)"), {"system_file": r"(?:rsa|dsa|ecdsa|ed25519)\b"}),
    (_literal("authorized_keys"), {"system_file": ""}),
    (
        _literal("://"),
        {
            "file_wrapper": _after(
                "://",
                "php",
                "phar",
                "zip",
                "expect",
                "glob",
                "file",
                "jar",
                "netdoc",
                "gopher",
                "dict",
                "zlib",
            )
        },
    ),
]


class _Group:
    """One anchor and its rules, compiled on first use.

    Compiling all ~60 groups costs tens of milliseconds, and a request's text
    can reach only the groups whose triggers it holds (a plain path or search
    word reaches one or none), so a cold start compiles what its first request
    needs and nothing more.
    """

    __slots__ = ("_compiled", "_source", "threat", "triggers")

    def __init__(self, threat: Threat, triggers: tuple[str, ...], source: str):
        self.threat = threat
        self.triggers = triggers
        self._source = source
        self._compiled: re.Pattern[str] | None = None

    @property
    def pattern(self) -> re.Pattern[str]:
        # Two threads compiling the same group at once is harmless: same result.
        if self._compiled is None:
            # ASCII classes: non-ASCII forms were folded by NFKC, and ASCII `\d\s\w`
            # test faster.
            self._compiled = re.compile(self._source, re.ASCII)
        return self._compiled


def _compile(threat: Threat, anchor: _Anchor, rules: dict[str, str]) -> _Group:
    alternatives = "|".join(f"(?P<{name}>{pattern})" for name, pattern in rules.items())
    return _Group(threat, anchor.triggers, f"(?:{anchor.regex})(?:{alternatives})")


# XSS first: polyglots that are both (`'><script>...--`) are logged as XSS.
_GROUPS: tuple[_Group, ...] = tuple(
    _compile(threat, anchor, rules)
    for threat, groups in (
        (Threat.XSS, _XSS_GROUPS),
        (Threat.SQL_INJECTION, _SQLI_GROUPS),
        (Threat.PATH_TRAVERSAL, _TRAVERSAL_GROUPS),
    )
    for anchors, rules in groups
    for anchor in anchors
)


def _index_triggers() -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Which groups each trigger can start: single characters (found by set
    intersection) and longer strings (found by substring search)."""
    by_char: dict[str, list[int]] = {}
    by_string: dict[str, list[int]] = {}
    for index, group in enumerate(_GROUPS):
        for trigger in group.triggers:
            table = by_char if len(trigger) == 1 else by_string
            table.setdefault(trigger, []).append(index)
    return by_char, by_string


_BY_CHAR, _BY_STRING = _index_triggers()
_TRIGGER_CHARS = frozenset(_BY_CHAR)
_SHORT_TEXT = 512


def _groups_for(text: str) -> set[int]:
    """The indexes of the groups whose anchor can occur in `text`."""
    selected: set[int] = set()
    if len(text) <= _SHORT_TEXT:
        for char in _TRIGGER_CHARS.intersection(text):
            selected.update(_BY_CHAR[char])
    else:
        # A substring search per trigger beats building the set of a long text.
        for char, indexes in _BY_CHAR.items():
            if char in text:
                selected.update(indexes)
    for string, indexes in _BY_STRING.items():
        if string in text:
            selected.update(indexes)
    return selected


_URL_ESCAPE = re.compile(r"%[0-9a-fA-F]{2}")
_IIS_ESCAPE = re.compile(r"%[uU]([0-9a-fA-F]{4})")
_JS_ESCAPE = re.compile(r"\\(?:x([0-9a-fA-F]{2})|u\{?([0-9a-fA-F]{4})\}?)")
_BLOCK_COMMENT = re.compile(r"/\*!?\d{0,6}|\*/")
# Lazy, and run only on text cut after its last `*/`: an opening then always finds
# a close ahead (the last three characters aside), so no scan runs to the end in
# vain from each opening: linear.
_FLAT_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
# Run only on text that ends in a newline, so `[^\n]*` always finds one: linear.
_LINE_COMMENT = re.compile(r"(?:--|#)[^\n]*\n")
_CONTROL = str.maketrans("", "", "\t\n\r")
_ROUNDS = 3


def _from_code_point(match: re.Match[str]) -> str:
    return chr(int(match.group(match.lastindex or 1), 16))


def _decode_once(text: str) -> str:
    """One round of every decoding a backend or browser may apply later."""
    if not text.isascii():
        # Some decoders read fullwidth `%` and digits as ASCII ones.
        text = unicodedata.normalize("NFKC", text)
    if "%" in text:
        if _IIS_ESCAPE.search(text):
            text = _IIS_ESCAPE.sub(_from_code_point, text)
        if _URL_ESCAPE.search(text):
            text = unquote(text, errors="replace")
    if "&" in text:
        text = html.unescape(text)
    if "\\" in text and _JS_ESCAPE.search(text):
        text = _JS_ESCAPE.sub(_from_code_point, text)
    return text


def _without_comments(text: str, gap: str = " ") -> str:
    """Each block comment replaced by `gap`, whatever its length, read as MySQL reads
    it (the first `*/` ends it). A database reads a comment as a space
    (`union/*x*/select` is `union select`); a filter that deletes them joins what
    they split (`UN/**/ION`), hence `gap=""`. An unclosed comment is left as it is."""
    end = text.rfind("*/") + 2
    if end < 2:
        return text
    return _FLAT_COMMENT.sub(gap, text[:end]) + text[end:]


def _without_line_comments(text: str) -> str:
    """`--` and `#` to the end of their line as one space, the last line excepted
    (nothing follows its comment)."""
    head, newline, last = text.rpartition("\n")
    return _LINE_COMMENT.sub(" ", head + newline) + last


def _forms(value: str) -> list[str]:
    """The lowercased forms of a value that the rules run on (the first: as sent)."""
    decoded = [value]
    current = value
    for _ in range(_ROUNDS):
        following = _decode_once(current)
        if following == current:
            break
        decoded.append(following)
        current = following
    forms: dict[str, None] = {}
    for text in decoded:
        if not text.isascii():
            text = unicodedata.normalize("NFKC", text)
        text = text.lower()
        readings = [text]
        if "/*" in text:
            readings += (
                _without_comments(text),
                _without_comments(text, gap=""),
                # MySQL runs what `/*!50000 ... */` holds: the marks alone go.
                _BLOCK_COMMENT.sub(" ", text),
            )
        for reading in readings:
            forms[reading] = None
            if "\n" in reading and ("--" in reading or "#" in reading):
                forms[_without_line_comments(reading)] = None
        if "\t" in text or "\n" in text or "\r" in text:
            forms[text.translate(_CONTROL)] = None
    return list(forms)


def scan(value: str) -> Detection | None:
    """The first rule that matches any form of the value, or None (never cached).

    Groups run in priority order (XSS, SQL injection, traversal), each on every
    form whose text holds one of the group's triggers.
    """
    if not value:
        return None
    candidates = sorted(
        (index, position, text)
        for position, text in enumerate(_forms(value))
        for index in _groups_for(text)
    )
    for index, _, text in candidates:
        group = _GROUPS[index]
        match = group.pattern.search(text)
        if match is not None:
            return Detection(group.threat, match.lastgroup or "")
    return None


# Paths and common search terms repeat from request to request; a short value's
# verdict is kept so a warm function scans it once. Bounded in count and in the
# length of what it keeps (4,096 values of at most 128 characters: about 1 MB of
# ASCII, under 3 MB at worst), so varied input only churns it.
_CACHED_LENGTH = 128
_scan_cached = lru_cache(maxsize=4096)(scan)


def detect(value: str) -> Detection | None:
    """`scan`, remembered for short values (the verdict of a pure function)."""
    if len(value) <= _CACHED_LENGTH:
        return _scan_cached(value)
    return scan(value)


def find_threat(value: str) -> Threat | None:
    detection = detect(value)
    return detection.threat if detection else None


def find_threat_in_path(path: str) -> Threat | None:
    """A request path, raw or decoded: the same rules (`/..` at the end counts too)."""
    return find_threat(path)
