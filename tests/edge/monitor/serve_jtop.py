"""Runs jetson-stats' real JtopServer until SIGTERM: the tests' jtop.service (run as root, JTOP_TESTING=true).
close() on the way out stops its processes and removes /run/jtop.sock."""
import signal
import sys

from jtop.service import JtopServer


def main() -> None:
    server = JtopServer()
    server.start()
    # after start(): the server's own processes keep the default SIGTERM, which close() sends them
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        server.join()
    finally:
        server.close()


if __name__ == "__main__":
    main()
