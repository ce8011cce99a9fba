#!/usr/bin/env python3
"""Write tests/fixtures/tokenizer/*.json from OpenAI CLIP's own tokenizer.

The Rust `ClipTokenizer` (shared/src/embed/tokenizer.rs) must produce exactly the
rows OpenAI CLIP feeds its text encoder. These fixtures are what the real Python
code produces, so the Rust tests compare against the reference, not against a
re-implementation:

  reference.json  [{text, clean, ids}]: `clean` is the text after
                  whitespace_clean(basic_clean(text)).lower(); `ids` is the padded
                  row of clip.tokenize(text, context_length=77, truncate=True).
  clean.json      [{text, clean}]: bulk checks of the text cleanup alone (every
                  HTML5 entity, ftfy's upper-case entities, numeric references,
                  with and without a '<' in the text).
  unicode.json    per-code-point behaviour of the pieces that depend on Unicode
                  tables (the pre-tokenizer classes, \\s, str.lower), so the Rust
                  side can list exactly where its Unicode version differs.

Source of truth: the `openai-clip` sdist on PyPI (OpenAI's CLIP repository as a
package, MIT licence), whose clip/simple_tokenizer.py needs only ftfy and regex.
clip/clip.py (home of `tokenize`) imports torch, so `clip_tokenize_row` below
transcribes its truncate=True branch instead of importing it. Nothing is copied
into the repository; the module is imported from the downloaded sdist.

Setup (no torch needed):

  python3 -m venv /tmp/venv-tok
  /tmp/venv-tok/bin/pip install ftfy==6.3.1 regex==2026.11.15
  /tmp/venv-tok/bin/pip download openai-clip==1.0.1 --no-deps --no-binary :all: -d /tmp/clip
  /tmp/venv-tok/bin/python scripts/tokenizer_reference.py /tmp/clip/openai-clip-1.0.1.tar.gz

The script checks that the sdist's bpe_simple_vocab_16e6.txt.gz is byte-identical
to the committed tests/fixtures/models/tiny-clip/bpe_simple_vocab_16e6.txt.gz.
"""

import html
import html.entities
import importlib.util
import json
import sys
import tarfile
import tempfile
import unicodedata
from pathlib import Path

import ftfy
import regex

ROOT = Path(__file__).resolve().parent.parent
VOCAB = ROOT / "tests/fixtures/models/tiny-clip/bpe_simple_vocab_16e6.txt.gz"
OUT = ROOT / "tests/fixtures/tokenizer"
CONTEXT = 77


def load_simple_tokenizer(sdist: Path):
    """Import clip/simple_tokenizer.py from the openai-clip sdist (tarball or directory)."""
    tmp = tempfile.mkdtemp(prefix="openai-clip-")
    if sdist.is_dir():
        src = next(sdist.rglob("clip/simple_tokenizer.py"))
    else:
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if m.name.endswith(("clip/simple_tokenizer.py", "clip/bpe_simple_vocab_16e6.txt.gz"))]
            tar.extractall(tmp, members=members, filter="data")
        src = next(Path(tmp).rglob("clip/simple_tokenizer.py"))
    vocab = src.parent / "bpe_simple_vocab_16e6.txt.gz"
    if vocab.read_bytes() != VOCAB.read_bytes():
        sys.exit(f"{vocab} differs from the committed {VOCAB}")
    spec = importlib.util.spec_from_file_location("openai_clip_simple_tokenizer", src)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def clip_tokenize_row(tok, text: str, context_length: int = CONTEXT) -> list[int]:
    """clip.tokenize([text], context_length, truncate=True)[0], without torch."""
    sot = tok.encoder["<|startoftext|>"]
    eot = tok.encoder["<|endoftext|>"]
    tokens = [sot] + tok.encode(text) + [eot]
    if len(tokens) > context_length:
        tokens = tokens[:context_length]
        tokens[-1] = eot
    return tokens + [0] * (context_length - len(tokens))


def clean(st, text: str) -> str:
    """The text SimpleTokenizer.encode splits into words."""
    return st.whitespace_clean(st.basic_clean(text)).lower()


LONG = (
    "A long caption about a photograph: a golden retriever is running across a wide green meadow "
    "at sunset, chasing a bright red frisbee that a child threw from the far side of the field, while "
    "two other dogs, a beagle and a border collie, watch from under an old oak tree next to a wooden "
    "fence, and in the background snow-capped mountains rise above a calm blue lake with sailboats."
)

