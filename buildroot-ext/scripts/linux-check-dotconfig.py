#!/usr/bin/env python3
"""Check that every symbol of the kernel config fragments made it into .config.

usage: linux-check-dotconfig.py DOTCONFIG FRAGMENT...

Fragments are applied in order (a later one overrides an earlier one, as
merge_config.sh does). "CONFIG_FOO=val" must appear verbatim in DOTCONFIG;
"# CONFIG_FOO is not set" means FOO must be unset or "is not set" there.
Prints one line per mismatch and exits 1 if there is any.
"""

import re
import sys

SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


def parse(path, strict):
    """Map symbol -> value (None for "is not set") for one config file."""
    values = {}
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            m = SET.match(line)
            if m:
                values[m.group(1)] = m.group(2)
                continue
            m = UNSET.match(line)
            if m:
                values[m.group(1)] = None
                continue
            if strict and line and not line.startswith("#"):
                raise ValueError("{}:{}: not a kernel config line: {}"
                                 .format(path, lineno, line))
    return values


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    dotconfig, fragments = argv[1], argv[2:]
    try:
        final = parse(dotconfig, strict=False)
        wanted = {}
        origin = {}
        for frag in fragments:
            for sym, val in parse(frag, strict=True).items():
                wanted[sym] = val
                origin[sym] = frag
    except (OSError, ValueError) as e:
        print("linux-check-dotconfig: ERROR: {}".format(e))
        return 1

    bad = 0
    for sym in sorted(wanted):
        want, got = wanted[sym], final.get(sym)
        if want is None:
            ok = got is None or got == "n"
        else:
            ok = got == want
        if not ok:
            bad += 1
            print("linux-check-dotconfig: MISMATCH {}: fragment {} wants {}, "
                  ".config has {}".format(
                      sym, origin[sym],
                      "is not set" if want is None else want,
                      "is not set" if got is None else got))
    print("linux-check-dotconfig: {} symbols checked, {} mismatches ({})"
          .format(len(wanted), bad, dotconfig))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
