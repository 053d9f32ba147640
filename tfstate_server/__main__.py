import sys

from tfstate_server.cli import main

if __name__ == "__main__":
    sys.exit(main())