TEXTS = [
    # plain English and capitalisation
    "a photo of a cat",
    "A Photo Of A Dog",
    "A PHOTO OF A DOG.",
    "a diagram",
    "the quick brown fox jumps over the lazy dog",
    # punctuation
    "Hello, world!",
    "what's that? it's a bird... no, it's a plane!!!",
    "!!!???...,,,;;;:::",
    "price: $19.99 (20% off) #1 @home a+b=c",
    "snake_case kebab-case CamelCase dot.separated path/to/file.jpg",
    "https://example.com/a?b=c&d=e#frag",
    "email: someone@example.com",
    "I ♥ NY ★☆ → ← ©®™",
    # contractions
    "it's don't we're they've I'm you'll he'd",
    "IT'S DON'T WE'RE THEY'VE I'M YOU'LL HE'D",
    "'s 't 're 've 'm 'll 'd",
    "rock'n'roll o'clock y'all 'quoted' ''''",
    "don't stop believin'",
    "the cat'ſ toy",
    # numbers
    "numbers 0 1 42 1234567890 3.14159 -7 1e10 2024-06-11",
    "x² H₂O ½ ① Ⅳ",
    "١٢٣ ४५६ 七八九",
    # accents, diacritics, scripts
    "café naïve résumé façade jalapeño",
    "Crème brûlée à la mode",
    "decomposed e\u0301 vs é",
    "Ångström \u212b \u2126",
    "Straße groß Fußball ẞ",
    "İstanbul ıi",
    "ΟΔΥΣΣΕΥΣ σοφός ΣΑΣ",
    "Tiếng Việt có dấu",
    "Привет, мир",
    "猫の写真",
    "一只猫坐在垫子上",
    "고양이 사진",
    "صورة قطة",
    "שלום עולם",
    "हिन्दी पाठ",
    "ภาษาไทย",
    "mixed 中文English混合123text",
    "a\u0345b \u1fb3",
    "Ǆemal ǅ ǆ ŉ",
    # emoji
    "emoji 🐱🐶 👍🏽 👨‍👩‍👧 ❤️ 🇫🇷",
    "😀",
    # HTML entities
    "&amp; &lt; &gt; &quot; &#39; &eacute; &nbsp;",
    "Tom &amp;amp; Jerry",
    "&amp;amp;amp; triple",
    "fish &amp chips &notit; &copy2024",
    "&#x1F600; &#128512; &#65;&#x42;",
    "&EACUTE; &NTILDE; &AMP; &SZLIG;",
    "<b>bold</b> &amp; &lt;i&gt;",
    "a < b &amp;amp;amp; c",
    "a<b\nfish &amp;amp;amp; chips",
    "fish &amp;amp;amp; chips\na<b",
    "&#0; &#13; &#128; &#x80; &#1114112; &#xD800; &#1; &#x81;",
    "&#65 &#x42 no semicolons &#abc; &#12a;",
    "&ldquo;quoted&rdquo; &#xFB01;sh &#x3000;space",
    "<p>&ldquo;quoted&rdquo; &#xFB01;sh</p>",
    # curly quotes, ligatures, widths
    "“curly double” ‘curly single’ it’s",
    "ﬁsh ﬂower oﬀice ﬃ ﬄ ĳ ﬅ",
    "ＦＵＬＬＷＩＤＴＨ　ｔｅｘｔ １２３！",
    "ｗｗｗ．ｅｘａｍｐｌｅ．ｃｏｍ",
    "halfwidth ｶﾀｶﾅ ﾟ",
    # whitespace and control characters
    "tabs\tand\nnewlines\r\nand   multiple    spaces",
    "  leading and trailing  ",
    "",
    "   \t\n  ",
    "\u00a0\u2003\u3000",
    "nbsp\u00a0here and\u2003em space and\u3000ideographic",
    "line\u2028sep para\u2029sep cr\ronly",
    "zero\u200bwidth soft\u00adhyphen bom\ufeffhere",
    "control\x01\x07chars\x7f and \x0cformfeed",
    "\x1b[31mred\x1b[0m terminal \x1b[1;4mescapes",
    "c1 \x80 \x93quoted\x94 \x85 \x81",
    # special-token text
    "<|startoftext|> <|endoftext|> special tokens",
    "<|ENDOFTEXT|>",
    "<|startoftext|><|endoftext|>",
    "<|ſtartoftext|> folds like s but is no special token",
    # many merges, long texts, truncation
    "antidisestablishmentarianism supercalifragilisticexpialidocious",
    "pneumonoultramicroscopicsilicovolcanoconiosis photographer photographs unbelievably",
    LONG,
    "a " * 75,
    "a " * 76,
    "z" * 300,
]


def ftfy_upper_entities() -> list[str]:
    """The upper-cased entity names ftfy adds to the HTML5 table (ftfy.chardata)."""
    import ftfy.chardata

    return sorted(k for k in ftfy.chardata.HTML_ENTITIES if k[1:] not in html.entities.html5)


