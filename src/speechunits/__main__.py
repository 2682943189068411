"""``python -m speechunits ...``: the same command line as the ``speechunits`` script."""
import sys

from speechunits.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
