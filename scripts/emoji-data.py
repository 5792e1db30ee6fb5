#!/usr/bin/env python3
"""Regenerates twitter-text/src/emoji_data.rs from twitter-text's emoji pattern.

Usage: scripts/emoji-data.py twitter-text/js/src/regexp/emoji.js > twitter-text/src/emoji_data.rs

twitter-text states the emoji it counts as one character as a generated regular expression
(UTF-16, alternatives, character classes, optional parts, one negative lookahead for U+FE0E).
This script enumerates every sequence it matches, folds the five skin tones into U+1F3FB (the
set holds all five wherever it holds one, which the script checks), and writes the sequences
as data. It also checks that the pattern's first matching alternative is always its longest
match, which is what lets the Rust side look up the longest sequence instead of running a
regular expression.
"""

import sys

NOT_FE0E = -1
SKIN = range(0x1F3FB, 0x1F400)


def pattern_of(js):
    start = js.index("regex: /") + len("regex: /")
    return js[start:js.index("/g", start)]


def parse(src):
    def unit(i):
        assert src[i:i + 2] == "\\u", src[i:i + 10]
        return int(src[i + 2:i + 6], 16), i + 6

    def alternatives(i):
        alts, seq = [], []
        while i < len(src) and src[i] != ")":
            c = src[i]
            if c == "|":
                alts.append(seq)
                seq = []
                i += 1
                continue
            if c == "(":
                negative = src.startswith("(?!", i)
                j = i + 3 if src.startswith("(?", i) else i + 1
                node, j = alternatives(j)
                assert src[j] == ")"
                i = j + 1
                if negative:
                    assert node == ("alt", [[("lit", 0xFE0E)]]), node
                    item = ("neg",)
                else:
                    item = node
            elif c == "[":
                j, chars = i + 1, []
                while src[j] != "]":
                    a, j = unit(j)
                    if src[j] == "-":
                        b, j = unit(j + 1)
                        chars.extend(range(a, b + 1))
                    else:
                        chars.append(a)
                item, i = ("cls", chars), j + 1
            else:
                a, i = unit(i)
                item = ("lit", a)
            if i < len(src) and src[i] == "?":
                item, i = ("opt", item), i + 1
            seq.append(item)
        alts.append(seq)
        return ("alt", alts), i

    tree, end = alternatives(0)
    assert end == len(src)
    return tree


def enumerate_node(node):
    kind = node[0]
    if kind == "lit":
        return [[node[1]]]
    if kind == "cls":
        return [[c] for c in node[1]]
    if kind == "neg":
        return [[NOT_FE0E]]
    if kind == "opt":  # greedy: with the part first
        return enumerate_node(node[1]) + [[]]
    out = []
    for seq in node[1]:
        parts = [[]]
        for item in seq:
            parts = [p + q for p in parts for q in enumerate_node(item)]
        out.extend(parts)
    return out


def code_points(units):
    out, i = [], 0
    while i < len(units):
        u = units[i]
        if 0xD800 <= u <= 0xDBFF:
            out.append(0x10000 + ((u - 0xD800) << 10) + (units[i + 1] - 0xDC00))
            i += 2
        else:
            out.append(u)
            i += 1
    return tuple(out)


def main():
    tree = parse(pattern_of(open(sys.argv[1], encoding="utf-8").read()))
    sequences = [code_points(units) for units in enumerate_node(tree)]
    first = {}
    for order, seq in enumerate(sequences):
        core = tuple(c for c in seq if c != NOT_FE0E)
        marked = bool(seq) and seq[-1] == NOT_FE0E
        # First match in pattern order must be the longest: no earlier sequence may be a
        # proper prefix of a later one (unless its lookahead fails exactly there).
        for n in range(1, len(core)):
            earlier = first.get(core[:n])
            if earlier is not None and earlier[0] < order:
                assert earlier[1] and core[n] == 0xFE0E, f"shadowed: {core}"
        first.setdefault(core, (order, marked))
    folded = {}
    for core in first:
        key = tuple(0x1F3FB if c in SKIN else c for c in core)
        folded.setdefault(key, []).append(core)
    for key, variants in folded.items():
        tones = sum(1 for c in key if c == 0x1F3FB)
        assert not tones or len(variants) == 5 ** tones, f"not every skin tone: {key}"
    text_default = sorted(core[0] for core, (_, marked) in first.items() if marked)
    assert all(len(core) == 1 for core, (_, marked) in first.items() if marked)

    esc = lambda seq: "".join("\\u{%X}" % c for c in seq)
    out = sys.stdout
    out.write("//! The emoji twitter-text 3 counts as one character each (its generated emoji pattern,\n")
    out.write("//! Apache 2.0), as data: written by scripts/emoji-data.py, not edited by hand.\n\n")
    out.write("/// Every emoji sequence, one per line, each skin tone written as U+1F3FB.\n")
    out.write("pub(super) const SEQUENCES: &str = concat!(\n")
    for key in sorted(folded):
        out.write('    "%s\\n",\n' % esc(key))
    out.write(");\n\n")
    out.write("/// The emoji of the list that are not one when U+FE0E (text presentation) follows.\n")
    out.write("pub(super) const TEXT_DEFAULT: &[char] = &[\n")
    for c in text_default:
        out.write("    '\\u{%X}',\n" % c)
    out.write("];\n")


if __name__ == "__main__":
    main()