def needs_mojibake_repair(text: str) -> bool:
    """Whether ftfy's fix_encoding (not implemented in Rust) changes this text."""
    return ftfy.fix_text(text) != ftfy.fix_text(text, fix_encoding=False)


def entity_list(names) -> str:
    """The references, space-separated, less those whose expansion ftfy takes for
    mojibake (e.g. `&Acirc;` then a space reads as UTF-8 for U+00A0 misdecoded)."""
    kept = [n for n in names if not needs_mojibake_repair(f"x {n} x")]
    dropped = [n for n in names if n not in kept]
    if dropped:
        print(f"  left out {len(dropped)} references ftfy would repair as mojibake: {' '.join(dropped)}")
    return " ".join(kept)


def clean_cases() -> list[str]:
    named = sorted(html.entities.html5)
    with_semi = entity_list(["&" + n for n in named if n.endswith(";")])
    bare = entity_list(["&" + n + "x" for n in named if not n.endswith(";")])
    upper = entity_list(ftfy_upper_entities())
    numeric = entity_list([f"&#{n};" for n in list(range(0, 0x120)) + [0xFDD0, 0xFFFE, 0xFFFF, 0x1FFFE, 0x10FFFF, 0x110000]])
    numeric_hex = entity_list([f"&#x{n:X} &#X{n:x};" for n in range(0x70, 0xA0)])
    cases = []
    for text in [with_semi, bare, upper, numeric, numeric_hex]:
        cases.append(text)
        cases.append("<" + text)  # '<' turns ftfy's own unescaping off
        cases.append(text.replace("&", "&amp;"))  # double-escaped
    return cases


def ranges(codepoints, label=None):
    """Sorted code points -> [[start, end(, label)], ...] runs."""
    out = []
    for cp in codepoints:
        if out and out[-1][1] == cp - 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp] + ([label] if label else []))
    return out


def unicode_tables(st) -> dict:
    flags = regex.IGNORECASE  # as SimpleTokenizer.pat
    letter = regex.compile(r"[\p{L}]+", flags)
    number = regex.compile(r"[\p{N}]", flags)
    other = regex.compile(r"[^\s\p{L}\p{N}]+", flags)
    space = regex.compile(r"\s")  # whitespace_clean's re.sub(r'\s+', ...)
    classes, spaces, lower, unassigned = [], [], [], []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        if letter.fullmatch(c):
            label = "L"
        elif number.fullmatch(c):
            label = "N"
        elif other.fullmatch(c):
            label = "O"
        else:
            label = "-"
        if classes and classes[-1][2] == label and classes[-1][1] == cp - 1:
            classes[-1][1] = cp
        elif classes and classes[-1][2] == label and classes[-1][1] == 0xD7FF and cp == 0xE000:
            classes[-1][1] = cp  # runs continue across the surrogate gap
        else:
            classes.append([cp, cp, label])
        if space.fullmatch(c):
            spaces.append(cp)
        if c.lower() != c:
            lower.append([cp, c.lower()])
        if unicodedata.category(c) == "Cn":
            unassigned.append(cp)
    return {
        "python": sys.version.split()[0],
        "unicodedata": unicodedata.unidata_version,
        "regex": regex.__version__,
        "classes": classes,
        "space": ranges(spaces),
        "lower": lower,
        # Unassigned in Python's Unicode (unicodedata.unidata_version).
        "unassigned": ranges(unassigned),
    }


def write(name: str, value) -> None:
    """One list entry (or top-level field) per line: reviewable diffs, ASCII-only escapes."""
    if isinstance(value, list):
        body = ",\n".join(json.dumps(v) for v in value)
        text = f"[\n{body}\n]\n"
    else:
        body = ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in value.items())
        text = f"{{\n{body}\n}}\n"
    path = OUT / name
    path.write_text(text)
    print(f"wrote {path}")


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    st = load_simple_tokenizer(Path(sys.argv[1]))
    tok = st.SimpleTokenizer(str(VOCAB))
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"ftfy {ftfy.__version__}, regex {regex.__version__}, Python {sys.version.split()[0]}")
    repaired = [t for t in TEXTS if needs_mojibake_repair(t)]
    if repaired:
        sys.exit(f"texts that only ftfy's mojibake repair handles (not done in Rust): {repaired}")
    cases = clean_cases()
    repaired = [t[:40] for t in cases if needs_mojibake_repair(t)]
    if repaired:
        sys.exit(f"cleanup cases that ftfy's mojibake repair changes: {repaired}")
    write("reference.json", [{"text": t, "clean": clean(st, t), "ids": clip_tokenize_row(tok, t)} for t in TEXTS])
    write("clean.json", [{"text": t, "clean": clean(st, t)} for t in cases])
    write("unicode.json", unicode_tables(st))


if __name__ == "__main__":
    main()
