"""Synthesize spoken digits "zero" .. "nine" with espeak-ng, one folder per digit, for
`make audio-demo`: several voices (and a female variant of each), pitches and speeds.

Usage: python scripts/spoken_digits.py OUT_FOLDER
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
from pathlib import Path

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
VOICES = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029"]
VARIANTS = ["", "+f3"]  # espeak-ng's default male voice and a female variant
PITCHES = [35, 50, 65]
SPEEDS = [130, 170]


def main(out: Path) -> int:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        print("espeak-ng is not installed: sudo apt-get install espeak-ng", file=sys.stderr)
        return 1
    count = 0
    for digit in DIGITS:
        folder = out / digit
        folder.mkdir(parents=True, exist_ok=True)
        for voice, variant, pitch, speed in itertools.product(VOICES, VARIANTS, PITCHES, SPEEDS):
            path = folder / f"{voice}{variant.replace('+', '-')}-p{pitch}-s{speed}.wav"
            if not path.exists():
                subprocess.run(
                    [espeak, "-v", voice + variant, "-p", str(pitch), "-s", str(speed),
                     "-w", str(path), digit],
                    check=True,
                )  # fmt: skip
            count += 1
    print(f"{count} spoken digits in {out}/ ({len(DIGITS)} folders)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        sys.exit(2)
    sys.exit(main(Path(sys.argv[1])))
