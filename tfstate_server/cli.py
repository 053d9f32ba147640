"""Command line: `python -m tfstate_server serve ...`."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import logging
import os
import re
import socket
import sys
from pathlib import Path
from typing import NoReturn

from tfstate_server import auth, logsetup
from tfstate_server.api.app import ServerConfig
from tfstate_server.connections import DEFAULT_MAX_CONNECTIONS
from tfstate_server.metrics import Metrics
from tfstate_server.statebody import HistoryPolicy
from tfstate_server.storage import DEFAULT_STORE, StoreURLError, open_store
from tfstate_server.tls import ServerTLS, TLSError, TLSFiles

PROG = "tfstate-server"
DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_MAX_STATE = "64M"
DEFAULT_KEEP_VERSIONS = 50
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 60.0

EPILOG = """\
environment:
  TFSTATE_USERNAME, TFSTATE_PASSWORD
                        a user for Basic Auth (combined with --credentials-file)
  AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL), AWS_ACCESS_KEY_ID,
  AWS_SECRET_ACCESS_KEY, AWS_REGION / AWS_DEFAULT_REGION
                        for s3:// stores (Cloudflare R2: its endpoint, region
                        "auto", and AWS_REQUEST_CHECKSUM_CALCULATION and
                        AWS_RESPONSE_CHECKSUM_VALIDATION set to when_required)

clients point at it with:
  address        = http(s)://HOST:PORT/states/NAME
  lock_address   = http(s)://HOST:PORT/states/NAME/lock   (lock_method LOCK)
  unlock_address = http(s)://HOST:PORT/states/NAME/lock   (unlock_method UNLOCK)
  and TF_HTTP_USERNAME / TF_HTTP_PASSWORD in the environment; with TLS, a private
  CA as PEM text in TF_HTTP_CLIENT_CA_CERTIFICATE_PEM, and for --tls-client-ca a
  client certificate and key in TF_HTTP_CLIENT_CERTIFICATE_PEM and
  TF_HTTP_CLIENT_PRIVATE_KEY_PEM.

signals:
  SIGTERM, SIGINT  finish requests in progress (--shutdown-timeout), then exit
  SIGHUP           re-read --tls-cert and --tls-key (a bad pair keeps the old one)
"""


class UsageError(Exception):
    """Bad input: one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)i?B?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (e.g. 67108864, 64M, 1G)")
    factor = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[match.group(2).upper()]
    value = int(match.group(1)) * factor
    if value < 1024:
        raise argparse.ArgumentTypeError(f"size {text!r} is below 1 KiB")
    return value


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"expected seconds between 0 and 3600, got {text!r}")
    return value


def _timeout(text: str) -> float:
    value = _seconds(text)
    if value < 0.1:
        raise argparse.ArgumentTypeError(f"expected at least 0.1 seconds, got {text!r}")
    return value


_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


