"""A ``clientToken`` retried at once (a client's retry after a timeout) on two replicas of one
PostgreSQL store: every answer is the first answer, never ``ConflictException``."""
from __future__ import annotations

import threading

from botocore.exceptions import ClientError

from xds_server.api import ApiService
from xds_server.store import open_store

from tests.api.conftest import client
from tests.api.inproc import serve_in_thread
from tests.api.specs import node_spec


def test_concurrent_retries_of_one_client_token_across_two_replicas(postgres):
    url = postgres.new_database()
    stores = [open_store(url), open_store(url)]
    servers = [serve_in_thread(ApiService(store)) for store in stores]
    try:
        clients = [client(base) for _, base in servers]
        clients[0].create_mesh(meshName="m")
        mismatches = []
        for round_ in range(40):
            answers: list = [None] * 4
            barrier = threading.Barrier(4)

            def send(i):
                barrier.wait()
                try:
                    answers[i] = clients[i % 2].create_virtual_node(
                        meshName="m", virtualNodeName=f"n{round_}", spec=node_spec(f"n{round_}.local"),
                        clientToken=f"token-{round_}")["virtualNode"]
                except ClientError as err:
                    answers[i] = err.response["Error"]["Code"]

            threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            if not (isinstance(answers[0], dict) and all(a == answers[0] for a in answers)):
                mismatches.append((round_, answers))
        assert not mismatches, mismatches[:3]
    finally:
        for server, _ in servers:
            server.shutdown()
            server.server_close()
        for store in stores:
            store.close()
