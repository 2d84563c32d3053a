"""What the command-line programs share: an argument parser whose errors are one line."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` that reports a usage error as one line on stderr,
    ``error: <what is wrong>; see <prog> --help``, and exits with status 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {message}; see {self.prog} --help\n")
        sys.exit(2)
