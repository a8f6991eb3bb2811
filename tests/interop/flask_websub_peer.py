#!/usr/bin/env python3
"""An independent WebSub peer for Herald's end-to-end tests, built on the
Python package flask-websub (a subscriber and a hub we did not write).

    flask_websub_peer.py subscriber PORT FEED_URL
        Serves flask-websub's subscriber callbacks on 127.0.0.1:PORT,
        discovers the hub and topic of FEED_URL from its Link headers,
        subscribes, and prints one line per event.

    flask_websub_peer.py hub PORT TOPIC_URL
        Serves flask-websub's hub at http://127.0.0.1:PORT/hub (publish
        pings accepted) and a subscriber of TOPIC_URL at that hub, and
        prints one line per event: a notification can only come from a
        publish ping, after which the hub fetches the topic and pushes it.

Events, one per line on stdout: READY, DISCOVERED <hub> <topic>,
SUBSCRIBED <topic>, NOTIFIED <sha256 of the body> <length>, ERROR <why>.
Runs until stdin closes (or 120 s pass).
"""

import hashlib
import os
import sys
import tempfile
import threading

from flask import Flask
from werkzeug.serving import make_server

from flask_websub.subscriber import (
    Subscriber,
    SQLite3SubscriberStorage,
    SQLite3TempSubscriberStorage,
    discover,
)


def say(*words):
    print(" ".join(str(w) for w in words), flush=True)


def main():
    mode, port, url = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    work = tempfile.mkdtemp(prefix="flask-websub-")
    db = os.path.join(work, "subscriber.db")
    app = Flask("herald_interop")
    app.config["SERVER_NAME"] = f"127.0.0.1:{port}"
    subscriber = Subscriber(SQLite3SubscriberStorage(db), SQLite3TempSubscriberStorage(db))
    app.register_blueprint(subscriber.build_blueprint(url_prefix="/callbacks"))
    subscriber.add_success_handler(lambda topic, cb, mode: say("SUBSCRIBED", topic))
    subscriber.add_error_handler(lambda topic, cb, why: say("ERROR", why))
    subscriber.add_listener(
        lambda topic, cb, body: say("NOTIFIED", hashlib.sha256(body).hexdigest(), len(body))
    )

    if mode == "hub":
        from celery import Celery
        from flask_websub.hub import Hub, SQLite3HubStorage

        celery = Celery("herald_interop", broker="memory://")
        celery.conf.task_always_eager = True
        app.config["PUBLISH_SUPPORTED"] = True
        hub = Hub(SQLite3HubStorage(os.path.join(work, "hub.db")), celery, **app.config)
        app.register_blueprint(hub.build_blueprint(url_prefix="/hub"))

    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    say("READY")

    try:
        with app.app_context():
            if mode == "subscriber":
                found = discover(url)
                say("DISCOVERED", found["hub_url"], found["topic_url"])
                subscriber.subscribe(**found)
            else:
                subscriber.subscribe(topic_url=url, hub_url=f"http://127.0.0.1:{port}/hub")
    except Exception as e:  # reported to the test, which fails on it
        say("ERROR", repr(e))

    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    done.wait(120)
    server.shutdown()


if __name__ == "__main__":
    main()