def parse_listen(text: str, option: str = "--listen") -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"{option} {text!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise UsageError(f"{option} {text!r}: {host!r} is not an IPv6 address") from None
    elif not _HOSTNAME.fullmatch(host):
        raise UsageError(f"{option} {text!r}: {host!r} is not a host name or address")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """True if every address the host stands for is a loopback address."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    addresses = {str(info[4][0]).partition("%")[0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def _tls(args: argparse.Namespace, host: str) -> ServerTLS | None:
    if (args.tls_cert is None) != (args.tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together: give both or neither")
    if args.tls_cert is None:
        if args.tls_client_ca is not None:
            raise UsageError("--tls-client-ca needs --tls-cert and --tls-key")
        if not args.insecure_http and not is_loopback(host):
            raise UsageError(
                f"--listen {args.listen!r} is not a loopback address, and plain HTTP would send "
                "passwords and states in clear: give --tls-cert and --tls-key, or "
                "--insecure-http if a TLS proxy sits in front"
            )
        return None
    try:
        tls = ServerTLS(TLSFiles(args.tls_cert, args.tls_key, args.tls_client_ca))
    except TLSError as exc:
        raise UsageError(str(exc)) from None
    if tls.warning:
        logging.getLogger("tfstate_server").warning("--tls-cert %s: %s", args.tls_cert, tls.warning)
    return tls


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="An HTTP state backend for OpenTofu and Terraform, with the "
        "tfstate-worker's API (states, locks) plus kept versions.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the server",
        description="Serve /health, /states/NAME, /states/NAME/lock and "
        "/states/NAME/versions[/SERIAL] until SIGTERM or SIGINT.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"address to listen on; port 0 picks a free port (default: {DEFAULT_LISTEN})",
    )
    serve.add_argument(
        "--store",
        default=DEFAULT_STORE,
        metavar="URL",
        help="where states live: file:///abs/dir, file:relative/dir or "
        f"s3://bucket/prefix (default: {DEFAULT_STORE}, relative to the working directory)",
    )
    serve.add_argument(
        "--credentials-file",
        type=Path,
        metavar="PATH",
        help="file of 'username:password' lines (# comments), in addition to "
        "TFSTATE_USERNAME/TFSTATE_PASSWORD; each user has its own states",
    )
    serve.add_argument(
        "--no-auth",
        action="store_true",
        help="serve without authentication (only for a loopback address you trust)",
    )
    serve.add_argument(
        "--max-state-bytes",
        type=_size,
        default=_size(DEFAULT_MAX_STATE),
        metavar="SIZE",
        help=f"refuse larger state bodies with 413; suffixes K, M, G (default: {DEFAULT_MAX_STATE})",
    )
    serve.add_argument(
        "--keep-versions",
        type=_positive,
        default=DEFAULT_KEEP_VERSIONS,
        metavar="N",
        help=f"versions kept per state (default: {DEFAULT_KEEP_VERSIONS})",
    )
    serve.add_argument(
        "--allow-serial-rollback",
        action="store_true",
        help="accept a write whose serial is lower than the stored one (default: 409)",
    )
    serve.add_argument(
        "--allow-lineage-change",
        action="store_true",
        help="accept a write whose lineage differs from the stored one (default: 409)",
    )
    serve.add_argument(
        "--no-force-unlock",
        action="store_true",
        help="refuse UNLOCK with an empty body (terraform force-unlock) with 423",
    )
    serve.add_argument(
        "--fsync",
        choices=("all", "state", "none"),
        default="all",
        help="file store durability: fsync state writes and locks (all, the default), "
        "state writes only (locks survive a server crash but maybe not a power loss), "
        "or nothing (tests and benchmarks)",
    )
    serve.add_argument(
        "--shutdown-timeout",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM, how long to wait for in-flight requests (default: 30)",
    )
    serve.add_argument(
        "--max-connections",
        type=_positive,
        default=DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help="open client connections at most (also kept below the open-file limit); "
        "at the cap a new connection closes the oldest idle one "
        f"(default: {DEFAULT_MAX_CONNECTIONS})",
    )
    serve.add_argument(
        "--header-timeout",
        type=_timeout,
        default=DEFAULT_HEADER_TIMEOUT,
        metavar="SECONDS",
        help="close a connection whose request headers are not complete this long after "
        "it was opened or its last answer (also the keep-alive timeout; "
        f"default: {DEFAULT_HEADER_TIMEOUT:g})",
    )
    serve.add_argument(
        "--body-timeout",
        type=_timeout,
        default=DEFAULT_BODY_TIMEOUT,
        metavar="SECONDS",
        help=f"answer 408 to a request whose body takes longer (default: {DEFAULT_BODY_TIMEOUT:g})",
    )
    serve.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="info logs one line per request (default: info)",
    )
    serve.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text lines, or one JSON object per line for log shippers (default: text)",
    )
    tls = serve.add_argument_group("TLS")
    tls.add_argument(
        "--tls-cert",
        type=Path,
        metavar="PATH",
        help="PEM certificate (chain) to serve HTTPS with (TLS 1.2 or later); with --tls-key; "
        "both are re-read on SIGHUP",
    )
    tls.add_argument("--tls-key", type=Path, metavar="PATH", help="PEM private key of --tls-cert")
    tls.add_argument(
        "--tls-client-ca",
        type=Path,
        metavar="PATH",
        help="PEM CA certificate(s): clients must show a certificate it signed (mutual TLS)",
    )
    tls.add_argument(
        "--insecure-http",
        action="store_true",
        help="allow plain HTTP on an address other than loopback (a TLS proxy sits in front)",
    )
    serve.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (no auth: loopback is "
        "the usual choice; default: off)",
    )
    return parser


def _config(args: argparse.Namespace) -> tuple[ServerConfig, str, int]:
    host, port = parse_listen(args.listen)
    try:
        credentials = auth.load(
            os.environ.get("TFSTATE_USERNAME"),
            os.environ.get("TFSTATE_PASSWORD"),
            args.credentials_file,
        )
    except auth.CredentialsError as exc:
        raise UsageError(str(exc)) from None
    if args.no_auth and credentials:
        raise UsageError("--no-auth given, but credentials are configured too")
    if not args.no_auth and not credentials:
        raise UsageError(
            "no credentials: set TFSTATE_USERNAME and TFSTATE_PASSWORD, or pass "
            "--credentials-file (or --no-auth)"
        )
    try:
        store = open_store(
            args.store,
            keep_versions=args.keep_versions,
            sync_state=args.fsync != "none",
            sync_locks=args.fsync == "all",
        )
    except StoreURLError as exc:
        raise UsageError(str(exc)) from None
    try:
        store.check_ready()
    except Exception as exc:
        raise UsageError(f"--store {args.store!r} is not usable: {exc}") from None
    config = ServerConfig(
        states=store,
        locks=store,
        credentials=None if args.no_auth else credentials,
        max_state_bytes=args.max_state_bytes,
        history=HistoryPolicy(
            allow_serial_rollback=args.allow_serial_rollback,
            allow_lineage_change=args.allow_lineage_change,
        ),
        allow_force_unlock=not args.no_force_unlock,
        body_timeout=args.body_timeout,
    )
    return config, host, port


def main(argv: list[str] | None = None) -> int:
    import uvloop

    from tfstate_server.serve import Limits, ListenError, serve

    writer: logsetup.LogWriter | None = None
    try:
        args = build_parser().parse_args(argv)
        writer = logsetup.configure(args.log_level, args.log_format)
        host, port = parse_listen(args.listen)
        metrics_address = (
            parse_listen(args.metrics_listen, "--metrics-listen") if args.metrics_listen else None
        )
        tls = _tls(args, host)
        config, host, port = _config(args)
        if tls is not None and tls.files.client_ca is not None:
            config = dataclasses.replace(config, client_cert_required=True)
        limits = Limits(
            shutdown_timeout=args.shutdown_timeout,
            header_timeout=args.header_timeout,
            max_connections=args.max_connections,
        )
        metrics = Metrics(config.states, config.locks) if metrics_address else None
        # uvloop: the same asyncio API, with the loop and its sockets in C.
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(config, host, port, limits, tls, metrics, metrics_address))
    except UsageError as exc:
        print(f"{PROG}: error: {exc} (see --help)", file=sys.stderr)
        return 2
    except ListenError as exc:
        print(f"{PROG}: error: {exc.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        if writer is not None:
            writer.stop()  # every line queued so far is written
    return 0
