import os
import signal
import sys

# Ctrl-C while the modules load: nothing to clean up yet (cli.main() handles it later).
signal.signal(signal.SIGINT, lambda *_: (sys.stderr.write("interrupted\n"), os._exit(130)))

from workflow.cli import main  # noqa: E402

signal.signal(signal.SIGINT, signal.default_int_handler)
code = main()
# The command is over: a Ctrl-C now would only break the exit hooks (jsii stopping node:
# a KeyboardInterrupt there ends the run with 130 and no message, node left to itself).
signal.signal(signal.SIGINT, signal.SIG_IGN)
sys.exit(code)
